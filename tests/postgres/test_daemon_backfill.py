"""A backfill under the real dagster-daemon, on deploy/dagster.yaml's PostgreSQL, reading moto's S3
over HTTP: one run takes several videos, and a corrupt video among them fails alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import httpx
import pytest

from assets.video_steps import EMBEDDINGS, INDEX, POINTS_CHECK
from assets.videos import VIDEOS_PARTITIONS
from benchmarks.common import stop_processes
from resources.embedding.weights import TINY_MODEL
from tests.assets.test_videos import png
from tests.e2e.test_dagster_e2e import wait_location_loaded
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
VIDEOS, CORRUPT = [1, 2, 3, 4, 5, 6], 4


def graphql(base: str, query: str, variables: dict) -> dict:
    response = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


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
    env = {
        **os.environ, **postgres.env(), "DAGSTER_HOME": str(write_dagster_home(tmp_path / "dagster_home")),
        "FRAMESEARCH_MAX_CONCURRENT_RUNS": "2", "VIDEOS_PER_RUN": str(len(VIDEOS)),  # one run takes them all
        "FRAMES_ROOT": f"s3://{bucket}/videos/", "S3_ENDPOINT_URL": moto_s3_endpoint, "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "QDRANT_PATH": str(tmp_path / "qdrant"), "QDRANT_COLLECTION": "frames_daemon",
        "OPENCLIP_MODEL": TINY_MODEL, "OPENCLIP_PRETRAINED": str(tiny_weights), "OPENCLIP_PRECISION": "fp32",
        "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1",
    }
    for name in ("DAGSTER_HOME", *postgres.env()):
        monkeypatch.setenv(name, env[name])
    log = open(tmp_path / "processes.log", "w")  # noqa: SIM115 - closed below
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes: list[subprocess.Popen] = []
    with dg.DagsterInstance.get() as instance:
        try:
            instance.add_dynamic_partitions(VIDEOS_PARTITIONS, [str(v) for v in VIDEOS])
            for command in ([str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]):
                processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            wait_http_ok(f"{base}/server_info", 180, alive=lambda: all(p.poll() is None for p in processes))
            wait_location_loaded(base, 240)
            params = {"partitionNames": [str(v) for v in VIDEOS], "fromFailure": False,
                      "assetSelection": [{"path": [k]} for k in ("frame_manifest", "frame_embeddings", "index_sync")]}
            launched = graphql(base, LAUNCH, {"params": params})["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            deadline = time.monotonic() + 420
            while (status := graphql(base, STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"]["status"]) == "REQUESTED":
                assert time.monotonic() < deadline, f"backfill still {status}: {(tmp_path / 'processes.log').read_text()[-3000:]}"
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
        finally:
            stop_processes(reversed(processes))
            log.close()
            instance.wipe()  # the server is shared by the session: leave it empty
            for key in instance.get_dynamic_partitions(VIDEOS_PARTITIONS):
                instance.delete_dynamic_partition(VIDEOS_PARTITIONS, key)
