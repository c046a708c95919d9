"""The pipeline on deploy/dagster.yaml's storage: a real PostgreSQL 15 (started from the
machine's binaries, tests/postgres/pg.py) holds the runs, the event log, the dynamic partitions
and the schedule state."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest

from assets.videos import VIDEOS_PARTITIONS
from pipelines.automation import reconcile_schedule, video_sensor
from pipelines.sensor import requested_videos
from resources.dagster_resources import CheckpointStoreResource, EncoderResource, FrameSourceResource, FramesS3Resource, IndexResource
from resources.embedding.encoder import EncoderConfig
from tests.assets.test_videos import ASSETS, write_video
from tests.postgres.pg import Postgres, write_dagster_home

pytestmark = pytest.mark.slow


@pytest.fixture
def instance(postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The instance a deployment gets: DAGSTER_HOME/dagster.yaml is deploy/dagster.yaml as is."""
    home = write_dagster_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("FRAMESEARCH_MAX_CONCURRENT_RUNS", "2")
    for name, value in postgres.env().items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.get() as deployed:
        yield deployed
        deployed.wipe()  # the server is shared by the session: leave it empty
        for key in deployed.get_dynamic_partitions(VIDEOS_PARTITIONS):
            deployed.delete_dynamic_partition(VIDEOS_PARTITIONS, key)


def test_the_instance_is_postgres_backed(instance: dg.DagsterInstance) -> None:
    names = {type(s).__name__ for s in (instance.run_storage, instance.event_log_storage, instance.schedule_storage)}
    assert names == {"PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"}
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 2


def test_sensor_and_runs_on_postgres(instance: dg.DagsterInstance, tmp_path: Path, tiny_config: EncoderConfig) -> None:
    videos = tmp_path / "videos"
    for video_id in (1, 2):
        write_video(videos, video_id, frames=2)
    frames = FrameSourceResource(root=str(videos), s3=FramesS3Resource())
    store = CheckpointStoreResource(root=str(tmp_path / "checkpoints"))
    with dg.build_sensor_context(instance=instance, resources={"frames": frames, "store": store}) as context:
        result = video_sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(VIDEOS_PARTITIONS, list(request.partition_keys))
    keys = sorted(str(v) for r in result.run_requests for v in requested_videos(r))  # one run of both new videos
    assert keys == ["1", "2"] and set(instance.get_dynamic_partitions(VIDEOS_PARTITIONS)) == {"1", "2"}

    resources = {
        "encoder": EncoderResource(model=tiny_config.model, pretrained=tiny_config.pretrained, precision="fp32"),
        "store": store,
        "frames": frames,
        "index": IndexResource(path=str(tmp_path / "qdrant"), collection="frames_pg"),
    }
    for key in keys:
        assert dg.materialize(ASSETS, partition_key=key, instance=instance, resources=resources).success

    runs = instance.get_runs()
    assert len(runs) == 2 and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    for asset in ("frame_embeddings", "index_sync"):
        assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {"1", "2"}
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("index_sync"), "points_match_checkpoint")])
    assert check  # check results are stored in PostgreSQL as well
    with dg.build_schedule_context(instance=instance, resources=resources) as context:
        assert reconcile_schedule(context) == []  # every partition up to date


def test_partitions_beyond_sqlites_limit(instance: dg.DagsterInstance) -> None:
    """One add of 40,000 keys: past the 32,766 variables of SQLite's default build (the ~36k
    failures of dagster#16260); PostgreSQL takes it, and finds one key by index."""
    keys = [str(k) for k in range(40_000)]
    started = time.perf_counter()
    instance.add_dynamic_partitions(VIDEOS_PARTITIONS, keys)
    added = time.perf_counter() - started
    assert len(instance.get_dynamic_partitions(VIDEOS_PARTITIONS)) == 40_000
    assert instance.has_dynamic_partition(VIDEOS_PARTITIONS, "39999")
    instance.add_dynamic_partitions(VIDEOS_PARTITIONS, keys[-10:] + ["40000"])  # existing keys are skipped
    assert len(instance.get_dynamic_partitions(VIDEOS_PARTITIONS)) == 40_001
    assert added < 60, f"adding 40,000 partitions took {added:.1f} s"
