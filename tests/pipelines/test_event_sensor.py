"""The S3 change feed (issue 26): S3 event notifications into SQS, both on moto's server over
HTTP, read by ``video_event_sensor`` as the Dagster daemon evaluates it; ``video_sensor``'s full
listing as the reconcile path for lost events."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest

from assets.videos import VIDEOS_PARTITIONS
from pipelines import event_sensor
from pipelines.event_sensor import video_event_sensor
from pipelines.sensor import requested_videos, video_sensor
from resources.change_feeds import S3ObjectChange, object_changes, video_of_key
from resources.dagster_resources import CheckpointStoreResource, FrameEventsResource, FrameSourceResource, FramesS3Resource
from resources.frame_sources import S3FrameSource
from tests.conftest import make_frame
from tests.pipelines.ticks import DaemonTicks, send_events_to_queue
from tests.search_service.test_app import to_png

PNG = to_png(make_frame(64, 48, seed=1).permute(1, 2, 0).numpy())


def s3_event(bucket: str, key: str, name: str = "ObjectCreated:Put") -> str:
    return json.dumps({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": name,
                                    "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1}}}]})


def test_event_bodies_read_into_object_changes() -> None:
    assert object_changes(s3_event("frames-bucket", "videos%2F7%2Fframe+1.png")) == [S3ObjectChange("frames-bucket", "videos/7/frame 1.png", True)]
    assert object_changes(s3_event("b", "videos/7/a.png", "ObjectRemoved:Delete"))[0].created is False
    assert object_changes(s3_event("b", "videos/7/a.png", "ObjectRestore:Completed")) == []
    sns = json.dumps({"Type": "Notification", "Message": s3_event("b", "k")})
    assert object_changes(sns) == [S3ObjectChange("b", "k", True)]
    assert object_changes(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})) == []
    for garbage in ("not json", json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]})):
        with pytest.raises(ValueError):
            object_changes(garbage)
    assert [video_of_key(k, "videos/") for k in ("videos/7/a.png", "videos/0007/a.png", "videos/7", "other/7/a.png", "videos/x/a.png", "videos/7/_ingest/b.json")] == [7, 7, None, None, None, 7]


def test_one_videos_listing_has_the_full_listings_signature(moto_s3_endpoint: str, s3_client: Any, tmp_path: Path) -> None:
    """The event path lists one video; its signature must be the one the full listing gives (the
    run keys of both paths agree), for plain and zero-padded folders, on S3 and local folders."""
    bucket = f"listing-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    for key in ("videos/7/frame_0000.png", "videos/7/frame_0001.png", "videos/70/frame_0000.png", "videos/0012/frame_0000.png"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=PNG)
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(PNG)
    from resources.frame_sources import LocalFolderSource

    for source in (S3FrameSource(s3_client, f"s3://{bucket}/videos/"), LocalFolderSource(tmp_path / "videos")):
        full = {listing.video_id: listing for listing in source.list_videos()}
        assert sorted(full) == [7, 12, 70]
        assert all(source.listing(video_id) == listing for video_id, listing in full.items()), source
        assert source.listing(8) is None


class Library:
    """A bucket of videos whose S3 events go to an SQS queue, and the two sensors over it, ticked
    as the daemon ticks them (partition requests applied to the instance)."""

    def __init__(self, endpoint: str, tmp_path: Path) -> None:
        credentials: dict[str, Any] = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        self.s3, self.sqs = boto3.client("s3", **credentials), boto3.client("sqs", **credentials)
        self.bucket = f"frames-{uuid.uuid4().hex[:12]}"  # a valid S3 name: moto delivers its events
        self.s3.create_bucket(Bucket=self.bucket)
        self.queue = self.sqs.create_queue(QueueName=self.bucket)["QueueUrl"]
        self.resources_s3 = FramesS3Resource(**{k: v for k, v in credentials.items()})
        self.frames = FrameSourceResource(root=f"s3://{self.bucket}/videos/", s3=self.resources_s3)
        instance = dg.DagsterInstance.ephemeral()
        self.events = DaemonTicks(video_event_sensor, instance, {"frames": self.frames, "frame_events": FrameEventsResource(queue_url=self.queue, s3=self.resources_s3)})
        self.reconcile = DaemonTicks(video_sensor, instance, {"frames": self.frames, "store": CheckpointStoreResource(root=str(tmp_path / "checkpoints"))})
        self.instance = instance

    def notify(self) -> None:
        send_events_to_queue(self.s3, self.sqs, self.bucket, self.queue)

    def add_video(self, video_id: int, frames: int = 2) -> None:
        for f in range(frames):
            self.s3.put_object(Bucket=self.bucket, Key=f"videos/{video_id}/frame_{f:04d}.png", Body=PNG)

    def event_tick(self) -> dg.SensorResult:
        return self.events.tick()

    def reconcile_tick(self) -> dg.SensorResult:
        return self.reconcile.tick()

    def queued(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        return sum(int(v) for v in attributes["Attributes"].values())


def requested(result: dg.SensorResult) -> list[str]:
    """The videos the tick's requests run, one-video runs and runs of several new videos alike."""
    return sorted((str(v) for r in result.run_requests or [] for v in requested_videos(r)), key=int)


@pytest.fixture
def library(moto_s3_endpoint: str, tmp_path: Path) -> Library:
    lib = Library(moto_s3_endpoint, tmp_path)
    for video_id in (1, 2, 3):
        lib.add_video(video_id)
    lib.reconcile_tick()  # the library as the sensors found it before the queue existed
    lib.notify()
    return lib


def test_a_tick_over_a_library_with_one_new_video_requests_exactly_one_run(library: Library) -> None:
    quiet = library.event_tick()  # only S3's s3:TestEvent so far
    assert not quiet.run_requests and "0 videos touched" in quiet.skip_reason.skip_message
    library.add_video(4, frames=3)  # three events, one video
    tick = library.event_tick()
    assert requested(tick) == ["4"]
    [request] = tick.run_requests
    listing = S3FrameSource(library.s3, f"s3://{library.bucket}/videos/").listing(4)
    assert request.run_key == f"video-4-{listing.signature}"  # the key the full listing gives it too
    assert library.instance.has_dynamic_partition(VIDEOS_PARTITIONS, "4")
    assert library.queued() == 0 and not library.event_tick().run_requests  # read once, deleted
    assert tick.cursor is None  # nothing kept: the cursor holds only a backlog, never the library


def test_videos_not_listed_within_the_budget_wait_in_the_cursor(library: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst larger than a tick's listing budget is requested over several ticks, none lost."""
    library.event_tick()
    for video_id in range(10, 22):
        library.add_video(video_id, frames=1)
    monkeypatch.setattr(event_sensor, "LISTING_BUDGET_S", 0.0)  # no time to list: all wait
    waited = library.event_tick()
    assert not waited.run_requests and "12 left for the next tick" in waited.skip_reason.skip_message
    assert json.loads(waited.cursor)["pending"] == list(range(10, 22)) and library.queued() == 0
    monkeypatch.setattr(event_sensor, "LISTING_BUDGET_S", 30.0)
    assert requested(library.event_tick()) == [str(v) for v in range(10, 22)]
    assert json.loads(library.events.cursor)["pending"] == []


def test_changed_and_deleted_files_request_the_video_again(library: Library) -> None:
    library.event_tick()
    library.s3.delete_object(Bucket=library.bucket, Key="videos/2/frame_0001.png")
    library.s3.put_object(Bucket=library.bucket, Key="videos/3/frame_0009.png", Body=PNG)
    assert requested(library.event_tick()) == ["2", "3"]
    for f in range(2):  # video 1 deleted whole: nothing to run
        library.s3.delete_object(Bucket=library.bucket, Key=f"videos/1/frame_{f:04d}.png")
    gone = library.event_tick()
    assert not gone.run_requests and "1 with no file left" in gone.skip_reason.skip_message


def test_a_duplicated_event_requests_the_same_run_key(library: Library) -> None:
    """At-least-once delivery: the repeat names the same signature, which has a run already, so it
    requests nothing; without that run on record it gets the same run key, which the daemon skips."""
    library.event_tick()
    library.add_video(5, frames=1)
    first = library.event_tick()
    library.sqs.send_message(QueueUrl=library.queue, MessageBody=s3_event(library.bucket, "videos/5/frame_0000.png"))
    again = library.event_tick()
    assert not again.run_requests and "1 already run or running" in again.skip_reason.skip_message
    library.instance.wipe()  # the run record gone: the run key is what dedupes
    library.sqs.send_message(QueueUrl=library.queue, MessageBody=s3_event(library.bucket, "videos/5/frame_0000.png"))
    assert [r.run_key for r in library.event_tick().run_requests] == [r.run_key for r in first.run_requests]


def test_a_lost_event_is_found_by_the_reconcile(library: Library) -> None:
    library.event_tick()
    library.add_video(6, frames=1)
    library.sqs.purge_queue(QueueUrl=library.queue)  # the event is lost
    assert not library.event_tick().run_requests
    assert requested(library.reconcile_tick()) == ["6"]


def test_a_video_either_sensor_already_runs_is_not_requested_by_the_other(library: Library) -> None:
    """Run keys dedupe within one sensor only: a new video the event path requested is not
    requested again by the reconcile while that run is queued (or after it succeeded), nor the
    other way round; a failed run leaves the other sensor's request as its second chance."""
    library.event_tick()
    library.add_video(7, frames=1)
    assert requested(library.event_tick()) == ["7"]
    reconcile = library.reconcile_tick()
    assert not reconcile.run_requests and "1 already run or running" in reconcile.skip_reason.skip_message
    library.sqs.purge_queue(QueueUrl=library.queue)
    library.add_video(8, frames=1)  # its events arrive after the reconcile's listing saw it
    assert requested(library.reconcile_tick()) == ["8"]
    assert not library.event_tick().run_requests
    runs = library.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "8"}))
    library.instance.report_run_failed(runs[0])
    library.add_video(8, frames=1)  # the same files again: the event path's second chance
    assert requested(library.event_tick()) == ["8"]


def test_unreadable_messages_and_other_prefixes_are_left_to_the_reconcile(library: Library) -> None:
    library.event_tick()
    library.sqs.send_message(QueueUrl=library.queue, MessageBody="{not json")
    library.s3.put_object(Bucket=library.bucket, Key="elsewhere/9/frame_0000.png", Body=PNG)
    tick = library.event_tick()
    assert not tick.run_requests and "1 unreadable" in tick.skip_reason.skip_message
    assert library.queued() == 0  # read, counted and deleted: not redelivered forever


def test_without_a_queue_the_event_sensor_says_what_to_set() -> None:
    resources = {"frames": FrameSourceResource(root="s3://frames-bucket/videos/", s3=FramesS3Resource(region_name="us-east-1")),
                 "frame_events": FrameEventsResource(s3=FramesS3Resource())}
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=resources) as context:
        result = video_event_sensor(context)
    assert not result.run_requests and "FRAMES_EVENTS_QUEUE_URL" in result.skip_reason.skip_message


def test_a_local_library_ticks_on_directory_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local folder's change feed: the first tick starts from now (the library as it was is the
    full listing's); then new, changed and deleted videos are listed alone, and nothing else.
    Two touched videos take the burst's path (every partition key read at once), one the single
    lookup: both tell new videos from known ones."""
    monkeypatch.setattr(event_sensor, "BATCH_LOOKUP", 1)
    videos = tmp_path / "videos"
    for video_id in (1, 2):
        (videos / str(video_id)).mkdir(parents=True)
        (videos / str(video_id) / "frame_0000.png").write_bytes(PNG)
    old = time.time_ns() - 60 * 10**9  # folders last changed a minute ago
    for video_id in (1, 2):
        os.utime(videos / str(video_id), ns=(old, old))
    ticks = DaemonTicks(video_event_sensor, dg.DagsterInstance.ephemeral(), {
        "frames": FrameSourceResource(root=str(videos), s3=FramesS3Resource()), "frame_events": FrameEventsResource(s3=FramesS3Resource())})
    ticks.instance.add_dynamic_partitions(VIDEOS_PARTITIONS, ["1", "2"])  # as the full listing registered them
    tick = ticks.tick

    assert not tick().run_requests and json.loads(ticks.cursor)["since"] > 0
    (videos / "3").mkdir()
    (videos / "3" / "frame_0000.png").write_bytes(PNG)
    (videos / "1" / "frame_0001.png").write_bytes(PNG)
    both = tick()
    assert requested(both) == ["1", "3"] and [list(r.partition_keys) for r in both.dynamic_partitions_requests] == [["3"]]
    for folder in (videos / "1", videos / "2", videos / "3"):
        os.utime(folder, ns=(old, old))
    assert not tick().run_requests
    (videos / "2" / "frame_0000.png").unlink()
    emptied = tick()
    assert requested(emptied) == ["2"] and not emptied.dynamic_partitions_requests  # an empty folder is still a video folder


