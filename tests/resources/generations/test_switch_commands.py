"""The switch from a shell and from Dagster: ``generations plan`` records the configured model's
generation and prints the environment that fills it; ``cut-over`` is refused until that generation
covers the active one; ``status`` shows both; the ``switch_generation`` job rolls back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resources.checkpoints.format import published_path
from resources.checkpoints.video_embedding import embed_video
from resources.embedding.encoder import EncoderConfig, FrameEncoder
from resources.embedding.model_files import save_random_weights
from resources.embedding.patches import PatchConfig
from resources.embedding.weights import TINY_MODEL
from resources.frame_sources import LocalFolderSource
from resources.generations import BASE, FilePointer, load_record
from resources.generations.__main__ import main
from resources.vector_index import VectorIndex
from resources.vector_index.follower import sync_checkpoint
from resources.vector_index.schema import IndexSchema
from tests.assets.test_videos import write_video

COLLECTION = "frames_cli"


def fill(encoder: FrameEncoder, collection: str, store: Path, qdrant: Path, videos: Path, video_ids: list[int]) -> None:
    source = LocalFolderSource(videos)
    with VectorIndex.open(IndexSchema(collection, encoder.info.embed_dim), path=qdrant) as index:
        for video_id in video_ids:
            embed_video(video_id, source.manifest(video_id), source, encoder, store, PatchConfig())
            sync_checkpoint(index, video_id, published_path(store, video_id))


def test_plan_cut_over_status_and_the_rollback_job(
    tmp_path: Path, tiny_encoder: FrameEncoder, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    videos, store, qdrant = tmp_path / "videos", tmp_path / "checkpoints", tmp_path / "qdrant"
    for video_id in (1, 2):
        write_video(videos, video_id, frames=2, seed=video_id)
    for name, value in {
        "QDRANT_PATH": str(qdrant), "CHECKPOINT_DIR": str(store), "QDRANT_COLLECTION": COLLECTION,
        "OPENCLIP_MODEL": TINY_MODEL, "OPENCLIP_PRETRAINED": str(tiny_weights), "OPENCLIP_PRECISION": "fp32",
    }.items():
        monkeypatch.setenv(name, value)
    fill(tiny_encoder, COLLECTION, store, qdrant, videos, [1, 2])  # model A: the base generation

    weights_b = save_random_weights(tmp_path / "b.safetensors", TINY_MODEL, seed=1)
    monkeypatch.setenv("OPENCLIP_PRETRAINED", str(weights_b))  # plan under model B's settings
    assert main(["plan"]) == 0
    printed = capsys.readouterr().out
    name = next(line.split("=", 1)[1] for line in printed.splitlines() if line.startswith("export INDEX_GENERATION="))
    record = load_record(str(store), name)
    assert record is not None and record.pretrained == str(weights_b) and record.embed_dim == 64
    assert f"export OPENCLIP_PRETRAINED={weights_b}" in printed
    monkeypatch.setenv("OPENCLIP_PRETRAINED", str(tiny_weights))  # back to the deployment's own

    encoder_b = FrameEncoder.load(EncoderConfig(model=TINY_MODEL, pretrained=str(weights_b), precision="fp32"))
    fill(encoder_b, record.collection, Path(record.checkpoint_dir), qdrant, videos, [1])
    assert main(["cut-over", name]) == 2  # 1 of 2 videos: refused
    assert "1 of the 2 videos" in capsys.readouterr().err
    fill(encoder_b, record.collection, Path(record.checkpoint_dir), qdrant, videos, [2])
    assert main(["status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["active"] == BASE and status["generations"][name]["coverage"]["complete"] is True
    assert main(["cut-over", name]) == 0
    assert FilePointer(qdrant, COLLECTION).read().active == name  # type: ignore[union-attr]

    from pipelines.generations import switch_generation

    result = switch_generation.execute_in_process(run_config={"ops": {"switch_generation_op": {"config": {"rollback": True}}}})
    assert result.success
    state = FilePointer(qdrant, COLLECTION).read()
    assert state is not None and (state.active, state.previous) == (BASE, name)
    assert main(["cut-over", "gnothere"]) == 2


def test_index_generation_points_the_pipeline_at_that_generation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from resources.dagster_resources import pipeline_resources_from_env
    from resources.settings import SettingsError

    monkeypatch.setenv("CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("QDRANT_COLLECTION", COLLECTION)
    resources = pipeline_resources_from_env()
    assert (resources["store"].root, resources["index"].collection) == (str(tmp_path / "checkpoints"), COLLECTION)
    monkeypatch.setenv("INDEX_GENERATION", "g0123456789")
    resources = pipeline_resources_from_env()
    assert resources["store"].root == f"{tmp_path / 'checkpoints'}/generations/g0123456789"
    assert resources["index"].collection == f"{COLLECTION}_g0123456789"
    monkeypatch.setenv("INDEX_GENERATION", "../up")
    with pytest.raises(SettingsError, match="INDEX_GENERATION"):
        pipeline_resources_from_env()
