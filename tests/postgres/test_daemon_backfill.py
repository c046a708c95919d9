"""The pipeline under the real dagster-daemon, on deploy/dagster.yaml's PostgreSQL, reading moto's S3
(and SQS) over HTTP: a backfill's run takes several videos and a corrupt one among them fails
alone; S3 events start one run for a burst of new videos, a duplicated event starts nothing and a
lost one is found by the reconcile - each video indexed once."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import httpx
import pytest

from assets.video_steps import EMBEDDINGS, INDEX, POINTS_CHECK
from assets.videos import VIDEOS_PARTITIONS
from benchmarks.common import stop_processes
from resources.embedding.weights import TINY_MODEL
from resources.vector_index import VectorIndex
from resources.vector_index.schema import IndexSchema
from tests.assets.test_videos import png
from tests.e2e.test_dagster_e2e import wait_location_loaded
from tests.pipelines.test_event_sensor import s3_event
from tests.pipelines.ticks import send_events_to_queue
from tests.postgres.pg import Postgres, write_dagster_home
from tests.servers import free_port, wait_http_ok

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow

LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"""
PARTITIONS = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions failedPartitions } } } } }"""
START_SENSOR = """mutation($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { status } } ... on PythonError { message } } }"""
VIDEOS, CORRUPT = [1, 2, 3, 4, 5, 6], 4
COLLECTION = "frames_daemon"


def graphql(base: str, query: str, variables: dict) -> dict:
    response = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


@contextlib.contextmanager
def dagster_processes(postgres: Postgres, tmp_path: Path, extra_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dg.DagsterInstance]]:
    """dagster-webserver and dagster-daemon on deploy/dagster.yaml's PostgreSQL, with the tiny
    model and moto's S3; yields the webserver's URL (code location loaded) and the instance."""
    env = {
        **os.environ, **postgres.env(), "DAGSTER_HOME": str(write_dagster_home(tmp_path / "dagster_home")),
        "FRAMESEARCH_MAX_CONCURRENT_RUNS": "2", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "QDRANT_PATH": str(tmp_path / "qdrant"), "QDRANT_COLLECTION": COLLECTION,
        "OPENCLIP_MODEL": TINY_MODEL, "OPENCLIP_PRETRAINED": str(extra_env.pop("TINY_WEIGHTS")), "OPENCLIP_PRECISION": "fp32",
        "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1", **extra_env,
    }
    for name in ("DAGSTER_HOME", *postgres.env()):
        monkeypatch.setenv(name, env[name])
    log_path = tmp_path / "processes.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes: list[subprocess.Popen] = []
    with open(log_path, "w") as log, dg.DagsterInstance.get() as instance:
        try:
            for command in ([str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]):
                processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            wait_http_ok(f"{base}/server_info", 180, alive=lambda: all(p.poll() is None for p in processes))
            wait_location_loaded(base, 240)
            yield base, instance
        finally:
            stop_processes(reversed(processes))
            instance.wipe()  # the server is shared by the session: leave it empty
            for key in instance.get_dynamic_partitions(VIDEOS_PARTITIONS):
                instance.delete_dynamic_partition(VIDEOS_PARTITIONS, key)


def daemon_log(tmp_path: Path) -> str:
    return (tmp_path / "processes.log").read_text()[-3000:]


@pytest.mark.timeout(600)
def test_a_multi_video_run_with_a_corrupt_video_fails_only_that_video(
    postgres: Postgres, tmp_path: Path, s3_client, moto_s3_endpoint: str, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = f"daemon-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    for video_id in VIDEOS:
        for f in range(3):
            body = b"\x89PNG but truncated" if video_id == CORRUPT else png(160, 120, video_id * 10 + f)
            s3_client.put_object(Bucket=bucket, Key=f"videos/{video_id}/frame_{f:03d}.png", Body=body)
    extra = {"TINY_WEIGHTS": str(tiny_weights), "VIDEOS_PER_RUN": str(len(VIDEOS)),  # one run takes them all
             "FRAMES_ROOT": f"s3://{bucket}/videos/", "S3_ENDPOINT_URL": moto_s3_endpoint}
    with dagster_processes(postgres, tmp_path, extra, monkeypatch) as (base, instance):
        instance.add_dynamic_partitions(VIDEOS_PARTITIONS, [str(v) for v in VIDEOS])
        params = {"partitionNames": [str(v) for v in VIDEOS], "fromFailure": False,
                  "assetSelection": [{"path": [k]} for k in ("frame_manifest", "frame_embeddings", "index_sync")]}
        launched = graphql(base, LAUNCH, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        deadline = time.monotonic() + 420
        while (status := graphql(base, STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"]["status"]) == "REQUESTED":
            assert time.monotonic() < deadline, f"backfill still {status}: {daemon_log(tmp_path)}"
            time.sleep(2)

        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": launched["backfillId"]}))
        assert len(runs) == 1, [r.run_id for r in runs]  # one run took all six videos
        [run] = runs
        assert run.status == dg.DagsterRunStatus.FAILURE  # it names the video that failed
        records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        materialized = {(r.event_log_entry.dagster_event.asset_key, r.event_log_entry.dagster_event.partition) for r in records}
        good = [str(v) for v in VIDEOS if v != CORRUPT]
        for asset in (EMBEDDINGS, INDEX):
            assert {p for a, p in materialized if a == asset} == set(good)
        logs = instance.all_logs(run.run_id)
        evaluations = [e.dagster_event.event_specific_data for e in logs if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
        points = [c for c in evaluations if isinstance(c, dg.AssetCheckEvaluation) and c.asset_check_key == dg.AssetCheckKey(INDEX, POINTS_CHECK)]
        assert sorted(c.partition for c in points if c.passed) == sorted(good) and all(c.passed for c in points)
        failures = [e.dagster_event for e in logs if e.dagster_event and e.dagster_event.is_step_failure]
        assert len(failures) == 1 and f"video {CORRUPT} (embed)" in failures[0].step_failure_data.error.message
        # As the UI shows it: every other video materialized, only the corrupt one failed.
        statuses = graphql(base, PARTITIONS, {"key": {"path": ["frame_embeddings"]}})["assetNodeOrError"]["assetPartitionStatuses"]
        assert sorted(statuses["materializedPartitions"]) == sorted(good)
        assert statuses["failedPartitions"] == [str(CORRUPT)]


def start_sensor(base: str, name: str) -> None:
    selector = {"repositoryLocationName": "pipelines.definitions", "repositoryName": "__repository__", "sensorName": name}
    started = graphql(base, START_SENSOR, {"selector": selector})["startSensor"]
    assert started["__typename"] == "Sensor", started


def wait_for_runs(instance: dg.DagsterInstance, count: int, tmp_path: Path, timeout_s: float = 240) -> list[dg.DagsterRun]:
    """The sensors' runs once ``count`` of them have finished (and none is left queued or running)."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="video_pipeline"))
        if len(runs) >= count and all(r.is_finished for r in runs):
            return runs
        assert time.monotonic() < deadline, f"{[(r.tags, r.status) for r in runs]}; {daemon_log(tmp_path)}"
        time.sleep(1)


@pytest.mark.timeout(600)
def test_s3_events_under_the_daemon_run_each_video_once(
    postgres: Postgres, tmp_path: Path, s3_client, moto_s3_endpoint: str, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = f"events-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    sqs = boto3.client("sqs", endpoint_url=moto_s3_endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    queue = sqs.create_queue(QueueName=bucket)["QueueUrl"]
    send_events_to_queue(s3_client, sqs, bucket, queue)
    extra = {"TINY_WEIGHTS": str(tiny_weights), "VIDEOS_PER_RUN": "8", "FRAMES_ROOT": f"s3://{bucket}/videos/",
             "S3_ENDPOINT_URL": moto_s3_endpoint, "FRAMES_EVENTS_QUEUE_URL": queue}

    def add_video(video_id: int) -> None:
        for f in range(2):
            s3_client.put_object(Bucket=bucket, Key=f"videos/{video_id}/frame_{f:03d}.png", Body=png(160, 120, video_id * 10 + f))

    with dagster_processes(postgres, tmp_path, extra, monkeypatch) as (base, instance):
        start_sensor(base, "video_event_sensor")
        for video_id in (11, 12, 13):  # a burst: six events, three new videos
            add_video(video_id)
        sqs.send_message(QueueUrl=queue, MessageBody=s3_event(bucket, "videos/12/frame_000.png"))  # delivered twice
        [burst] = wait_for_runs(instance, 1, tmp_path)
        assert burst.status == dg.DagsterRunStatus.SUCCESS, daemon_log(tmp_path)
        assert (burst.tags["dagster/asset_partition_range_start"], burst.tags["dagster/asset_partition_range_end"]) == ("11", "13")

        add_video(14)
        sqs.purge_queue(QueueUrl=queue)  # video 14's events are lost
        start_sensor(base, "video_sensor")  # the reconcile lists the bucket: 11-13 are up to date, 14 is not
        runs = wait_for_runs(instance, 2, tmp_path)
        time.sleep(20)  # one more event tick: nothing further is requested
        runs = wait_for_runs(instance, 2, tmp_path)
        assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [(r.tags, r.status) for r in runs]
        assert [r.tags.get("dagster/partition") for r in runs if r.run_id != burst.run_id] == ["14"]
        synced = [
            r.event_log_entry.dagster_event.partition
            for run in runs for r in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
            if r.event_log_entry.dagster_event.asset_key == INDEX
        ]
        assert sorted(synced) == ["11", "12", "13", "14"]  # each video synced once
    with VectorIndex.open(IndexSchema(COLLECTION, 64), path=tmp_path / "qdrant") as index:
        assert {v: index.count(video_id=v) for v in (11, 12, 13, 14)} == dict.fromkeys((11, 12, 13, 14), 2)
