"""``video_event_sensor``: runs the pipeline for the videos the source says changed.

Each tick asks the source's change feed (:mod:`resources.change_feeds`) which videos changed: for
S3, the SQS queue that the bucket's event notifications go to (``FRAMES_EVENTS_QUEUE_URL``); for a
local folder, the directories modified since the last tick. It lists only those videos, registers
the new ones as partitions and requests a run for each, then deletes the messages it read. What a
tick costs follows what changed, not the library: with nothing in the queue it is one empty
ReceiveMessage, whatever the number of videos (a folder: one scan of the root's directory times).
Its cursor holds only the videos it had no time left to list (a backlog, empty in steady state)
and, for a folder, when its last look began. Its first tick over a folder starts from then: the
library as it was is ``video_sensor``'s to take in.

S3 delivers events at least once and out of order:

* a repeated event lists the video again and requests the same run key
  (:func:`pipelines.sensor.video_run_request`), which Dagster skips;
* a lost event is found by ``video_sensor``, the full listing, kept as the reconcile path (run it at
  a slower cadence beside this one); it requests no run for a video whose checkpoint already
  matches its files;
* a tick that fails deletes nothing: its messages come back after the queue's visibility timeout.

No ``from __future__ import annotations`` here: Dagster reads the parameter annotations.
"""

import json
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import dagster as dg

from assets.videos import VIDEOS_PARTITIONS, videos_partitions
from pipelines.jobs import video_pipeline
from pipelines.sensor import not_yet_requested, video_run_requests
from resources.dagster_resources import FrameEventsResource, FrameSourceResource
from resources.frame_sources import FrameSource, VideoListing
from resources.settings import videos_per_run_from_env

# A tick reads the queue for at most POLL_BUDGET_S, lists touched videos for at most
# LISTING_BUDGET_S and then waits for the listings under way: about 10 s at worst, the bound issue
# 26 sets (Dagster fails a tick after 60 s). Videos it had no time to list wait in the cursor,
# which holds only that backlog, never the library.
POLL_BUDGET_S = 3.0
LISTING_BUDGET_S = 4.0
LISTING_WORKERS = 8  # one LIST per video; S3 answers them in parallel
BATCH_LOOKUP = 100  # touched videos above which the tick reads every partition key at once


def decode_cursor(cursor: str | None) -> tuple[set[int], int | None]:
    """The videos an earlier tick read changes for but had no time to list, and where a folder
    feed's last look ended."""
    try:
        state = json.loads(cursor) if cursor else {}
        return {int(v) for v in state.get("pending", [])}, (int(state["since"]) if state.get("since") is not None else None)
    except (ValueError, KeyError, TypeError, AttributeError):
        return set(), None  # an unreadable cursor: the reconcile finds what it held


def list_within(source: FrameSource, video_ids: list[int], budget_s: float) -> tuple[dict[int, VideoListing | None], list[int]]:
    """Each video's listing (None: no file left), as many as ``budget_s`` allows; and the rest."""
    done: dict[int, VideoListing | None] = {}
    deadline = time.monotonic() + budget_s
    pool = ThreadPoolExecutor(LISTING_WORKERS, thread_name_prefix="listing")
    try:
        futures: dict[Future[VideoListing | None], int] = {pool.submit(source.listing, v): v for v in video_ids}
        pending = set(futures)
        while pending and (left := deadline - time.monotonic()) > 0:
            finished, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
            for future in finished:
                done[futures[future]] = future.result()  # a source error fails the tick: nothing is lost
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # listings under way finish; the rest never start
    return done, [v for v in video_ids if v not in done]


@dg.sensor(
    job=video_pipeline,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Every 15 s: asks the source which videos changed - the frame bucket's S3 event queue "
        "(FRAMES_EVENTS_QUEUE_URL), or a local folder's directory times - and requests a video_pipeline "
        "run for each; video_sensor's full listing stays the reconcile path."
    ),
)
def video_event_sensor(context: dg.SensorEvaluationContext, frames: FrameSourceResource, frame_events: FrameEventsResource) -> dg.SensorResult:
    source = frames.source()
    backlog, since_ns = decode_cursor(context.cursor)
    feed = frame_events.feed(source, since_ns)
    if feed is None:
        return dg.SensorResult(skip_reason=dg.SkipReason(
            "no change feed: set FRAMES_EVENTS_QUEUE_URL to the SQS queue of the frame bucket's S3 event "
            "notifications; video_sensor lists the library meanwhile"))
    batch = feed.poll(budget_s=POLL_BUDGET_S)
    listed, left = list_within(source, sorted(backlog | batch.video_ids), LISTING_BUDGET_S)
    to_run: list[tuple[VideoListing, str]] = []
    new_keys: list[str] = []
    gone = 0
    # Which partitions exist: one query per video for a few, one listing of them all for a burst
    # (1,000 single queries to PostgreSQL took ~5 s; the listing of 100,000 keys takes 0.25 s).
    known = set(context.instance.get_dynamic_partitions(VIDEOS_PARTITIONS)) if len(listed) > BATCH_LOOKUP else None
    for video_id, listing in sorted(listed.items()):
        if listing is None:  # every file of the video deleted: nothing to embed
            gone += 1
            continue
        key = str(video_id)
        new = key not in known if known is not None else not context.instance.has_dynamic_partition(VIDEOS_PARTITIONS, key)
        if new:
            new_keys.append(key)
        to_run.append((listing, f"{'new video' if new else 'files changed'} (change feed)"))
    requests, running = not_yet_requested(context.instance, video_run_requests(to_run, new_keys, videos_per_run_from_env()))
    # Deleted once acted on (requested, or kept in the cursor): a failed tick leaves them queued.
    feed.ack(batch)
    summary = (
        f"{batch.messages} event messages, {len(batch.video_ids)} videos touched, {len(new_keys)} new, "
        f"{len(requests)} to run" + (f", {running} already run or running" if running else "")
        + (f", {gone} with no file left" if gone else "")
        + (f", {len(left)} left for the next tick" if left else "")
        + (f", {batch.unreadable} unreadable (left to the reconcile)" if batch.unreadable else "")
    )
    context.log.info(summary)
    return dg.SensorResult(
        run_requests=requests or None,
        skip_reason=None if requests else dg.SkipReason(summary),
        dynamic_partitions_requests=[videos_partitions.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps({"pending": left, "since": batch.resume}) if left or backlog or batch.resume is not None else None,
    )
