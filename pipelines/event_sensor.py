"""``video_event_sensor``: runs the pipeline for the videos the frame bucket says changed.

Each tick reads the SQS queue that the bucket's S3 event notifications go to
(``FRAMES_EVENTS_QUEUE_URL``; see :mod:`resources.change_feeds`), lists only the videos those
events touch, registers the new ones as partitions and requests a run for each, then deletes the
messages it read. What a tick costs follows what changed, not the library: with nothing in the
queue it is one empty ReceiveMessage, whatever the number of videos. It keeps no cursor.

Delivery is at least once and out of order:

* a repeated event lists the video again and requests the same run key (``video-<id>-<signature>``,
  as :mod:`pipelines.sensor` uses), which Dagster skips;
* a lost event is found by ``video_sensor``, the full listing, kept as the reconcile path (run it at
  a slower cadence beside this one); it requests no run for a video whose checkpoint already
  matches its files;
* a tick that fails deletes nothing: its messages come back after the queue's visibility timeout.

No ``from __future__ import annotations`` here: Dagster reads the parameter annotations.
"""

import dagster as dg

from assets.videos import SIGNATURE_TAG, VIDEOS_PARTITIONS, run_config_for, videos_partitions
from pipelines.jobs import video_pipeline
from resources.dagster_resources import FrameEventsResource, FrameSourceResource

EVENT_BUDGET_S = 15.0  # of reading the queue per tick; Dagster gives a sensor tick 60 s by default


@dg.sensor(
    job=video_pipeline,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Every 15 s: reads the frame bucket's S3 event queue (FRAMES_EVENTS_QUEUE_URL) and requests "
        "a video_pipeline run for each video an event touched; video_sensor's full listing stays the "
        "reconcile path for lost events."
    ),
)
def video_event_sensor(context: dg.SensorEvaluationContext, frames: FrameSourceResource, frame_events: FrameEventsResource) -> dg.SensorResult:
    source = frames.source()
    feed = frame_events.feed(source)
    if feed is None:
        return dg.SensorResult(skip_reason=dg.SkipReason(
            "no change feed: set FRAMES_EVENTS_QUEUE_URL to the SQS queue of the frame bucket's S3 event "
            "notifications (FRAMES_ROOT on s3://); video_sensor lists the library meanwhile"))
    batch = feed.poll(budget_s=EVENT_BUDGET_S)
    requests, new_keys, gone = [], [], 0
    for video_id in sorted(batch.video_ids):
        listing = source.listing(video_id)
        if listing is None:  # every file of the video deleted: nothing to embed
            gone += 1
            continue
        key = str(video_id)
        if not context.instance.has_dynamic_partition(VIDEOS_PARTITIONS, key):
            new_keys.append(key)
        requests.append(dg.RunRequest(
            partition_key=key,
            run_key=f"video-{video_id}-{listing.signature}",
            tags={SIGNATURE_TAG: listing.signature},
            run_config=run_config_for(f"video {video_id}: {'new video' if key in new_keys else 'files changed'} (S3 event)"),
        ))
    feed.ack(batch)  # after the requests are built: a failed tick leaves its messages in the queue
    summary = (
        f"{batch.messages} event messages, {len(batch.video_ids)} videos touched, {len(new_keys)} new, "
        f"{len(requests)} to run" + (f", {gone} with no file left" if gone else "")
        + (f", {batch.unreadable} unreadable (left to the reconcile)" if batch.unreadable else "")
    )
    context.log.info(summary)
    return dg.SensorResult(
        run_requests=requests or None,
        skip_reason=None if requests else dg.SkipReason(summary),
        dynamic_partitions_requests=[videos_partitions.build_add_request(new_keys)] if new_keys else [],
    )
