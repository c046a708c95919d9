"""The sensor and the reconcile schedule, evaluated against real instances and folders."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from assets.videos import BATCH_TAG, SIGNATURE_TAG, VIDEOS_PARTITIONS, run_config_for
from pipelines.automation import reconcile_schedule
from pipelines.sensor import NEW_VIDEOS, decode_cursor, encode_cursor, requested_videos, video_sensor
from resources.checkpoints.store import CheckpointStore, manifest_key
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
    # Two new videos, registered in this order: one run of the range 1..2, each signature in its config.
    [run] = first.run_requests
    assert (run.partition_key, run.partition_key_range) == (None, dg.PartitionKeyRange("1", "2"))
    assert set(sensor.instance.get_dynamic_partitions(VIDEOS_PARTITIONS)) == {"1", "2"}
    listed = {str(v.video_id): v.signature for v in sensor.resources["frames"].source().list_videos()}
    assert run.run_config == {"ops": {"video_assets": {"config": {"reason": "2 new videos, 1 to 2: new video: no checkpoint", "signatures": listed}}}}
    assert run.run_key.startswith("videos-1-2-") and run.tags[BATCH_TAG] == NEW_VIDEOS

    unchanged = sensor.tick()
    assert not unchanged.run_requests and unchanged.dynamic_partitions_requests == []
    assert "2 videos listed, 0 new, 0 checked against their checkpoints, 0 to run" in unchanged.skip_reason.skip_message

    (videos / "2" / "frame_0009.png").write_bytes((videos / "2" / "frame_0000.png").read_bytes())
    write_video(videos, 3, frames=1, seed=3)
    changed = sensor.tick()
    assert sorted(r.partition_key for r in changed.run_requests) == ["2", "3"]  # a changed video, one new one: a run each
    assert all(r.run_key.startswith(f"video-{r.partition_key}-") and r.tags[SIGNATURE_TAG] for r in changed.run_requests)
    assert [list(r.partition_keys) for r in changed.dynamic_partitions_requests] == [["3"]]


def test_a_library_of_new_videos_is_requested_in_runs_of_videos_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library's first tick (or a burst) starts a run per VIDEOS_PER_RUN new videos, ranges of
    the partitions it registers in that order - not a run (a process, the code location, the
    model) per video. A video already known is a run of its own."""
    monkeypatch.setenv("VIDEOS_PER_RUN", "4")
    videos = tmp_path / "videos"
    for video_id in range(1, 11):
        write_video(videos, video_id, frames=1, seed=video_id)
    sensor = SensorTicks(videos, tmp_path / "checkpoints")
    sensor.instance.add_dynamic_partitions(VIDEOS_PARTITIONS, ["7"])  # registered before, e.g. by the UI
    tick = sensor.tick()
    singles = [r.partition_key for r in tick.run_requests if r.partition_key is not None]
    ranges = [r for r in tick.run_requests if r.partition_key is None]
    assert "7" in singles  # known: a run of its own, not part of this tick's new ranges
    assert len(tick.run_requests) == 1 + 3 and all(len(requested_videos(r)) <= 4 for r in tick.run_requests)  # 9 new in runs of <= 4
    assert sorted(v for r in tick.run_requests for v in requested_videos(r)) == list(range(1, 11))
    added = list(tick.dynamic_partitions_requests[0].partition_keys)
    registered = sensor.instance.get_dynamic_partitions(VIDEOS_PARTITIONS)
    for request in ranges:  # each range is consecutive in the partitions' order, as Dagster resolves it
        assert request.partition_key_range is not None
        start, end = registered.index(request.partition_key_range.start), registered.index(request.partition_key_range.end)
        assert registered[start : end + 1] == [str(v) for v in requested_videos(request)]
    assert sorted(added, key=int) == [str(v) for v in range(1, 11) if v != 7]


@pytest.mark.parametrize("embedded_by", ["hand", "sensor-runs", "a-sensor-run-of-new-videos"])
def test_starting_the_sensor_over_an_embedded_library_runs_nothing(tmp_path: Path, tiny_config: EncoderConfig, embedded_by: str) -> None:
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
        if embedded_by == "a-sensor-run-of-new-videos":  # one run of the range, each signature in its config
            ranged = {"dagster/asset_partition_range_start": "1", "dagster/asset_partition_range_end": "3"}
            config = run_config_for("3 new videos", signatures=listed)
            assert dg.materialize(ASSETS, instance=elsewhere, resources=resources, tags=ranged, run_config=config).success
        for key, signature in listed.items() if embedded_by != "a-sensor-run-of-new-videos" else []:
            tags = {SIGNATURE_TAG: signature} if embedded_by == "sensor-runs" else {}
            assert dg.materialize(ASSETS, partition_key=key, instance=elsewhere, resources=resources, tags=tags).success
    stored = {key: CheckpointStore(str(tmp_path / "checkpoints")).read_json(manifest_key(int(key)))["signature"] for key in listed}
    assert stored == (dict.fromkeys(listed) if embedded_by == "hand" else listed)  # what lets the sensor skip listing the video

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
