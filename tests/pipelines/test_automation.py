"""The sensor and the reconcile schedule, evaluated against real instances and folders."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from assets.videos import SIGNATURE_TAG, VIDEOS_PARTITIONS
from pipelines.automation import reconcile_schedule
from pipelines.sensor import decode_cursor, encode_cursor, video_sensor
from resources.dagster_resources import CheckpointStoreResource, EncoderResource, FrameSourceResource, FramesS3Resource, IndexResource
from resources.embedding.encoder import EncoderConfig
from tests.assets.test_videos import ASSETS, write_video
from tests.pipelines.ticks import DaemonTicks


class SensorTicks(DaemonTicks):
    """``video_sensor`` over a folder of videos and a checkpoint folder, on a fresh instance."""

    def __init__(self, videos: Path, checkpoints: Path) -> None:
        super().__init__(video_sensor, dg.DagsterInstance.ephemeral(), {
            "frames": FrameSourceResource(root=str(videos), s3=FramesS3Resource()),
            "store": CheckpointStoreResource(root=str(checkpoints)),
        })


def test_sensor_adds_partitions_and_runs_only_changed_videos(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    write_video(videos, 1, frames=2)
    write_video(videos, 2, frames=2, seed=2)
    sensor = SensorTicks(videos, tmp_path / "checkpoints")

    first = sensor.tick()
    assert sorted(r.partition_key for r in first.run_requests) == ["1", "2"]
    assert set(sensor.instance.get_dynamic_partitions(VIDEOS_PARTITIONS)) == {"1", "2"}
    assert all(r.run_key.startswith(f"video-{r.partition_key}-") and r.tags[SIGNATURE_TAG] for r in first.run_requests)
    assert first.run_requests[0].run_config == {"ops": {"video_assets": {"config": {"reason": "video 1: new video: no checkpoint"}}}}

    unchanged = sensor.tick()
    assert not unchanged.run_requests and unchanged.dynamic_partitions_requests == []
    assert "2 videos listed, 0 new, 0 checked against their checkpoints, 0 to run" in unchanged.skip_reason.skip_message

    (videos / "2" / "frame_0009.png").write_bytes((videos / "2" / "frame_0000.png").read_bytes())
    write_video(videos, 3, frames=1, seed=3)
    changed = sensor.tick()
    assert sorted(r.partition_key for r in changed.run_requests) == ["2", "3"]
    assert [list(r.partition_keys) for r in changed.dynamic_partitions_requests] == [["3"]]


@pytest.mark.parametrize("by_sensor", [False, True], ids=["embedded-by-hand", "embedded-by-sensor-runs"])
def test_starting_the_sensor_over_an_embedded_library_runs_nothing(tmp_path: Path, tiny_config: EncoderConfig, by_sensor: bool) -> None:
    """Issue 12: a fresh sensor (no cursor) over a library whose checkpoints match their files
    requests no run - whether the videos were embedded by runs it requested (their stored
    signature) or by hand (their frames listed and compared with the checkpoint's plan); changing
    one video's files requests exactly that one."""
    videos = tmp_path / "videos"
    for video_id in (1, 2, 3):
        write_video(videos, video_id, frames=2, seed=video_id)
    sensor = SensorTicks(videos, tmp_path / "checkpoints")
    listed = {str(v.video_id): v.signature for v in sensor.resources["frames"].source().list_videos()}
    resources = {
        **sensor.resources,
        "encoder": EncoderResource(model=tiny_config.model, pretrained=tiny_config.pretrained, precision="fp32"),
        "index": IndexResource(path=str(tmp_path / "qdrant"), collection="frames_sensor"),
    }
    with dg.instance_for_test() as elsewhere:  # the library was embedded before this sensor existed
        elsewhere.add_dynamic_partitions(VIDEOS_PARTITIONS, list(listed))
        for key, signature in listed.items():
            tags = {SIGNATURE_TAG: signature} if by_sensor else {}
            assert dg.materialize(ASSETS, partition_key=key, instance=elsewhere, resources=resources, tags=tags).success

    first = sensor.tick()
    assert not first.run_requests
    assert "3 videos listed, 3 new, 3 checked against their checkpoints, 0 to run" in first.skip_reason.skip_message
    (videos / "2" / "frame_0007.png").write_bytes((videos / "1" / "frame_0000.png").read_bytes())
    changed = sensor.tick()
    assert [r.partition_key for r in changed.run_requests] == ["2"]


def test_cursor_round_trip_and_garbage() -> None:
    assert decode_cursor(encode_cursor({5: "abc", 100000: "def"})) == {5: "abc", 100000: "def"}
    assert decode_cursor("not a cursor") == {} and decode_cursor(None) == {}


def test_schedule_requests_missing_and_stale_partitions(tmp_path: Path, tiny_config: EncoderConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    videos = tmp_path / "videos"
    write_video(videos, 1, frames=2)
    with dg.instance_for_test() as instance:  # schedules need an instance that has a ref
        instance.add_dynamic_partitions(VIDEOS_PARTITIONS, ["1"])
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
        instance.add_dynamic_partitions(VIDEOS_PARTITIONS, ["1"])
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
