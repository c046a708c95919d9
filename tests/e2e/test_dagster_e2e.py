"""End to end with real processes: moto's S3 server holds a video; dagster-webserver and
dagster-daemon run on a temporary DAGSTER_HOME; the sensor finds the video, the run embeds and
indexes it; the search service then finds its frames over HTTP."""

from __future__ import annotations

import io
import os
import socket
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

from resources.clip_loader import TINY_MODEL
from search_service.app import create_app
from search_service.config import ServiceSettings
from tests.conftest import make_frame

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    processes = [
        subprocess.Popen([str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                         cwd=REPO, env=os.environ.copy(), stdout=open(logs / "webserver.log", "w"), stderr=subprocess.STDOUT),
        subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                         cwd=REPO, env=os.environ.copy(), stdout=open(logs / "daemon.log", "w"), stderr=subprocess.STDOUT),
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert all(p.poll() is None for p in processes), (logs / "webserver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "dagster-webserver did not start"
            time.sleep(0.5)
        yield {"base": base, "logs": logs, "tmp": tmp_path}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


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


def test_ingest_over_http_round_trip(stack: dict, s3_client, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's ingest endpoints, backed by the live Dagster: async batch + polling, then a
    single synchronous frame; the frames become searchable through this service."""
    bucket = os.environ["FRAMES_ROOT"].split("/")[2]
    for name in ("a", "b", "c"):
        buffer = io.BytesIO()
        Image.fromarray(make_frame(180, 120, seed=ord(name)).permute(1, 2, 0).numpy()).save(buffer, "PNG")
        s3_client.put_object(Bucket=bucket, Key=f"incoming/{name}.png", Body=buffer.getvalue())
    monkeypatch.setenv("DAGSTER_URL", stack["base"])
    monkeypatch.setenv("INGEST_WAIT_S", "180")
    app = create_app(ServiceSettings(
        checkpoint_dir=os.environ["CHECKPOINT_DIR"], offline_fallback=False, dagster_url=stack["base"],
        ingest_wait_s=180, frames_root=os.environ["FRAMES_ROOT"], follow_interval_s=0.5,
    ))
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while client.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        items = [
            {"s3_url": f"s3://{bucket}/incoming/a.png", "video_id": 8, "frame_id": 101},
            {"s3_url": f"s3://{bucket}/incoming/b.png", "video_id": 8, "frame_id": 102, "timestamp_ms": 4080},
        ]
        submitted = client.post("/ingest/frames/async", json={"items": items})
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        deadline = time.monotonic() + 240
        while True:
            job = client.get(f"/jobs/{job_id}").json()
            if job["status"] in ("completed", "failed"):
                break
            assert time.monotonic() < deadline, job
            time.sleep(1)
        assert job["status"] == "completed" and job["successful_items"] == 2 and job["total_items"] == 2, job

        single = client.post("/ingest/frame", json={"s3_url": f"s3://{bucket}/incoming/c.png", "video_id": 8, "frame_id": 103, "timestamp_ms": 4120})
        assert single.status_code == 200, single.text
        frame = single.json()
        assert frame["image_id"] == "8:103" and frame["num_patches"] >= 1 and frame["stored_multivector"] is True
        assert set(frame["durations_ms"]) >= {"fetch", "image_open", "patch_plan", "embed", "qdrant_upsert", "total"}

        found = client.post("/search/text", json={"query": "x", "top_k": 10, "video_ids": [8]}).json()
        assert sorted(r["image_id"] for r in found["results"]) == ["8:101", "8:102", "8:103"]
        jobs = client.get("/jobs?limit=10&status=completed").json()["jobs"]
        assert {job_id, frame["job_id"]} <= {j["job_id"] for j in jobs}
        assert client.get(f"/jobs/{uuid.uuid4()}").status_code == 404
