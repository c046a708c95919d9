"""``video_sensor``: runs the pipeline for new and changed videos, and only for those.

Each tick lists the frame source once (every video with its signature: a digest of its files'
names, sizes and mtimes/ETags), adds a ``videos`` partition per new video and compares each
video's signature with the one the cursor remembers from the last tick. A video the cursor does
not know - every video, when the sensor starts for the first time over an existing library - is
checked against its published checkpoint instead (:func:`why_run`), so starting the sensor over an
embedded library requests nothing:

* the manifest the pipeline stored for the video records the signature of the run that made it
  (runs the sensor requested); equal signature and a checkpoint made from that manifest = up to
  date, without a request to the source;
* a video embedded by a run the sensor did not request (the UI, a backfill, ``./dev main``) has no
  signature stored: its frames are listed from the source (one listing of that video) and compared
  with the checkpoint's plan.

Checking costs a footer and a small JSON read per video; a tick checks for at most
``SEED_BUDGET_S`` seconds and leaves the rest for the next tick (the cursor holds only what it
decided), so a 100,000-video library is taken in over a few ticks, not in one that times out.

Run keys carry the signature: a changed video is requested once per change, even if the cursor is
lost. Each request says why in its run config (``reason``), which ``dagster sensor preview`` prints.

No ``from __future__ import annotations`` here: Dagster reads the parameter annotations.
"""

import base64
import json
import time
import zlib

import dagster as dg

from assets.videos import SIGNATURE_TAG, VIDEOS_PARTITIONS, run_config_for, videos_partitions
from pipelines.jobs import video_pipeline
from resources.checkpoints.store import CheckpointStore, manifest_key, published_key
from resources.checkpoints.video_job import plan_digest
from resources.dagster_resources import CheckpointStoreResource, FrameSourceResource
from resources.embedding.patches import PatchConfig
from resources.frame_sources import FrameRef, FrameSource, FrameSourceError, VideoListing
from resources.settings import patch_config_from_env

SEED_BUDGET_S = 20.0  # of checkpoint checks per tick; Dagster gives a sensor tick 60 s by default


def encode_cursor(signatures: dict[int, str]) -> str:
    """The sensor's memory, ``{video_id: signature}``, compressed: ~1 MB for 100,000 videos."""
    return base64.b64encode(zlib.compress(json.dumps(signatures, separators=(",", ":")).encode())).decode()


def decode_cursor(cursor: str | None) -> dict[int, str]:
    """The cursor's ``{video_id: signature}``; empty for no cursor or an unreadable one."""
    if not cursor:
        return {}
    try:
        raw = json.loads(zlib.decompress(base64.b64decode(cursor)))
    except (ValueError, zlib.error):
        return {}  # an unreadable cursor costs a re-check against the checkpoints, not re-runs
    return {int(k): v for k, v in raw.items()}


# A run of a signature in one of these states makes another request for it redundant. A failed or
# canceled run does not: the other sensor's request is the video's second chance.
LIVE_OR_DONE = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.SUCCESS,
]


def video_run_request(listing: VideoListing, reason: str) -> dg.RunRequest:
    """The run of ``listing``'s video, keyed by its signature: one sensor asked twice for the same
    files (a duplicated event, a lost cursor) gets the same run key, and Dagster runs it once.
    Dagster scopes run keys to the sensor: across the two sensors :func:`not_yet_requested` does it."""
    return dg.RunRequest(
        partition_key=str(listing.video_id),
        run_key=f"video-{listing.video_id}-{listing.signature}",
        tags={SIGNATURE_TAG: listing.signature},
        run_config=run_config_for(f"video {listing.video_id}: {reason}"),
    )


def not_yet_requested(instance: dg.DagsterInstance, requests: list[dg.RunRequest]) -> tuple[list[dg.RunRequest], int]:
    """``requests`` less those whose signature already has a run queued, running or done -
    whichever sensor asked for it (Dagster's run keys dedupe within one sensor only, so the event
    path and the reconcile would otherwise both run a new video). One runs query for them all;
    returns the requests left and how many were dropped."""
    signatures = [r.tags[SIGNATURE_TAG] for r in requests]
    if not signatures:
        return requests, 0
    runs = instance.get_run_records(filters=dg.RunsFilter(tags={SIGNATURE_TAG: signatures}, statuses=LIVE_OR_DONE))
    taken = {(record.dagster_run.tags.get("dagster/partition"), record.dagster_run.tags.get(SIGNATURE_TAG)) for record in runs}
    kept = [r for r in requests if (r.partition_key, r.tags[SIGNATURE_TAG]) not in taken]
    return kept, len(requests) - len(kept)


def why_run(
    listing: VideoListing, checkpoints: CheckpointStore, published: set[int], source: FrameSource,
    patch_config: PatchConfig, chunk_frames: int,
) -> str | None:
    """Why ``listing``'s video needs a run, or None when its published checkpoint already matches
    its source (see the module docstring)."""
    video_id = listing.video_id
    if video_id not in published:
        return "new video: no checkpoint"
    footer = checkpoints.read_metadata(published_key(video_id))
    stored = checkpoints.read_json(manifest_key(video_id)) or {}
    if stored.get("signature") == listing.signature:
        refs = [FrameRef(int(f), t, u) for f, t, u in stored["frames"]]
    elif stored.get("signature"):
        return "files changed since its checkpoint was made"
    else:  # embedded by a run the sensor did not request: ask the source for its frames
        try:
            refs = source.manifest(video_id)
        except FrameSourceError as exc:
            return f"its frames could not be listed ({exc}); the run will say why"
    plan = plan_digest(refs, str(footer.get("model_id")), patch_config, chunk_frames)
    return None if plan == footer.get("plan") else "frames or settings differ from its checkpoint"


@dg.sensor(
    job=video_pipeline,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Every 60 s: lists the frame source, registers new videos as partitions and requests a "
        "video_pipeline run for each new or changed video, never for one whose checkpoint already "
        "matches its files."
    ),
)
def video_sensor(context: dg.SensorEvaluationContext, frames: FrameSourceResource, store: CheckpointStoreResource) -> dg.SensorResult:
    source = frames.source()
    listings = source.list_videos()
    remembered = decode_cursor(context.cursor)
    known = set(context.instance.get_dynamic_partitions(VIDEOS_PARTITIONS))
    new_keys = [str(v.video_id) for v in listings if str(v.video_id) not in known]
    checkpoints, patch_config = store.store(), patch_config_from_env()
    published: set[int] | None = None
    decided: dict[int, str] = {}
    requests, checked, left = [], 0, 0
    deadline = time.monotonic() + SEED_BUDGET_S
    for listing in listings:
        previous = remembered.get(listing.video_id)
        if previous == listing.signature:
            decided[listing.video_id] = previous
            continue
        if time.monotonic() > deadline:
            left += 1  # not in the cursor (or with its old signature): checked on a later tick
            continue
        # Not seen by this sensor yet, or changed since: compare with its checkpoint, which a run
        # requested by video_event_sensor may already have brought up to date.
        if published is None:
            published = set(checkpoints.published())  # one listing of the store
        reason = why_run(listing, checkpoints, published, source, patch_config, store.chunk_frames)
        checked += 1
        decided[listing.video_id] = listing.signature
        if reason is not None:
            requests.append(video_run_request(listing, reason))
    requests, running = not_yet_requested(context.instance, requests)
    summary = (
        f"{len(listings)} videos listed, {len(new_keys)} new, {checked} checked against their checkpoints, "
        f"{len(requests)} to run" + (f", {running} already run or running" if running else "")
        + (f", {left} left for the next tick" if left else "")
    )
    context.log.info(summary)
    return dg.SensorResult(
        run_requests=requests or None,
        skip_reason=None if requests else dg.SkipReason(summary),  # what `dagster sensor preview` prints
        dynamic_partitions_requests=[videos_partitions.build_add_request(new_keys)] if new_keys else [],
        cursor=encode_cursor(decided),
    )
