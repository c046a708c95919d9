"""Request bounds (``search_service.limits``), query-image bounds (``search_service.search``) and
the bounded server configuration (``search_service.server``)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig, plan_patches
from resources.settings import SettingsError
from search_service.limits import RequestLimits, request_limits_from_env
from search_service.search import Searcher, Timer, fit_query_image, query_image_vectors, query_patch_config
from search_service.server import server_settings_from_env
from tests.abuse.serving import running_bounded
from tests.search_service.test_app import library, make_client, wait_ready  # noqa: F401 - the module-scoped index fixture


@pytest.fixture
def small_json_client(library: dict, tiny_encoder: FrameEncoder, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:  # noqa: F811
    monkeypatch.setenv("MAX_JSON_BYTES", "1000")
    with make_client(library, tiny_encoder, max_upload_bytes=1_000_000) as client:
        wait_ready(client)
        yield client


def test_json_over_the_limit_is_413(small_json_client: TestClient) -> None:
    body = json.dumps({"query": "a" * 2000}).encode()
    declared = small_json_client.post("/search/text", content=body, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "MAX_JSON_BYTES" in declared.json()["detail"]
    assert declared.headers["connection"] == "close"
    # (TestClient reads a streamed body whole before the app runs: tests/abuse streams over a socket.)
    ok = small_json_client.post("/search/text", json={"query": "a" * 900})
    assert ok.status_code == 200  # 911 bytes: under the limit


def test_upload_limit_counts_the_streamed_body(small_json_client: TestClient, library: dict) -> None:
    """The upload route's limit is MAX_UPLOAD_BYTES plus the form's overhead, not MAX_JSON_BYTES."""
    files = {"file": ("corner.png", library["query"], "image/png")}
    assert 1000 < len(library["query"]) < 1_000_000
    assert small_json_client.post("/search/image/upload", files=files).status_code == 200
    big = small_json_client.post("/search/image/upload", files={"file": ("big.png", b"\0" * 2_000_000, "image/png")})
    assert big.status_code == 413 and "MAX_UPLOAD_BYTES" in big.json()["detail"]


@pytest.mark.parametrize(
    "body, needle",
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"query": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deeply"),
        (b'{"query": "x", "top_k": ' + b"9" * 5000 + b"}", "number is too long"),
        (b'{"query": "\xff"}', "not UTF-8"),
    ],
    ids=["deep array", "deep field", "5000-digit int", "not UTF-8"],
)
def test_json_that_python_cannot_parse_is_400(library: dict, tiny_encoder: FrameEncoder, body: bytes, needle: str) -> None:  # noqa: F811
    # Before the fix: RecursionError / ValueError out of json.loads, a 500.
    with make_client(library, tiny_encoder) as client:
        wait_ready(client)
        response = client.post("/search/text", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        assert needle in response.json()["detail"]


def test_unexpected_error_is_a_json_500_and_the_connection_stays(library: dict, tiny_encoder: FrameEncoder, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """Starlette re-raises after its 500 and uvicorn then drops the connection; the guard answers
    the 500 itself, so the client's next request goes over the same kept-alive connection."""

    async def boom(request: Request) -> None:
        await request.body()
        raise RuntimeError("a bug nobody mapped")

    app = make_client(library, tiny_encoder).app
    app.router.routes.append(Route("/boom", boom, methods=["GET", "POST"]))  # a real route with a real bug
    with running_bounded(app) as base, httpx.Client(timeout=10) as client:
        caplog.set_level(logging.ERROR, logger="search_service.limits")
        first = client.post(f"{base}/boom", json={"query": "x"})
        assert first.status_code == 500 and first.json() == {"detail": "internal server error (logged)"}
        assert "a bug nobody mapped" not in first.text
        port = first.extensions["network_stream"].get_extra_info("client_addr")[1]
        second = client.post(f"{base}/search/text", json={"query": "x"})
        assert second.status_code == 200
        assert second.extensions["network_stream"].get_extra_info("client_addr")[1] == port, "the connection was dropped"
        assert any("a bug nobody mapped" in r.getMessage() or (r.exc_info and "a bug" in str(r.exc_info[1])) for r in caplog.records)


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def test_huge_query_image_is_scaled_and_its_patches_capped(library: dict, tiny_encoder: FrameEncoder) -> None:  # noqa: F811
    """7900x7900 planned ~4,900 query patches before (8.6 s on the tiny model in the issue)."""
    from resources.vector_index import VectorIndex
    from tests.search_service.test_app import SCHEMA

    with VectorIndex.open(SCHEMA, path=library["root"] / "qdrant", lock_timeout_s=10) as index:
        searcher = Searcher(tiny_encoder, index, PatchConfig(), max_pixels=64_000_000)
        timer = Timer()
        vector, patches = query_image_vectors(searcher, _png(7900, 7900), timer, with_patches=True)
    assert patches is not None and vector.shape == (SCHEMA.dim,)
    assert patches.shape == (RequestLimits.max_query_patches, SCHEMA.dim)  # (patches, dim)


def test_fit_query_image_bounds_pixels_and_keeps_aspect() -> None:
    phone = Image.new("RGB", (4032, 3024))  # a 12 MP photo
    fitted = fit_query_image(phone, 3840 * 2160)
    assert fitted.width * fitted.height <= 3840 * 2160
    assert fitted.width / fitted.height == pytest.approx(4032 / 3024, rel=1e-3)
    small = Image.new("RGB", (1920, 1080))
    assert fit_query_image(small, 3840 * 2160) is small


def test_frame_sized_queries_are_planned_exactly_like_frames() -> None:
    config = PatchConfig()
    capped = query_patch_config(config, RequestLimits.max_query_patches)
    frame_plan, query_plan = plan_patches(1920, 1080, config), plan_patches(1920, 1080, capped)
    assert len(frame_plan) == 144 and np.array_equal(frame_plan.padded, query_plan.padded)
    assert len(plan_patches(3840, 2160, capped)) == 144  # 594 uncapped, subsampled uniformly
    assert query_patch_config(PatchConfig(max_patches=50), 144).max_patches == 50  # the frames' own cap wins when lower


def test_limits_from_env() -> None:
    limits = request_limits_from_env({"MAX_JSON_BYTES": "1024", "BODY_TIMEOUT_S": "2.5", "MAX_QUERY_PATCHES": "16"})
    assert (limits.max_json_bytes, limits.body_timeout_s, limits.max_query_patches) == (1024, 2.5, 16)
    assert request_limits_from_env({}) == RequestLimits()
    with pytest.raises(SettingsError, match="MAX_JSON_BYTES"):
        request_limits_from_env({"MAX_JSON_BYTES": "8MiB"})
    with pytest.raises(SettingsError, match="MAX_QUERY_PIXELS must be positive"):
        request_limits_from_env({"MAX_QUERY_PIXELS": "0"})


def test_server_settings_from_env() -> None:
    settings = server_settings_from_env({"HEADER_TIMEOUT_S": "3", "LIMIT_CONCURRENCY": "8", "PORT": "9000"}, port=9100)
    assert (settings.header_timeout_s, settings.limit_concurrency, settings.port) == (3.0, 8, 9100)
    with pytest.raises(SettingsError, match="LIMIT_CONCURRENCY"):
        server_settings_from_env({"LIMIT_CONCURRENCY": "lots"})
    with pytest.raises(SettingsError, match="HEADER_TIMEOUT_S must be positive"):
        server_settings_from_env({"HEADER_TIMEOUT_S": "0"})
