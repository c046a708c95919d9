"""The service's only way to Dagster: the GraphQL API of a running dagster-webserver (DAGSTER_URL).

An ingest *job* is the set of runs (one per video) that carry the tag ``framesearch/ingest_job``
with the job's id: Dagster stores the jobs, so any number of service processes can answer
``GET /jobs`` and nothing is kept in memory here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


_RUN_FIELDS = """
  runId status startTime endTime tags { key value }
  assetMaterializations { assetKey { path } metadataEntries { label
    ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
    ... on TextMetadataEntry { text } ... on BoolMetadataEntry { boolValue }
    ... on JsonMetadataEntry { jsonString } } }
"""


class DagsterApi:
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
        return [_run_info(r) for r in result["results"]]


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
