"""The service's only way to Dagster: the GraphQL API of a running dagster-webserver (DAGSTER_URL).

An ingest *job* is the set of runs (one per video) that carry the tag ``framesearch/ingest_job``
with the job's id: Dagster stores the jobs, so any number of service processes can answer
``GET /jobs`` and nothing is kept in memory here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import httpx

JOB_TAG = "framesearch/ingest_job"
ANY_JOB_TAG = "framesearch/ingest"  # fixed value "1": lets GET /jobs list runs of every job
FRAMES_TAG = "framesearch/frame_ids"
PARTITION_TAG = "dagster/partition"


class DagsterUnavailable(RuntimeError):
    """DAGSTER_URL is unset, unreachable or answered with an error; the message says which."""


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    status: str  # Dagster's: QUEUED, STARTING, STARTED, SUCCESS, FAILURE, CANCELED, ...
    tags: dict[str, str]
    start_time: float | None
    end_time: float | None
    metadata: dict[str, dict[str, Any]]  # asset name -> its materialization metadata
    failure: str | None = None  # why a FAILURE or CANCELED run ended, from its events


# A failed run says why in its events: each failed step's error (whose innermost cause is the
# exception our code raised) and the run's own failure or cancel event (a crashed run worker).
_FAILURE_EVENTS = """query($id: ID!, $after: String) { runOrError(runId: $id) { __typename
  ... on Run { eventConnection(afterCursor: $after, limit: 1000) { cursor hasMore events { __typename
    ... on ExecutionStepFailureEvent { stepKey message error { ...E cause { ...E cause { ...E cause { ...E } } } } }
    ... on RunFailureEvent { message error { ...E } }
    ... on RunCanceledEvent { message } } } } } }
fragment E on PythonError { message className }"""

MAX_REASON_CHARS = 1_000  # a reason is for a person; a traceback-sized one is cut

_RUN_FIELDS = """
  runId status startTime endTime tags { key value }
  assetMaterializations { assetKey { path } metadataEntries { label
    ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
    ... on TextMetadataEntry { text } ... on BoolMetadataEntry { boolValue }
    ... on JsonMetadataEntry { jsonString } } }
"""


class DagsterApi:
    """A client of one dagster-webserver's GraphQL API; every failure is :class:`DagsterUnavailable`."""

    def __init__(self, url: str | None, location: str = "pipelines.definitions", repository: str = "__repository__", timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/") if url else None
        self.repository = {"repositoryLocationName": location, "repositoryName": repository}
        self._client = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def _query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        if not self.url:
            raise DagsterUnavailable("ingestion runs in Dagster: set DAGSTER_URL to a dagster-webserver (e.g. http://127.0.0.1:3000)")
        try:
            response = self._client.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}})
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DagsterUnavailable(f"Dagster at {self.url} did not answer: {exc}") from exc
        if body.get("errors"):
            raise DagsterUnavailable(f"Dagster at {self.url} refused the request: {body['errors'][0].get('message')}")
        return body["data"]

    def check(self) -> None:
        """Raise :class:`DagsterUnavailable` unless the webserver answers."""
        self._query("{ version }")

    def add_partitions(self, partitions_def: str, keys: list[str]) -> None:
        mutation = """mutation($r: RepositorySelector!, $d: String!, $k: String!) {
          addDynamicPartition(repositorySelector: $r, partitionsDefName: $d, partitionKey: $k) {
            __typename ... on PythonError { message } ... on UnauthorizedError { message } } }"""
        for key in keys:
            result = self._query(mutation, {"r": self.repository, "d": partitions_def, "k": key})["addDynamicPartition"]
            if result["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
                raise DagsterUnavailable(f"cannot add partition {key}: {result.get('message', result['__typename'])}")

    def launch(self, job_name: str, tags: dict[str, str]) -> str:
        mutation = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
          __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
          ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""
        params = {
            "selector": {**self.repository, "jobName": job_name},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        result = self._query(mutation, {"p": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise DagsterUnavailable(f"Dagster did not launch the run: {result.get('message') or result}")
        return result["run"]["runId"]

    def runs(self, tag_key: str, tag_value: str, limit: int = 1000) -> list[RunInfo]:
        query = f"""query($f: RunsFilter, $n: Int) {{ runsOrError(filter: $f, limit: $n) {{
          __typename ... on Runs {{ results {{ {_RUN_FIELDS} }} }} ... on PythonError {{ message }} }} }}"""
        result = self._query(query, {"f": {"tags": [{"key": tag_key, "value": tag_value}]}, "n": limit})["runsOrError"]
        if result["__typename"] != "Runs":
            raise DagsterUnavailable(f"Dagster could not list runs: {result.get('message')}")
        runs = [_run_info(r) for r in result["results"]]
        return [replace(r, failure=self.failure_reason(r.run_id)) if r.status in ("FAILURE", "CANCELED") else r for r in runs]

    def failure_reason(self, run_id: str) -> str | None:
        """Why the run failed or was canceled, from its events; None if they do not say."""
        steps: list[str] = []
        run_level: list[str] = []
        after: str | None = None
        for _ in range(100):  # pages of 1,000 events; a run of one video has a few hundred
            result = self._query(_FAILURE_EVENTS, {"id": run_id, "after": after})["runOrError"]
            if result["__typename"] != "Run":
                return None
            connection = result["eventConnection"]
            for event in connection["events"]:
                kind = event["__typename"]
                if kind == "ExecutionStepFailureEvent":
                    steps.append(f"{event.get('stepKey')}: {_innermost(event.get('error')) or event.get('message')}")
                elif kind in ("RunFailureEvent", "RunCanceledEvent"):
                    run_level.append(_innermost(event.get("error")) or event.get("message") or "")
            if not connection["hasMore"]:
                break
            after = connection["cursor"]
        # A failed step is the cause; the run's own event then only says "steps failed: [...]".
        reason = "; ".join(steps) or "; ".join(filter(None, run_level))
        if not reason:
            return None
        return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


def _innermost(error: dict[str, Any] | None) -> str | None:
    """The message of the deepest cause: Dagster wraps our exception in DagsterExecutionStepExecutionError."""
    message = None
    while error:
        message = (error.get("message") or "").strip() or message
        error = error.get("cause")
    return message


def _entry_value(entry: dict[str, Any]) -> Any:
    for key in ("intValue", "floatValue", "text", "boolValue"):
        if key in entry:
            return entry[key]
    if "jsonString" in entry:
        return json.loads(entry["jsonString"])
    return None


def _run_info(raw: dict[str, Any]) -> RunInfo:
    metadata: dict[str, dict[str, Any]] = {}
    for event in raw.get("assetMaterializations") or []:
        name = "/".join(event["assetKey"]["path"])
        metadata[name] = {e["label"]: _entry_value(e) for e in event["metadataEntries"]}
    return RunInfo(
        run_id=raw["runId"], status=raw["status"], tags={t["key"]: t["value"] for t in raw["tags"]},
        start_time=raw.get("startTime"), end_time=raw.get("endTime"), metadata=metadata,
    )
