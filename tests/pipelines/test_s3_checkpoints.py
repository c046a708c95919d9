"""CHECKPOINT_DIR=s3://...: two workers in separate working directories, each with its own index
folder, share one checkpoint store on S3 (moto's server over HTTP). What one publishes, the
other syncs and checks for staleness without embedding anything."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pytest

from assets.videos import VIDEOS_PARTITIONS
from pipelines.automation import reconcile_schedule
from resources.checkpoints.store import CheckpointStore, manifest_key, published_key
from resources.dagster_resources import CheckpointStoreResource, EncoderResource, FrameSourceResource, FramesS3Resource, IndexResource
from resources.embedding.encoder import EncoderConfig
from resources.vector_index import VectorIndex
from resources.vector_index.schema import IndexSchema
from tests.assets.test_videos import ASSETS, write_video

pytestmark = pytest.mark.slow


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:  # the schedule needs an instance with a ref
        yield test_instance


def test_two_workers_share_s3_checkpoints(
    instance: dg.DagsterInstance, tmp_path: Path, tiny_config: EncoderConfig, s3_client, moto_s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"shared-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1"),
                        ("AWS_EC2_METADATA_DISABLED", "true"), ("S3_ENDPOINT_URL", moto_s3_endpoint)):
        monkeypatch.setenv(name, value)
    root = f"s3://{bucket}/framesearch/checkpoints"
    videos = tmp_path / "videos"
    write_video(videos, 1, frames=3)
    instance.add_dynamic_partitions(VIDEOS_PARTITIONS, ["1"])
    encoder = EncoderResource(model=tiny_config.model, pretrained=tiny_config.pretrained, precision="fp32")

    def worker(name: str) -> dict:
        workdir = tmp_path / name
        workdir.mkdir()
        monkeypatch.chdir(workdir)  # nothing may land in a worker's own folder but its index
        return {
            "encoder": encoder,
            "frames": FrameSourceResource(root=str(videos), s3=FramesS3Resource()),
            "store": CheckpointStoreResource(root=root, chunk_frames=2),
            "index": IndexResource(path=str(workdir / "qdrant"), collection="frames_shared"),
        }

    first = worker("a")
    result = dg.materialize(ASSETS, partition_key="1", instance=instance, resources=first,
                            selection=[dg.AssetKey("frame_manifest"), dg.AssetKey("frame_embeddings")])
    assert result.success
    store = CheckpointStore(root)
    assert store.exists(published_key(1)) and store.exists(manifest_key(1))
    assert store.list("_work", recursive=True) == []  # chunks went to S3 and were removed on publication
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == []  # the worker wrote nothing locally

    second = worker("b")
    result = dg.materialize(ASSETS, partition_key="1", instance=instance, resources=second, selection=[dg.AssetKey("index_sync")])
    assert result.success
    with VectorIndex.open(IndexSchema("frames_shared", 64), path=tmp_path / "b" / "qdrant") as index:
        assert index.count(1) == 3
    with dg.build_schedule_context(instance=instance, resources=second) as context:
        assert reconcile_schedule(context) == []  # the shared checkpoint is current: nothing to re-run
    monkeypatch.setenv("PATCH_STRIDE", "100")
    with dg.build_schedule_context(instance=instance, resources=second) as context:
        assert [r.partition_key for r in reconcile_schedule(context)] == ["1"]  # stale, read from S3's footer
