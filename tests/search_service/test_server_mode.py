"""The service over a Qdrant server (QDRANT_URL; here qdrant-client's in-process server): the
pipeline syncs each video itself, and the service removes the videos whose checkpoint was deleted
(issue 21: before, nothing did, so a deleted video stayed searchable)."""

from __future__ import annotations

import time
from pathlib import Path

from qdrant_client import QdrantClient
from starlette.testclient import TestClient

from resources.checkpoints.format import published_path
from resources.checkpoints.video_embedding import embed_video
from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig
from resources.frame_sources import LocalFolderSource
from resources.vector_index import VectorIndex
from resources.vector_index.follower import sync_checkpoint
from resources.vector_index.schema import IndexSchema
from search_service.app import create_app
from search_service.config import ServiceSettings
from tests.assets.test_videos import write_video

SCHEMA = IndexSchema("frames_server_mode", 64)


def test_a_deleted_checkpoint_leaves_the_server_index(tmp_path: Path, tiny_encoder: FrameEncoder) -> None:
    videos, store = tmp_path / "videos", tmp_path / "checkpoints"
    server = QdrantClient(":memory:")  # one server for the pipeline's writes and the service
    source = LocalFolderSource(videos)
    with VectorIndex.open(SCHEMA, client=server) as pipeline_index:
        for video_id in (1, 2):
            write_video(videos, video_id, frames=2, seed=video_id)
            embed_video(video_id, source.manifest(video_id), source, tiny_encoder, store, PatchConfig())
            sync_checkpoint(pipeline_index, video_id, published_path(store, video_id))
        assert pipeline_index.video_ids() == {1, 2}

        app = create_app(
            ServiceSettings(checkpoint_dir=str(store), follow_interval_s=0.1), encoder=tiny_encoder,
            open_index=lambda dim: VectorIndex.open(SCHEMA, client=server),
        )
        with TestClient(app) as client:
            deadline = time.monotonic() + 30
            while client.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert client.get("/healthz").json()["index_mode"] == "server"
            published_path(store, 2).unlink()  # the operator removes video 2
            while pipeline_index.video_ids() != {1}:
                assert time.monotonic() < deadline + 30, "video 2 stays in the server index"
                time.sleep(0.05)
            hits = client.post("/search/text", json={"query": "a frame", "top_k": 10}).json()["results"]
            assert {hit["video_id"] for hit in hits} == {1}
