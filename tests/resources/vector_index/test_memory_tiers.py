"""Issue 20, item 3: INDEX_MEMORY gives Qdrant's memory tier to every structure of both collections
(vectors, graphs, payload, payload indexes, point-id map), and results do not depend on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from resources.settings import SettingsError, index_settings_from_env
from resources.vector_index import VectorIndex, index_layout
from resources.vector_index.layout import MEMORY_TIERS, QUANTIZATIONS
from resources.vector_index.schema import IndexPoint, IndexSchema

DIM = 16
SCHEMA = IndexSchema("frames_tiers", DIM)


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def _library(frames: int = 1200, seed: int = 5) -> tuple[list[IndexPoint], np.ndarray, IndexPoint]:
    """Frames of 4 patches over 3 videos; one frame holds a small object (one patch near ``target``)
    that its global vector knows nothing of."""
    rng = np.random.default_rng(seed)
    target = _unit(rng.normal(size=DIM))
    points = []
    for f in range(frames):
        patches = _unit(rng.normal(size=(4, DIM)))
        if f == frames // 2:
            patches[1] = _unit(target + 0.05 * rng.normal(size=DIM))
        video, frame = f % 3, f // 3
        points.append(IndexPoint(video, frame, _unit(rng.normal(size=DIM)), patches, {"video_id": video, "frame_id": frame, "timestamp_ms": 40 * frame}))
    return points, target, points[frames // 2]


def _load(index: VectorIndex, points: list[IndexPoint]) -> None:
    for video in sorted({p.video_id for p in points}):
        index.sync_video(video, [p for p in points if p.video_id == video], "v1")
    index.optimize()


@pytest.mark.parametrize("tier", MEMORY_TIERS)
def test_every_structure_of_both_embedded_collections_gets_the_tier(tmp_path: Path, tier: str) -> None:
    points, _, _ = _library(300)
    with VectorIndex.open(SCHEMA, path=tmp_path, layout=index_layout(SCHEMA, memory=tier)) as index:
        _load(index, points)
        names = [c.name for c in index.layout.collections]
    for name in names:
        config = json.loads((tmp_path / name / "edge_config.json").read_text())
        assert config["payload_memory"] == config["id_tracker_memory"] == tier
        for vector in config["vectors"].values():
            assert vector["memory"] == vector["hnsw_config"]["memory"] == tier
        segments = list((tmp_path / name / "segments").iterdir())
        assert segments
        for segment in segments:  # what the built segments (not only the collection's config) use
            assert json.loads((segment / "segment.json").read_text())["config"]["id_tracker_memory"] == tier
            indexed = json.loads((segment / "payload_index" / "config.json").read_text())["indexed_fields"]
            assert indexed and {field["memory"] for field in indexed.values()} == {tier}


def test_the_default_is_cached_and_none_leaves_qdrants_own_placement(tmp_path: Path) -> None:
    assert index_layout(SCHEMA).frames.memory == index_layout(SCHEMA).patches.memory == "cached"
    with VectorIndex.open(SCHEMA, path=tmp_path, layout=index_layout(SCHEMA, memory=None)) as index:
        names = [c.name for c in index.layout.collections]
    for name in names:
        config = json.loads((tmp_path / name / "edge_config.json").read_text())
        assert config.get("payload_memory") is None and config.get("id_tracker_memory") is None
        assert all(v.get("memory") is None for v in config["vectors"].values())


def test_the_server_backend_asks_for_the_tier() -> None:
    client = QdrantClient(":memory:")
    with VectorIndex.open(SCHEMA, client=client, layout=index_layout(SCHEMA, memory="cold")) as index:
        for collection in index.layout.collections:
            vectors = client.get_collection(collection.name).config.params.vectors
            assert isinstance(vectors, dict)
            for params in vectors.values():
                assert params.memory == models.Memory.COLD
                assert params.hnsw_config is not None and params.hnsw_config.memory == models.Memory.COLD


def test_results_do_not_depend_on_the_tier(tmp_path: Path) -> None:
    """The same library under each tier gives the same hits and scores, and the small object is
    found through its patch."""
    points, target, needle = _library()
    results = {}
    for tier in (None, *MEMORY_TIERS):
        with VectorIndex.open(SCHEMA, path=tmp_path / str(tier), layout=index_layout(SCHEMA, memory=tier)) as index:
            _load(index, points)
            hits = index.search(target, top_k=10, patch_queries=target[None], alpha=0.0)
            results[tier] = [(h.point_id, round(h.score, 5)) for h in hits]
            assert hits[0].point_id == needle.id
            index.sync_video(needle.video_id, [p for p in points if p.video_id == needle.video_id and p.frame_id != needle.frame_id], "v2")
            assert needle.id not in {h.point_id for h in index.search(target, top_k=10, patch_queries=target[None], alpha=0.0)}
    assert results[None] == results["cached"] == results["cold"]


def test_index_memory_setting() -> None:
    assert index_settings_from_env({}).memory == "cached"
    assert index_settings_from_env({"INDEX_MEMORY": "qdrant"}).memory is None
    assert index_settings_from_env({"INDEX_MEMORY": " Cold "}).memory == "cold"
    assert index_settings_from_env({"INDEX_MEMORY": "cached"}).layout(SCHEMA).patches.memory == "cached"
    for bad in ("pinned", "disk", "ram", "default"):
        with pytest.raises(SettingsError, match="INDEX_MEMORY"):
            index_settings_from_env({"INDEX_MEMORY": bad})
    with pytest.raises(ValueError, match="memory"):
        index_layout(SCHEMA, memory="pinned")


def test_the_pipelines_index_resource_reads_index_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from resources.dagster_resources.stores import IndexResource

    monkeypatch.setenv("INDEX_MEMORY", "cold")
    with IndexResource(path=str(tmp_path), collection="frames_resource").open(DIM) as index:
        names = [c.name for c in index.layout.collections]
    for name in names:
        assert json.loads((tmp_path / name / "edge_config.json").read_text())["payload_memory"] == "cold"


@pytest.mark.parametrize("backend", ["embedded", "memory"])
@pytest.mark.parametrize("quantization", QUANTIZATIONS)
def test_a_binary_quantized_patch_graph_still_finds_the_small_object(tmp_path: Path, backend: str, quantization: str) -> None:
    """The measured alternative (./dev bench index --patch-quantization): the graph searches a 1- or
    2-bit copy and rescores with the stored vectors; the small object still comes first."""
    points, target, needle = _library()
    layout = index_layout(SCHEMA, memory="cold", patch_quantization=quantization)
    opened = VectorIndex.open(SCHEMA, path=tmp_path, layout=layout) if backend == "embedded" else VectorIndex.open(SCHEMA, client=QdrantClient(":memory:"), layout=layout)
    with opened as index:
        _load(index, points)
        assert index.search(target, top_k=10, patch_queries=target[None], alpha=0.0)[0].point_id == needle.id
        if backend == "embedded":
            config = json.loads((tmp_path / index.layout.patches.name / "edge_config.json").read_text())
            assert config["vectors"]["patch"]["quantization_config"]["binary"]["encoding"] == ("one_bit" if quantization == "binary1" else "two_bits")
    with pytest.raises(ValueError, match="patch_quantization"):
        index_layout(SCHEMA, patch_quantization="binary3")
