"""The pipeline fixture of the asset tests: resources over temp folders on an ephemeral instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assets.videos import ASSETS, VIDEOS_PARTITIONS
from resources.dagster_resources import CheckpointStoreResource, EncoderResource, FrameSourceResource, FramesS3Resource, IndexResource
from resources.embedding.encoder import EncoderConfig


@pytest.fixture
def pipeline(tmp_path: Path, tiny_config: EncoderConfig):
    """Resources over temp folders, and a function that materializes partitions on one instance."""
    instance = dg.DagsterInstance.ephemeral()
    resources = {
        "encoder": EncoderResource(model=tiny_config.model, pretrained=tiny_config.pretrained, precision="fp32"),
        "frames": FrameSourceResource(root=str(tmp_path / "videos"), fps=25.0, s3=FramesS3Resource()),
        "store": CheckpointStoreResource(root=str(tmp_path / "checkpoints"), chunk_frames=4),
        "index": IndexResource(path=str(tmp_path / "qdrant"), collection="frames_test"),
    }

    def run(video_id: int, frames: FrameSourceResource | None = None, **kwargs) -> dg.ExecuteInProcessResult:
        instance.add_dynamic_partitions(VIDEOS_PARTITIONS, [str(video_id)])
        return dg.materialize(
            ASSETS, partition_key=str(video_id), instance=instance,
            resources={**resources, "frames": frames or resources["frames"]}, **kwargs,
        )

    run.resources = resources  # type: ignore[attr-defined]
    run.root = tmp_path  # type: ignore[attr-defined]
    return run
