"""What the service says while its index cannot be opened."""

from __future__ import annotations

import time
from pathlib import Path

from starlette.testclient import TestClient

from resources.embedding.encoder import FrameEncoder
from resources.vector_index import VectorIndex
from resources.vector_index.schema import IndexSchema
from search_service.app import create_app
from search_service.config import ServiceSettings


def test_a_collection_of_another_schema_is_reported_not_retried_forever(tmp_path: Path, tiny_encoder: FrameEncoder) -> None:
    VectorIndex.open(IndexSchema("frames_other", 32), path=tmp_path / "qdrant").close()  # another model's dimension
    app = create_app(ServiceSettings(checkpoint_dir=str(tmp_path / "checkpoints")), encoder=tiny_encoder,
                     open_index=lambda dim: VectorIndex.open(IndexSchema("frames_other", dim), path=tmp_path / "qdrant"))
    with TestClient(app) as client:
        deadline = time.monotonic() + 20
        while (body := client.get("/healthz").json())["index_error"] == "opening the index":
            assert time.monotonic() < deadline, body
            time.sleep(0.05)
        assert client.get("/healthz").status_code == 503
        assert "frames_other" in body["index_error"] and "exists with vectors" in body["index_error"]
        assert client.post("/search/text", json={"query": "x"}).status_code == 503
