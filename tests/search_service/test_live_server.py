"""The service under a real uvicorn server: the seed README's curl and httpx examples, and
health checks that stay fast while a slow search runs."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from resources.embedding.encoder import FrameEncoder
from resources.vector_index import VectorIndex
from search_service.app import create_app
from search_service.config import ServiceSettings
from tests.search_service.test_app import SCHEMA, library  # noqa: F401 - the module-scoped index fixture
from tests.servers import running_uvicorn

RESULT_FIELDS = {"image_id", "video_id", "frame_id", "score", "global_score", "maxsim_score", "s3_url", "width", "height"}


@pytest.fixture
def server(library: dict, tiny_encoder: FrameEncoder, monkeypatch: pytest.MonkeyPatch, moto_s3_endpoint: str) -> Iterator[str]:  # noqa: F811
    for name, value in {
        "S3_ENDPOINT_URL": moto_s3_endpoint, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "S3_MAX_ATTEMPTS": "1",
        "PATCH_WINDOW": "64", "PATCH_STRIDE": "32",  # many query patches: a slow search on demand
        "MAX_QUERY_PATCHES": "100000", "MAX_QUERY_PIXELS": "100000000",  # uncapped, to keep it slow
    }.items():
        monkeypatch.setenv(name, value)
    app = create_app(
        ServiceSettings(checkpoint_dir=str(library["store"]), max_upload_bytes=64 * 1024 * 1024, allowed_s3_prefixes=("s3://bucket",)),
        encoder=tiny_encoder,
        open_index=lambda dim: VectorIndex.open(SCHEMA, path=library["root"] / "qdrant", lock_timeout_s=10),
    )
    with running_uvicorn(app) as base:
        yield base


@pytest.fixture
def seed_bucket(s3_client, library: dict) -> None:  # noqa: F811
    """The bucket and keys the seed README's examples name."""
    try:
        s3_client.create_bucket(Bucket="bucket")
    except s3_client.exceptions.BucketAlreadyOwnedByYou:
        pass
    for key in ("query.jpg", "reference.jpg"):
        s3_client.put_object(Bucket="bucket", Key=key, Body=library["query"])


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_seed_readme_curl_examples(server: str, seed_bucket: None, tmp_path: Path, library: dict) -> None:  # noqa: F811
    def curl(*args: str) -> dict:
        done = subprocess.run(["curl", "-sS", "--fail-with-body", *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    (tmp_path / "query.jpg").write_bytes(library["query"])
    health = curl(f"{server}/healthz")
    assert health["ok"] is True and health["model_loaded"] is True
    text = curl("-X", "POST", f"{server}/search/text", "-H", "Content-Type: application/json",
                "-d", '{"query": "a person running", "top_k": 5, "video_ids": [1, 2]}')
    assert text["total"] == 5 and text["query_type"] == "text" and RESULT_FIELDS <= set(text["results"][0])
    image = curl("-X", "POST", f"{server}/search/image", "-H", "Content-Type: application/json",
                 "-d", '{"s3_url": "s3://bucket/query.jpg", "top_k": 10, "rerank": true, "rerank_alpha": 0.3}')
    assert image["rerank_enabled"] is True and image["results"][0]["maxsim_score"] is not None
    upload = curl("-X", "POST", f"{server}/search/image/upload", "-F", "file=@query.jpg", "-F", "top_k=5", "-F", "rerank=true")
    assert upload["total"] == 5 and upload["rerank_enabled"] is True
    hybrid = curl("-X", "POST", f"{server}/search/hybrid", "-H", "Content-Type: application/json", "-d", json.dumps({
        "text_query": "red car on highway", "image_s3_url": "s3://bucket/reference.jpg",
        "text_weight": 0.6, "image_weight": 0.4, "top_k": 10,
    }))
    assert hybrid["query_type"] == "hybrid" and hybrid["total"] == 8  # every frame of the library


def test_seed_readme_httpx_examples(server: str, seed_bucket: None) -> None:
    response = httpx.post(f"{server}/search/text", json={"query": "a sunset over mountains", "top_k": 5}, timeout=30.0)
    results = response.json()
    lines = [f"{r['image_id']}: score={r['score']:.3f}" for r in results["results"]]
    assert len(lines) == 5
    response = httpx.post(
        f"{server}/search/image",
        json={"s3_url": "s3://bucket/query.jpg", "top_k": 10, "rerank": True, "rerank_alpha": 0.5},
        timeout=60.0,
    )
    results = response.json()
    for r in results["results"]:
        f"{r['image_id']}: final={r['score']:.3f}, global={r['global_score']:.3f}, maxsim={r['maxsim_score']:.3f}"


def test_health_answers_fast_while_a_slow_search_runs(server: str) -> None:
    big = np.asarray(Image.new("RGB", (3840, 2160), (90, 140, 200)))
    noise = np.random.default_rng(0).integers(0, 60, big.shape, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(big + noise).save(buffer, "JPEG", quality=90)
    slow: dict[str, float] = {}

    def search() -> None:
        started = time.monotonic()
        response = httpx.post(f"{server}/search/image/upload", files={"file": ("big.jpg", buffer.getvalue(), "image/jpeg")},
                              data={"top_k": "5", "rerank": "true"}, timeout=120)
        slow["status"], slow["seconds"], slow["ended"] = response.status_code, time.monotonic() - started, time.monotonic()

    worker = threading.Thread(target=search)
    worker.start()
    time.sleep(0.3)  # the upload is in and ~8,000 query patches are being embedded
    latencies = []
    with httpx.Client(timeout=5) as client:
        for _ in range(5):
            began = time.monotonic()
            assert client.get(f"{server}/healthz").status_code == 200
            latencies.append(time.monotonic() - began)
            time.sleep(0.05)
    checked_until = time.monotonic()
    worker.join(120)
    assert slow["status"] == 200
    assert slow["ended"] > checked_until, f"the search ({slow['seconds']:.2f} s) was too quick to overlap the checks"
    assert max(latencies) < 0.1, latencies
