"""The sensor and the reconcile schedule, evaluated against real instances and folders."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from assets.videos import SIGNATURE_TAG, videos_partitions
from pipelines.automation import decode_cursor, encode_cursor, reconcile_schedule, video_sensor
from resources.encoder import EncoderConfig
from resources.encoder_resource import EncoderResource
from resources.pipeline_resources import CheckpointStoreResource, FramesS3Resource, FrameSourceResource, IndexResource
from tests.assets.test_videos import ASSETS, write_video


def test_sensor_adds_partitions_and_runs_only_changed_videos(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    write_video(videos, 1, frames=2)
    write_video(videos, 2, frames=2, seed=2)
    frames = FrameSourceResource(root=str(videos), s3=FramesS3Resource())
    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor: str | None) -> dg.SensorResult:
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"frames": frames}) as context:
            result = video_sensor(context)
        for request in result.dynamic_partitions_requests:  # what the daemon would apply
            instance.add_dynamic_partitions(videos_partitions.name, list(request.partition_keys))
        return result

    first = tick(None)
    assert sorted(r.partition_key for r in first.run_requests) == ["1", "2"]
    assert set(instance.get_dynamic_partitions(videos_partitions.name)) == {"1", "2"}
    assert all(r.run_key.startswith(f"video-{r.partition_key}-") and r.tags[SIGNATURE_TAG] for r in first.run_requests)

    unchanged = tick(first.cursor)
    assert unchanged.run_requests == [] and unchanged.dynamic_partitions_requests == []

    (videos / "2" / "frame_0009.png").write_bytes((videos / "2" / "frame_0000.png").read_bytes())
    write_video(videos, 3, frames=1, seed=3)
    changed = tick(unchanged.cursor)
    assert sorted(r.partition_key for r in changed.run_requests) == ["2", "3"]
    assert [list(r.partition_keys) for r in changed.dynamic_partitions_requests] == [["3"]]


def test_cursor_round_trip_and_garbage() -> None:
    assert decode_cursor(encode_cursor({5: "abc", 100000: "def"})) == {5: "abc", 100000: "def"}
    assert decode_cursor("not a cursor") == {} and decode_cursor(None) == {}


def test_schedule_requests_missing_and_stale_partitions(tmp_path: Path, tiny_config: EncoderConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    videos = tmp_path / "videos"
    write_video(videos, 1, frames=2)
    with dg.instance_for_test() as instance:  # schedules need an instance that has a ref
        instance.add_dynamic_partitions(videos_partitions.name, ["1"])
        resources = {
            "encoder": EncoderResource(model=tiny_config.model, pretrained=tiny_config.pretrained, precision="fp32"),
            "store": CheckpointStoreResource(root=str(tmp_path / "checkpoints")),
        }

        def evaluate() -> list[str]:
            with dg.build_schedule_context(instance=instance, resources=resources) as context:
                return [r.partition_key for r in reconcile_schedule(context)]

        assert evaluate() == ["1"]  # never materialized
        result = dg.materialize(
            ASSETS, partition_key="1", instance=instance,
            resources={**resources, "frames": FrameSourceResource(root=str(videos), s3=FramesS3Resource()),
                       "index": IndexResource(path=str(tmp_path / "qdrant"), collection="frames_sched")},
        )
        assert result.success
        assert evaluate() == []  # up to date
        monkeypatch.setenv("PATCH_STRIDE", "100")
        assert evaluate() == ["1"]  # patch settings changed: stale


def test_schedule_requests_videos_whose_run_failed_after_listing(tmp_path: Path, tiny_config: EncoderConfig) -> None:
    """A run that failed for good (a transient read error outlasting the retries) is not asked
    for again by the sensor (same signature, same run key); the schedule notices the checkpoint
    lags the frame manifest that run stored, and requests the video."""
    videos = tmp_path / "videos"
    folder = write_video(videos, 1, frames=2)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, ["1"])
        resources = {
            "encoder": EncoderResource(model=tiny_config.model, pretrained=tiny_config.pretrained, precision="fp32"),
            "store": CheckpointStoreResource(root=str(tmp_path / "checkpoints")),
            "frames": FrameSourceResource(root=str(videos), s3=FramesS3Resource(), outage_retry_waits_s=[]),
            "index": IndexResource(path=str(tmp_path / "qdrant"), collection="frames_sched"),
        }

        def evaluate() -> list[str]:
            with dg.build_schedule_context(instance=instance, resources=resources) as context:
                return [r.partition_key for r in reconcile_schedule(context)]

        def materialize() -> dg.ExecuteInProcessResult:
            return dg.materialize(ASSETS, partition_key="1", instance=instance, resources=resources, raise_on_error=False)

        assert materialize().success and evaluate() == []
        rows = [{"frame_id": f, "url": f"frame_{f:04d}.png"} for f in range(2)]
        rows.append({"frame_id": 2, "url": "file:///proc/self/mem"})  # reading it fails with EIO: transient
        (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        failed = materialize()
        assert not failed.success and "Input/output error" in str(failed.all_events)
        assert evaluate() == ["1"]  # behind its manifest
        rows[2]["url"] = "frame_0000.png"  # the source heals
        (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert materialize().success and evaluate() == []
