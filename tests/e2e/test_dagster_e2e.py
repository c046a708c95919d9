"""End to end with real processes: moto's S3 server holds a video; dagster-webserver and
dagster-daemon run on a temporary DAGSTER_HOME; the sensor finds the video, the run embeds and
indexes it; the search service then finds its frames over HTTP."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from starlette.testclient import TestClient

from resources.embedding.weights import TINY_MODEL
from search_service.app import create_app
from search_service.config import ServiceSettings
from tests.conftest import make_frame
from tests.servers import free_port, running_uvicorn, wait_http_ok

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    response.raise_for_status()
    return response.json()["data"]


@pytest.fixture
def stack(tmp_path: Path, s3_client, moto_s3_endpoint: str, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    bucket = f"e2e-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    for f in range(4):
        buffer = io.BytesIO()
        Image.fromarray(make_frame(200, 150, seed=f).permute(1, 2, 0).numpy()).save(buffer, "PNG")
        s3_client.put_object(Bucket=bucket, Key=f"videos/5/frame_{f:03d}.png", Body=buffer.getvalue())
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        "DAGSTER_HOME": str(home),
        "FRAMES_ROOT": f"s3://{bucket}/videos/",
        "S3_ENDPOINT_URL": moto_s3_endpoint, "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "QDRANT_PATH": str(tmp_path / "qdrant"), "QDRANT_COLLECTION": "frames_e2e",
        "OPENCLIP_MODEL": TINY_MODEL, "OPENCLIP_PRETRAINED": str(tiny_weights), "OPENCLIP_PRECISION": "fp32",
        "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    # The storage is created before the two processes start, as the README's deployment does: a
    # webserver and a daemon that both find an empty DAGSTER_HOME each stamp the schema, and the
    # loser's code location fails with "alembic_version has more than one head" (CI, stop 17).
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], cwd=REPO, env=os.environ.copy(), check=True,
                   stdout=open(logs / "migrate.log", "w"), stderr=subprocess.STDOUT)
    processes = [
        subprocess.Popen([str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                         cwd=REPO, env=os.environ.copy(), stdout=open(logs / "webserver.log", "w"), stderr=subprocess.STDOUT),
        subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                         cwd=REPO, env=os.environ.copy(), stdout=open(logs / "daemon.log", "w"), stderr=subprocess.STDOUT),
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base}/server_info", 120, alive=lambda: all(p.poll() is None for p in processes))
        wait_location_loaded(base, 180)
        yield {"base": base, "logs": logs, "tmp": tmp_path}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"


def wait_location_loaded(base: str, timeout_s: float) -> None:
    """The webserver answers before its code location has loaded (a subprocess importing torch:
    slow on a busy machine); queries about the location's sensors fail until it has."""
    deadline = time.monotonic() + timeout_s
    while True:
        entries = graphql(base, LOCATIONS)["workspaceOrError"]["locationEntries"]
        entry = next((e for e in entries if e["name"] == "pipelines.definitions"), None)
        if entry and entry["loadStatus"] == "LOADED":
            assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
            return
        assert time.monotonic() < deadline, f"code location not loaded within {timeout_s} s: {entries}"
        time.sleep(0.5)


START_SENSOR = """
mutation($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) { __typename ... on Sensor { sensorState { status } } ... on PythonError { message } }
}"""
RUNS = "{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"


def test_sensor_to_search(stack: dict) -> None:
    base = stack["base"]
    selector = {"repositoryLocationName": "pipelines.definitions", "repositoryName": "__repository__", "sensorName": "video_sensor"}
    started = graphql(base, START_SENSOR, {"selector": selector})["startSensor"]
    assert started["__typename"] == "Sensor" and started["sensorState"]["status"] == "RUNNING", started

    deadline = time.monotonic() + 240
    while True:
        runs = graphql(base, RUNS)["runsOrError"]["results"]
        done = [r for r in runs if {"key": "dagster/partition", "value": "5"} in r["tags"] and r["status"] == "SUCCESS"]
        failed = [r for r in runs if r["status"] == "FAILURE"]
        assert not failed, f"run failed: {failed}; daemon log: {(stack['logs'] / 'daemon.log').read_text()[-3000:]}"
        if done:
            break
        assert time.monotonic() < deadline, f"no successful run; runs: {runs}; daemon log: {(stack['logs'] / 'daemon.log').read_text()[-3000:]}"
        time.sleep(1)

    app = create_app(ServiceSettings(checkpoint_dir=os.environ["CHECKPOINT_DIR"], offline_fallback=False))
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while client.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/healthz").json()
            time.sleep(0.1)
        body = client.post("/search/text", json={"query": "anything", "top_k": 10, "video_ids": [5]}).json()
    assert sorted(r["image_id"] for r in body["results"]) == ["5:0", "5:1", "5:2", "5:3"]
    assert body["results"][0]["s3_url"].startswith("s3://")


def test_seed_ingest_examples_against_live_dagster(stack: dict, s3_client, tmp_path: Path) -> None:
    """The seed README's ingest examples - curl single and batch, httpx async + polling - against
    the service under uvicorn, backed by the live webserver and daemon; then the frames are
    searchable through the same service."""
    import json

    bucket = os.environ["FRAMES_ROOT"].split("/")[2]
    for name in ("a", "b", "c", "d"):
        buffer = io.BytesIO()
        Image.fromarray(make_frame(180, 120, seed=ord(name)).permute(1, 2, 0).numpy()).save(buffer, "PNG")
        s3_client.put_object(Bucket=bucket, Key=f"incoming/{name}.png", Body=buffer.getvalue())
    app = create_app(ServiceSettings(
        checkpoint_dir=os.environ["CHECKPOINT_DIR"], offline_fallback=False, dagster_url=stack["base"],
        ingest_wait_s=180, frames_root=os.environ["FRAMES_ROOT"], follow_interval_s=0.5,
    ))
    with running_uvicorn(app) as base:
        # httpx, as in the seed README: start a job, then poll it.
        items = [
            {"s3_url": f"s3://{bucket}/incoming/a.png", "video_id": 8, "frame_id": 101},
            {"s3_url": f"s3://{bucket}/incoming/b.png", "video_id": 8, "frame_id": 102},
        ]
        response = httpx.post(f"{base}/ingest/frames/async", json={"items": items}, timeout=10.0)
        job_id = response.json()["job_id"]
        deadline = time.monotonic() + 240
        while True:
            status = httpx.get(f"{base}/jobs/{job_id}").json()
            if status["status"] == "completed":
                print(f"Completed: {status['successful_items']}/{status['total_items']}")
                break
            assert status["status"] != "failed", status["error"]
            assert time.monotonic() < deadline, status
            time.sleep(1)
        assert status["successful_items"] == status["total_items"] == 2

        def curl(path: str, body: dict) -> dict:
            done = subprocess.run(
                ["curl", "-sS", "--fail-with-body", "-X", "POST", f"{base}{path}", "-H", "Content-Type: application/json", "-d", json.dumps(body)],
                capture_output=True, text=True, timeout=240,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            return json.loads(done.stdout)

        # curl, as in the seed README: a single frame, then a batch (both wait for their runs).
        single = curl("/ingest/frame", {"s3_url": f"s3://{bucket}/incoming/c.png", "video_id": 8, "frame_id": 103})
        assert single["image_id"] == "8:103" and single["num_patches"] >= 1 and single["stored_multivector"] is True
        assert set(single["durations_ms"]) >= {"fetch", "image_open", "patch_plan", "embed", "qdrant_upsert", "total"}
        batch = curl("/ingest/frames", {"items": [
            {"s3_url": f"s3://{bucket}/incoming/d.png", "video_id": 9, "frame_id": 1},
            {"s3_url": f"s3://{bucket}/incoming/missing.png", "video_id": 9, "frame_id": 2},
        ]})
        assert (batch["total"], batch["successful"], batch["failed"]) == (2, 1, 1)
        assert batch["results"][0]["ok"] is True and batch["results"][0]["image_id"] == "9:1"
        assert batch["results"][1]["ok"] is False and "missing" in batch["results"][1]["error"]

        found = httpx.post(f"{base}/search/text", json={"query": "x", "top_k": 10, "video_ids": [8, 9]}).json()
        assert sorted(r["image_id"] for r in found["results"]) == ["8:101", "8:102", "8:103", "9:1"]
        jobs = httpx.get(f"{base}/jobs", params={"limit": 10, "status": "completed"}).json()["jobs"]
        assert {job_id, single["job_id"], batch["job_id"]} <= {j["job_id"] for j in jobs}
        assert httpx.get(f"{base}/jobs/{uuid.uuid4()}").status_code == 404
