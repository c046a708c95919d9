"""The search service through Starlette's TestClient, over a real embedded index that the
pipeline code built from test frames."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from resources.checkpoints.format import published_path
from resources.checkpoints.video_embedding import embed_video
from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig
from resources.frame_sources import LocalFolderSource
from resources.vector_index import AGREEMENT_SHARE, IndexBusyError, VectorIndex
from resources.vector_index.follower import sync_checkpoint
from resources.vector_index.schema import IndexSchema
from search_service.app import create_app
from search_service.config import ServiceSettings
from tests.conftest import make_frame

SCHEMA = IndexSchema("frames_service", 64)
QUERY_BOX = (0, 0, 292, 292)  # the padded box of frame 1:0's first patch at the default settings


def to_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: FrameEncoder) -> dict:
    """Video 1: six 448x336 frames. Video 2: frame 0 is frame 1:0's top-left corner blown up 2x -
    globally the same picture as that corner, but none of its patches shows the corner whole."""
    root = tmp_path_factory.mktemp("service")
    videos, store = root / "videos", root / "checkpoints"
    frames = [make_frame(448, 336, seed=s).permute(1, 2, 0).numpy() for s in range(6)]
    (videos / "1").mkdir(parents=True)
    for f, pixels in enumerate(frames):
        (videos / "1" / f"frame_{f}.png").write_bytes(to_png(pixels))
    x, y, w, h = QUERY_BOX
    corner = frames[0][y : y + h, x : x + w]
    decoy = np.asarray(Image.fromarray(corner).resize((2 * w, 2 * h), Image.Resampling.BICUBIC))
    (videos / "2").mkdir()
    (videos / "2" / "frame_0.png").write_bytes(to_png(decoy))
    (videos / "2" / "frame_1.png").write_bytes(to_png(make_frame(448, 336, seed=99).permute(1, 2, 0).numpy()))
    source = LocalFolderSource(videos, fps=4.0)
    with VectorIndex.open(SCHEMA, path=root / "qdrant") as index:
        for video_id in (1, 2):
            embed_video(video_id, source.manifest(video_id), source, tiny_encoder, store, PatchConfig())
            sync_checkpoint(index, video_id, published_path(store, video_id))
    return {"root": root, "store": store, "query": to_png(corner), "frames": frames}


def make_client(library: dict, encoder: FrameEncoder, **settings) -> TestClient:
    app = create_app(
        ServiceSettings(checkpoint_dir=str(library["store"]), **settings),
        encoder=encoder,
        open_index=lambda dim: VectorIndex.open(SCHEMA, path=library["root"] / "qdrant", lock_timeout_s=10),
    )
    return TestClient(app)


def wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 30
    while client.get("/healthz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/healthz").json()
        time.sleep(0.05)


@pytest.fixture
def client(library: dict, tiny_encoder: FrameEncoder):
    with make_client(library, tiny_encoder) as test_client:
        wait_ready(test_client)
        yield test_client


RESULT_FIELDS = {"image_id", "video_id", "frame_id", "score", "global_score", "maxsim_score", "s3_url", "width", "height", "timestamp_ms", "best_patch_box", "span_end_ms", "thumbnail_url"}


def test_healthz(client: TestClient) -> None:
    body = client.get("/healthz").json()
    assert body["ok"] and body["model_loaded"] and body["qdrant_reachable"] and body["using_multivector"]
    assert body["index_mode"] == "embedded" and body["config"]["weights_random"] is True
    assert body["config"]["weights_kind"] == "random" and "no meaning" in body["config"]["weights_description"]
    assert body["follower"] == {"applied": 0, "errors": {}}  # checkpoints already in: nothing to apply


def test_lifespan_falls_back_to_the_offline_model_and_health_says_what_it_is(
    tmp_path: Path, world_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No encoder passed in: the lifespan loads OPENCLIP_* from the environment (weights that are
    not on this machine) and falls back to the offline model folder, like a fresh offline clone."""
    monkeypatch.setenv("OPENCLIP_MODEL", "ViT-B-32")
    monkeypatch.setenv("OPENCLIP_PRETRAINED", str(tmp_path / "absent.safetensors"))
    monkeypatch.setenv("OPENCLIP_PRECISION", "fp32")
    settings = ServiceSettings(checkpoint_dir=str(tmp_path / "checkpoints"), offline_model_dir=str(world_model_dir))
    app = create_app(settings, open_index=lambda dim: VectorIndex.open(IndexSchema("frames_offline", dim), path=tmp_path / "qdrant"))
    with TestClient(app) as test_client:
        wait_ready(test_client)
        config = test_client.get("/healthz").json()["config"]
    assert config["model_id"].startswith("framesearch-world/") and config["weights_random"] is False
    assert config["weights_kind"] == "synthetic-world" and "knows only the 36 captions" in config["weights_description"]


def test_the_patch_search_beam_comes_from_the_environment(tmp_path: Path, tiny_encoder: FrameEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATCH_SEARCH_EF reaches the index the service opens by itself (recall against latency)."""
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    monkeypatch.setenv("QDRANT_COLLECTION", "frames_ef")
    monkeypatch.setenv("PATCH_SEARCH_EF", "2048")
    app = create_app(ServiceSettings(checkpoint_dir=str(tmp_path / "checkpoints")), encoder=tiny_encoder)
    with TestClient(app) as test_client:
        wait_ready(test_client)
        assert test_client.get("/healthz").json()["config"]["patch_search_ef"] == 2048
        assert test_client.post("/search/text", json={"query": "red car", "rerank": True}).status_code == 200


def test_text_search(client: TestClient) -> None:
    response = client.post("/search/text", json={"query": "a person riding a bicycle", "top_k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["query_type"] == "text" and body["rerank_enabled"] is False and body["total"] == 5
    assert set(body["results"][0]) == RESULT_FIELDS and body["results"][0]["maxsim_score"] is None
    assert set(body["durations_ms"]) == {"encode", "search"} and body["duration_ms"] > 0
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_text_search_with_rerank(client: TestClient) -> None:
    body = client.post("/search/text", json={"query": "red car", "rerank": True, "rerank_alpha": 0.3}).json()
    assert body["rerank_enabled"] is True
    for r in body["results"]:
        g, m = r["global_score"], r["maxsim_score"]  # the product's fusion: the best weighted view
        assert r["score"] == pytest.approx(2 * max(0.3 * g, 0.7 * m) + AGREEMENT_SHARE * (0.3 * g + 0.7 * m), abs=1e-5)
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    "filters, check",
    [
        ({"video_ids": [2]}, lambda r: r["video_id"] == 2),
        ({"video_ids": [1, 2], "frame_id_min": 1, "frame_id_max": 3}, lambda r: 1 <= r["frame_id"] <= 3),
        ({"timestamp_min_ms": 500, "timestamp_max_ms": 1000}, lambda r: 500 <= r["timestamp_ms"] <= 1000),
        ({"video_ids": [1], "timestamp_max_ms": 250, "frame_id_min": 1}, lambda r: r["video_id"] == 1 and r["frame_id"] == 1),
    ],
)
def test_filters(client: TestClient, filters: dict, check) -> None:
    results = client.post("/search/text", json={"query": "x", "top_k": 100, **filters}).json()["results"]
    assert results and all(check(r) for r in results)


def test_upload_search_and_the_rerank_case(client: TestClient, library: dict) -> None:
    """The query is frame 1:0's corner. Globally the blown-up decoy (2:0) wins; with rerank the
    frame that really contains the region (1:0) ranks first."""
    files = {"file": ("corner.png", library["query"], "image/png")}
    plain = client.post("/search/image/upload", files=files, data={"top_k": "3"}).json()
    assert plain["results"][0]["image_id"] == "2:0"
    reranked = client.post("/search/image/upload?rerank=true&rerank_alpha=0.2", files=files, data={"top_k": "3"}).json()
    assert reranked["rerank_enabled"] is True and reranked["results"][0]["image_id"] == "1:0"
    assert reranked["results"][0]["maxsim_score"] > 0.99


def test_upload_filters_from_form_and_query(client: TestClient, library: dict) -> None:
    files = {"file": ("corner.png", library["query"], "image/png")}
    body = client.post("/search/image/upload?video_ids=1", files=files, data={"top_k": "10", "frame_id_min": "2"}).json()
    assert body["results"] and all(r["video_id"] == 1 and r["frame_id"] >= 2 for r in body["results"])


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, moto_s3_endpoint: str) -> None:
    for name, value in {
        "S3_ENDPOINT_URL": moto_s3_endpoint, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "S3_TIMEOUT_SECONDS": "5", "S3_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(name, value)


def test_image_and_hybrid_search_from_s3(s3_env, s3_client, library: dict, tiny_encoder: FrameEncoder) -> None:
    bucket = f"queries-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_object(Bucket=bucket, Key="q/corner.png", Body=library["query"])
    absent = f"no-such-bucket-{uuid.uuid4().hex[:6]}"
    with make_client(library, tiny_encoder, allowed_s3_prefixes=(f"s3://{bucket}/q/", f"s3://{absent}")) as client:
        wait_ready(client)
        image = client.post("/search/image", json={"s3_url": f"s3://{bucket}/q/corner.png", "top_k": 3, "rerank": True, "rerank_alpha": 0.2}).json()
        assert image["query_type"] == "image" and image["results"][0]["image_id"] == "1:0"
        assert set(image["durations_ms"]) >= {"fetch", "decode", "encode", "search"}
        hybrid = client.post("/search/hybrid", json={
            "text_query": "a corner", "image_s3_url": f"s3://{bucket}/q/corner.png",
            "text_weight": 0.0, "image_weight": 1.0, "top_k": 3,
        }).json()
        assert hybrid["query_type"] == "hybrid" and hybrid["results"][0]["image_id"] == "2:0"
        plain = client.post("/search/image", json={"s3_url": f"s3://{bucket}/q/corner.png", "top_k": 3}).json()
        assert [r["score"] for r in hybrid["results"]] == pytest.approx([r["score"] for r in plain["results"]], abs=1e-5)
        missing = client.post("/search/image", json={"s3_url": f"s3://{bucket}/q/nope.png"})
        assert missing.status_code == 404
        no_bucket = client.post("/search/image", json={"s3_url": f"s3://{absent}/k.png"})
        assert no_bucket.status_code == 502


@pytest.mark.parametrize(
    "path, payload, status, needle",
    [
        ("/search/text", {"query": ""}, 422, "query"),
        ("/search/text", {"query": "   "}, 422, "blank"),
        ("/search/text", {"query": "x", "top_k": 0}, 422, "top_k"),
        ("/search/text", {"query": "x", "top_k": 101}, 422, "top_k"),
        ("/search/text", {"query": "x", "top_k": "ten"}, 422, "top_k"),
        ("/search/text", {"query": "x", "rerank_alpha": 1.5}, 422, "rerank_alpha"),
        ("/search/text", {"query": "x", "video_ids": ["a"]}, 422, "video_ids"),
        ("/search/text", {"query": "x", "unknown": 1}, 422, "unknown"),
        ("/search/hybrid", {"text_query": "x", "image_s3_url": "s3://b/k", "text_weight": 2}, 422, "text_weight"),
        ("/search/image", {"s3_url": "http://169.254.169.254/latest/meta-data"}, 422, "not an S3 URL"),
        ("/search/image", {"s3_url": "https://example.com/cat.jpg"}, 422, "not an S3 URL"),
        ("/search/image", {"s3_url": "s3://bucket/cat.jpg", "image_id": "1:0"}, 422, "exactly one"),
        ("/search/text", {"query": "x", "top_k": 10.5}, 422, "top_k"),
    ],
)
def test_errors_name_what_to_fix(client: TestClient, path: str, payload: dict, status: int, needle: str) -> None:
    response = client.post(path, json=payload)
    assert response.status_code == status, response.text
    assert needle in response.text


def test_invalid_json(client: TestClient) -> None:
    response = client.post("/search/text", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]


def test_bad_uploads(library: dict, tiny_encoder: FrameEncoder) -> None:
    with make_client(library, tiny_encoder, max_upload_bytes=50_000) as client:
        wait_ready(client)
        garbage = client.post("/search/image/upload", files={"file": ("x.png", b"not an image", "image/png")})
        assert garbage.status_code == 400 and "not a recognized image format" in garbage.json()["detail"]
        big = client.post("/search/image/upload", files={"file": ("big.png", b"\0" * 200_000, "image/png")})
        assert big.status_code == 413 and "MAX_UPLOAD_BYTES" in big.json()["detail"]
        missing = client.post("/search/image/upload", data={"top_k": "3"})
        assert missing.status_code in (400, 422) and "file" in missing.text


def test_index_unavailable_gives_503(library: dict, tiny_encoder: FrameEncoder) -> None:
    def busy(dim: int) -> VectorIndex:
        raise IndexBusyError("the embedded index is open in another process")

    app = create_app(ServiceSettings(checkpoint_dir=str(library["store"])), encoder=tiny_encoder, open_index=busy)
    with TestClient(app) as client:
        health = client.get("/healthz")
        assert health.status_code == 503 and "another process" in health.json()["index_error"]
        search = client.post("/search/text", json={"query": "x"})
        assert search.status_code == 503 and search.headers["retry-after"] == "2"


def test_api_key(library: dict, tiny_encoder: FrameEncoder) -> None:
    with make_client(library, tiny_encoder, api_key="s3cret") as client:
        wait_ready(client)
        assert client.get("/healthz").status_code == 200  # health stays open for load balancers
        assert client.post("/search/text", json={"query": "x"}).status_code == 401
        assert client.post("/search/text", json={"query": "x"}, headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.post("/search/text", json={"query": "x"}, headers={"X-API-Key": "s3cret"}).status_code == 200


SEARCH_PATHS = {"/healthz", "/search/text", "/search/image", "/search/image/upload", "/search/hybrid", "/search/hybrid/upload", "/frames/{image_id}"}
INGEST_PATHS = {"/ingest/frame", "/ingest/frames", "/ingest/frames/async", "/jobs", "/jobs/{job_id}"}


def test_openapi_describes_every_endpoint(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert set(doc["paths"]) == SEARCH_PATHS  # no DAGSTER_URL here: nothing to ingest through
    assert {"TextSearch", "ImageSearch", "HybridSearch", "SearchResponse", "SearchResult", "Problem"} <= set(doc["components"]["schemas"])
    assert "security" not in doc


def test_openapi_states_the_deployment(library: dict, tiny_encoder: FrameEncoder) -> None:
    """With DAGSTER_URL the ingest routes are listed; with SEARCH_API_KEY every operation but
    /healthz requires the key and declares its 401 (issue 27: the schema hid both)."""
    with make_client(library, tiny_encoder, api_key="k", dagster_url="http://127.0.0.1:9") as client:
        doc = client.get("/openapi.json").json()
    assert set(doc["paths"]) == SEARCH_PATHS | INGEST_PATHS
    assert doc["security"] == [{"apiKey": []}] and doc["paths"]["/healthz"]["get"]["security"] == []
    for path, item in doc["paths"].items():
        for operation in item.values():
            assert ("401" in operation["responses"]) == (path != "/healthz"), path
    assert "400" in doc["paths"]["/ingest/frames"]["post"]["responses"]  # "request body must be a JSON object"


def test_reranked_results_carry_the_best_patch_box(client: TestClient, library: dict) -> None:
    files = {"file": ("corner.png", library["query"], "image/png")}
    body = client.post("/search/image/upload?rerank=true&rerank_alpha=0.2", files=files, data={"top_k": "3"}).json()
    best = body["results"][0]
    assert best["image_id"] == "1:0" and best["best_patch_box"] == [0, 0, 224, 224]  # the corner's window
    plain = client.post("/search/image/upload", files=files, data={"top_k": "3"}).json()
    assert all(r["best_patch_box"] is None for r in plain["results"])


def test_decompression_bomb_upload_is_413(client: TestClient) -> None:
    from tests.resources.frame_sources.test_images import _png_header_only

    response = client.post("/search/image/upload", files={"file": ("bomb.png", _png_header_only(100_000, 100_000), "image/png")})
    assert response.status_code == 413 and "over the limit" in response.json()["detail"]


def test_ingest_without_dagster_says_what_to_configure(library: dict, tiny_encoder: FrameEncoder) -> None:
    item = {"s3_url": "s3://bucket/a.png", "video_id": 1, "frame_id": 1}
    with make_client(library, tiny_encoder, allowed_s3_prefixes=("s3://bucket",)) as client:
        wait_ready(client)
        for path, body in (("/ingest/frame", item), ("/ingest/frames", {"items": [item]}), ("/ingest/frames/async", {"items": [item]})):
            response = client.post(path, json=body)
            assert response.status_code == 503 and "DAGSTER_URL" in response.json()["detail"], (path, response.text)
        assert client.get("/jobs").status_code == 503


def test_ingest_validation(library: dict, tiny_encoder: FrameEncoder) -> None:
    with make_client(library, tiny_encoder, allowed_s3_prefixes=("s3://bucket",)) as client:
        wait_ready(client)
        assert client.post("/ingest/frames", json={"items": []}).status_code == 422
        assert client.post("/ingest/frame", json={"s3_url": "s3://bucket/a.png", "video_id": -1, "frame_id": 1}).status_code == 422
        # A frame listed twice is valid (its last item counts: JSON Schema cannot say "unique by
        # id"); this service has no DAGSTER_URL, so it gets as far as the 503.
        twice = {"items": [{"s3_url": "s3://bucket/a.png", "video_id": 1, "frame_id": 1}, {"s3_url": "s3://bucket/b.png", "video_id": 1, "frame_id": 1}]}
        assert client.post("/ingest/frames", json=twice).status_code == 503


def test_integral_numbers_are_integers(client: TestClient) -> None:
    """JSON Schema counts 73.0 as an integer, so the API does (it refused them: issue 27)."""
    body = client.post("/search/text", json={"query": "x", "top_k": 3.0, "video_ids": [1.0], "moment_gap_ms": 1e3}).json()
    assert body["total"] <= 3 and {r["video_id"] for r in body["results"]} <= {1}
    assert client.post("/search/text", json={"query": "x", "top_k": 3.5}).status_code == 422
    assert client.post("/search/text", json={"query": "x", "top_k": 101.0}).status_code == 422


def test_multipart_null_and_empty_values_read_as_the_json_routes_do(client: TestClient, library: dict) -> None:
    """Issue 27: an empty or "null" form value is JSON's null - a nullable field left out, any other
    field refused, as the JSON routes do (multipart refused "null" for nullable fields); a repeated
    field's last value wins."""
    files = {"file": ("corner.png", library["query"], "image/png")}

    def upload(fields: dict[str, str | list[str]]):  # noqa: ANN202 - an httpx response
        return client.post("/search/image/upload", files=files, data=fields)

    defaults = upload({}).json()
    for blank in ("null", ""):
        assert upload({"video_ids": blank, "frame_id_min": blank, "timestamp_max_ms": blank}).json()["results"] == defaults["results"]
        refused = upload({"top_k": blank})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][-1] == "top_k", refused.text
    assert upload({"top_k": ["50", "2"]}).json()["total"] == 2  # repeated: the last one
    doc = client.get("/openapi.json").json()
    form = doc["paths"]["/search/image/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    validator = jsonschema.Draft202012Validator(form)
    for fields, valid in ((dict(video_ids=None, frame_id_min=None), True), (dict(top_k=None), False), (dict(top_k=2.0), True)):
        assert validator.is_valid({"file": "x", **fields}) is valid, fields


@pytest.mark.parametrize(("weights", "status"), [({}, 200), ({"text_weight": 0}, 200), ({"text_weight": 0, "image_weight": 0}, 422),
                                                 ({"image_weight": 0.0, "text_weight": 0.0}, 422), ({"text_weight": 0, "image_weight": 0.1}, 200)])
def test_the_schema_and_the_handler_agree_on_hybrid_weights(client: TestClient, weights: dict, status: int) -> None:
    """The rule across two fields is published in the schema (anyOf) and enforced by the model: both
    judge every case alike."""
    doc = client.get("/openapi.json").json()
    schema = {"$ref": "#/components/schemas/HybridSearch", "components": doc["components"]}
    body = {"text_query": "a red circle", "image_id": "1:0", **weights}
    valid = jsonschema.Draft202012Validator(schema).is_valid(body)
    response = client.post("/search/hybrid", json=body)
    assert response.status_code == status, response.text
    assert valid is (status == 200)


def test_starlettes_own_refusals_have_the_problem_body(client: TestClient) -> None:
    """A malformed multipart body, an unknown path and a wrong method answer JSON {"detail": ...}
    like every other error (they were Starlette's text/plain: issue 27's fuzzer, ST105)."""
    broken = client.post("/search/image/upload", content=b"--b\r\n\xae|L--b--\r\n", headers={"Content-Type": "multipart/form-data; boundary=b"})
    missing = client.get("/no/such/path")
    wrong = client.get("/search/text")
    for response, status in ((broken, 400), (missing, 404), (wrong, 405)):
        assert response.status_code == status and response.headers["content-type"] == "application/json", response.text
        assert isinstance(response.json()["detail"], str)
    assert wrong.headers["allow"] == "POST"


def test_an_inverted_range_matches_nothing(client: TestClient) -> None:
    """A minimum above its maximum is an empty range, not an error (JSON Schema cannot compare fields)."""
    response = client.post("/search/text", json={"query": "x", "frame_id_min": 5, "frame_id_max": 2})
    assert response.status_code == 200 and response.json()["results"] == []


def test_ingest_outside_allowed_locations_is_403(library: dict, tiny_encoder: FrameEncoder) -> None:
    item = {"s3_url": "s3://secrets/env.sh", "video_id": 1, "frame_id": 1}
    with make_client(library, tiny_encoder, allowed_s3_prefixes=("s3://frames/videos/",)) as client:
        wait_ready(client)
        response = client.post("/ingest/frames/async", json={"items": [item]})
        assert response.status_code == 403 and "ALLOWED_S3_PREFIXES" in response.json()["detail"]


# -- issue 9: allowed S3 locations, no byte echo, strict bodies, id ranges, API key, paths ----------


def test_query_images_only_from_allowed_locations_and_no_bytes_echoed(s3_env, s3_client, library: dict, tiny_encoder: FrameEncoder, moto_s3_endpoint: str) -> None:
    """Defect 4: any object the credentials reached was fetched, and a 400 quoted its first bytes
    (``(116 bytes starting b'export S')``); ``..`` on the endpoint reached ``/moto-api/data.json``."""
    frames, secrets = f"frames-{uuid.uuid4().hex[:8]}", f"secrets-{uuid.uuid4().hex[:8]}"
    secret = b"export AWS_SECRET_ACCESS_KEY=TOPSECRET0123456789\n"
    for name in (frames, secrets):
        s3_client.create_bucket(Bucket=name)
        s3_client.put_object(Bucket=name, Key="videos/env.sh", Body=secret)
    s3_client.put_object(Bucket=frames, Key="videos/q.png", Body=library["query"])
    with make_client(library, tiny_encoder, frames_root=f"s3://{frames}/videos/") as client:  # default: the frames bucket
        wait_ready(client)
        assert client.post("/search/image", json={"s3_url": f"s3://{frames}/videos/q.png", "top_k": 1}).status_code == 200
        for url in (
            f"s3://{secrets}/videos/env.sh",
            f"https://{secrets}.s3.amazonaws.com/videos/env.sh",
            f"{moto_s3_endpoint}/{secrets}/videos/env.sh",
            f"{moto_s3_endpoint}/{frames}/../moto-api/data.json?X-Amz-Signature=1",
            f"{moto_s3_endpoint}/{frames}/videos/%2e%2e/%2e%2e/moto-api/data.json?X-Amz-Signature=1",
        ):
            for path, body in (("/search/image", {"s3_url": url}), ("/search/hybrid", {"text_query": "x", "image_s3_url": url})):
                response = client.post(path, json=body)
                # 403: a well-formed URL outside the allowed locations; 422: not a URL form the API takes
                assert response.status_code in (403, 422), (url, response.text)
                assert "TOPSECRET" not in response.text and "export" not in response.text
                if secrets not in url:  # moto's /moto-api/data.json lists every bucket
                    assert secrets not in response.text
        # An allowed object that is not an image: the reason, never its bytes.
        not_image = client.post("/search/image", json={"s3_url": f"s3://{frames}/videos/env.sh"})
        assert not_image.status_code == 400 and "not a recognized image format" in not_image.json()["detail"]
        assert "export" not in not_image.text and "starting" not in not_image.text


def test_query_images_refused_without_allowed_locations(client: TestClient) -> None:
    # The fixture's FRAMES_ROOT is a folder and ALLOWED_S3_PREFIXES unset: no S3 URL is read.
    response = client.post("/search/image", json={"s3_url": "s3://any-bucket/k.png"})
    assert response.status_code == 403 and "ALLOWED_S3_PREFIXES" in response.json()["detail"]


MAX_ID = 2**63 - 1
ITEM = {"s3_url": "s3://frames/videos/a.png", "video_id": 1, "frame_id": 1}


@pytest.mark.parametrize(
    "path, payload, field",
    [
        # defect 6: ids and timestamps past int64
        ("/search/text", {"query": "x", "video_ids": [MAX_ID + 1]}, "video_ids"),
        ("/search/text", {"query": "x", "video_ids": [-1]}, "video_ids"),
        ("/search/text", {"query": "x", "frame_id_min": MAX_ID + 1}, "frame_id_min"),
        ("/search/text", {"query": "x", "timestamp_max_ms": 10**30}, "timestamp_max_ms"),
        ("/search/hybrid", {"text_query": "x", "image_s3_url": "s3://frames/videos/a.png", "frame_id_max": MAX_ID + 1}, "frame_id_max"),
        ("/ingest/frame", {**ITEM, "video_id": MAX_ID + 1}, "video_id"),
        ("/ingest/frame", {**ITEM, "frame_id": 2**64}, "frame_id"),
        ("/ingest/frames", {"items": [{**ITEM, "timestamp_ms": MAX_ID + 1}]}, "timestamp_ms"),
        # defect 7: JSON bodies are strictly typed
        ("/search/text", {"query": "x", "top_k": True}, "top_k"),
        ("/search/text", {"query": "x", "top_k": "5"}, "top_k"),
        ("/search/text", {"query": "x", "rerank": 1}, "rerank"),
        ("/search/text", {"query": "x", "rerank": "true"}, "rerank"),
        ("/search/text", {"query": "x", "video_ids": ["1"]}, "video_ids"),
        ("/search/text", {"query": "x", "video_ids": [True]}, "video_ids"),
        ("/ingest/frame", {**ITEM, "video_id": "1"}, "video_id"),
        ("/ingest/frame", {**ITEM, "video_id": 1.5}, "video_id"),
        ("/ingest/frame", {**ITEM, "video_id": True}, "video_id"),
        ("/ingest/frames", {"items": [{**ITEM, "timestamp_ms": "5"}]}, "timestamp_ms"),
        ("/ingest/frames/async", {"items": [{**ITEM, "extra": 1}]}, "extra"),
        ("/ingest/frames/async", {"items": [ITEM], "priority": "high"}, "priority"),
        # URLs: blank, control characters, no key, outside the allowed locations, escapes
        ("/ingest/frames/async", {"items": [{**ITEM, "s3_url": "   "}]}, "s3_url"),
        ("/ingest/frames/async", {"items": [{**ITEM, "s3_url": "s3://frames/videos/a.png\r\nX: 1"}]}, "s3_url"),
        ("/ingest/frames/async", {"items": [{**ITEM, "s3_url": "s3://frames/"}]}, "s3_url"),
        ("/ingest/frames/async", {"items": [{**ITEM, "s3_url": "s3://frames"}]}, "s3_url"),
        ("/ingest/frames/async", {"items": [{**ITEM, "s3_url": "s3://frames/videos/"}]}, "s3_url"),
        ("/ingest/frames", {"items": [{**ITEM, "s3_url": "s3://frames/videos/../../secrets/env.sh"}]}, "s3_url"),
        ("/ingest/frame", {**ITEM, "s3_url": "https://frames.s3.amazonaws.com/videos/%2e%2e/x.png"}, "s3_url"),
        ("/ingest/frame", {**ITEM, "s3_url": "https://evil.example/frames/videos/a.png"}, "s3_url"),
        ("/search/image", {"s3_url": "s3://frames/videos/a.png\r\nX-Injected: 1"}, "s3_url"),
        ("/search/image", {"s3_url": " \t "}, "s3_url"),
    ],
)
def test_bad_bodies_are_422_naming_the_field(library: dict, tiny_encoder: FrameEncoder, path: str, payload: dict, field: str) -> None:
    """Each of these gave 500 (ids past int64, CRLF), or was accepted (202/503 further on: coerced
    types, unknown fields, URLs without a key or outside the frames bucket)."""
    with make_client(library, tiny_encoder, allowed_s3_prefixes=("s3://frames/videos/",)) as client:
        wait_ready(client)
        response = client.post(path, json=payload)
    assert response.status_code == 422, response.text
    assert any(field in map(str, error["loc"]) for error in response.json()["detail"]), response.text


def test_upload_form_fields_parse_numbers_within_range(client: TestClient, library: dict) -> None:
    files = {"file": ("corner.png", library["query"], "image/png")}
    ok = client.post("/search/image/upload", files=files, data={"top_k": "2", "rerank": "true", "frame_id_min": "0"})
    assert ok.status_code == 200 and ok.json()["total"] == 2 and ok.json()["rerank_enabled"] is True
    for data in ({"video_ids": str(MAX_ID + 1)}, {"frame_id_max": str(2**64)}, {"timestamp_min_ms": "-1"}):
        response = client.post("/search/image/upload", files=files, data=data)
        assert response.status_code == 422 and next(iter(data)) in response.text, response.text
    assert client.post(f"/search/image/upload?video_ids={MAX_ID + 1}", files=files).status_code == 422


def test_non_ascii_api_key_is_401(library: dict, tiny_encoder: FrameEncoder) -> None:
    """Defect 7: a non-ASCII X-API-Key made hmac.compare_digest raise (500) before authentication."""
    with make_client(library, tiny_encoder, api_key="s3cret") as client:
        wait_ready(client)
        for sent in ("sécret".encode(), b"\xff\xfe", "s3cret✓".encode()):
            response = client.post("/search/text", json={"query": "x"}, headers=[(b"x-api-key", sent)])
            assert response.status_code == 401, response.text
        assert client.post("/search/text", json={"query": "x"}, headers={"X-API-Key": "s3cret"}).status_code == 200
    with make_client(library, tiny_encoder, api_key="clé-✓") as client:  # a non-ASCII key works too
        wait_ready(client)
        assert client.post("/search/text", json={"query": "x"}, headers=[(b"x-api-key", "clé-✓".encode())]).status_code == 200
        assert client.post("/search/text", json={"query": "x"}, headers=[(b"x-api-key", b"cle")]).status_code == 401


def test_results_do_not_expose_server_paths(client: TestClient, library: dict) -> None:
    """Defect 7: local frames' URLs were ``file:///<server path>``; the image_id identifies the frame."""
    results = client.post("/search/text", json={"query": "x", "top_k": 100}).json()["results"]
    assert results and all(r["s3_url"] == "" for r in results)
    assert str(library["root"]) not in json.dumps(results)
