"""Concurrent queries through a live uvicorn server get exactly what the same queries get one at
a time (issue 9, defect 2: a shared encoder buffer once mixed the vectors of concurrent uploads)."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from resources.embedding.encoder import FrameEncoder
from resources.vector_index import VectorIndex
from search_service.app import create_app
from search_service.config import ServiceSettings
from tests.conftest import make_frame
from tests.search_service.test_app import SCHEMA, library  # noqa: F401 - the module-scoped index fixture
from tests.servers import running_uvicorn


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(make_frame(320, 240, seed=seed).permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def _ranking(response: httpx.Response) -> list[tuple[str, float, float | None, list[int] | None]]:
    assert response.status_code == 200, response.text
    return [(r["image_id"], r["score"], r["maxsim_score"], r["best_patch_box"]) for r in response.json()["results"]]


@pytest.mark.slow
def test_concurrent_uploads_match_sequential_ones(library: dict, tiny_encoder: FrameEncoder, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("PATCH_WINDOW", "64")  # many query patches per image: several encoder batches
    monkeypatch.setenv("PATCH_STRIDE", "32")
    app = create_app(
        ServiceSettings(checkpoint_dir=str(library["store"])),
        encoder=tiny_encoder,
        open_index=lambda dim: VectorIndex.open(SCHEMA, path=library["root"] / "qdrant", lock_timeout_s=10),
    )
    images = [_png(200 + i) for i in range(8)]
    with running_uvicorn(app) as base, httpx.Client(base_url=base, timeout=120) as http:

        def query(data: bytes) -> list:
            files = {"file": ("q.png", data, "image/png")}
            return _ranking(http.post("/search/image/upload", files=files, data={"top_k": "8", "rerank": "true", "rerank_alpha": "0.3"}))

        alone = [query(data) for data in images]
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(3):
                together = list(pool.map(query, images))
                for i, (expected, got) in enumerate(zip(alone, together)):
                    assert [r[0] for r in got] == [r[0] for r in expected], f"image {i}: another query's ranking"
                    np.testing.assert_allclose([r[1] for r in got], [r[1] for r in expected], rtol=0, atol=1e-6)
                    assert [r[3] for r in got] == [r[3] for r in expected]
