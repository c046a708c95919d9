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
lost; a signature another sensor already runs is not requested again (:func:`not_yet_requested`).
New videos go in runs of up to VIDEOS_PER_RUN (:func:`video_run_requests`: a range of the
partitions the tick registers), so a library's first tick does not start a run per video. Each
request says why in its run config (``reason``), which ``dagster sensor preview`` prints.

No ``from __future__ import annotations`` here: Dagster reads the parameter annotations.
"""

import base64
import hashlib
import json
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, PARTITION_NAME_TAG

from assets.videos import BATCH_TAG, SIGNATURE_TAG, VIDEOS_PARTITIONS, run_config_for, videos_partitions
from pipelines.jobs import video_pipeline
from resources.checkpoints.store import CheckpointStore, manifest_key, published_key
from resources.checkpoints.video_job import plan_digest
from resources.dagster_resources import CheckpointStoreResource, FrameSourceResource
from resources.embedding.patches import PatchConfig
from resources.frame_sources import FrameRef, FrameSource, FrameSourceError, VideoListing
from resources.settings import patch_config_from_env, videos_per_run_from_env

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
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
LIVE_OR_DONE = [*IN_FLIGHT, dg.DagsterRunStatus.SUCCESS]
NEW_VIDEOS = "new videos"  # BATCH_TAG's value


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


def new_videos_run_request(chunk: Sequence[tuple[VideoListing, str]]) -> dg.RunRequest:
    """One run of several new videos that are consecutive partitions (a range, as a backfill's
    runs are): their run's start-up is paid once. Each video's signature is in the run config."""
    first, last = chunk[0][0].video_id, chunk[-1][0].video_id
    digest = hashlib.sha256(";".join(f"{listing.video_id}:{listing.signature}" for listing, _ in chunk).encode()).hexdigest()[:16]
    return dg.RunRequest(
        run_key=f"videos-{first}-{last}-{digest}",
        tags={ASSET_PARTITION_RANGE_START_TAG: str(first), ASSET_PARTITION_RANGE_END_TAG: str(last), BATCH_TAG: NEW_VIDEOS},
        run_config=run_config_for(
            f"{len(chunk)} new videos, {first} to {last}: {chunk[0][1]}", {str(listing.video_id): listing.signature for listing, _ in chunk},
        ),
    )


def video_run_requests(decided: Sequence[tuple[VideoListing, str]], new_keys: Sequence[str], per_run: int) -> list[dg.RunRequest]:
    """The runs for ``decided`` (each video and why it runs): a run per changed video, and the
    new ones - registered by this tick in ``new_keys``' order, so consecutive new keys are a range
    of the partitions - in runs of up to ``per_run`` (VIDEOS_PER_RUN). A library's first tick or a
    burst of uploads then starts a run per ``per_run`` videos, not per video (each run pays a
    process, the code location and the model before its first frame)."""
    position = {key: i for i, key in enumerate(new_keys)}
    requests: list[dg.RunRequest] = []
    chunk: list[tuple[VideoListing, str]] = []

    def close_chunk() -> None:
        if len(chunk) == 1:
            requests.append(video_run_request(*chunk[0]))
        elif chunk:
            requests.append(new_videos_run_request(chunk))
        chunk.clear()

    for listing, reason in decided:
        at = position.get(str(listing.video_id))
        if at is None:
            requests.append(video_run_request(listing, reason))
            continue
        if chunk and (len(chunk) >= per_run or position[str(chunk[-1][0].video_id)] != at - 1):
            close_chunk()
        chunk.append((listing, reason))
    close_chunk()
    return requests


def _config_signatures(run_config: Mapping[str, Any]) -> dict[str, str]:
    """The per-video signatures a run's config holds (runs of several new videos); {} otherwise."""
    return dict(run_config.get("ops", {}).get("video_assets", {}).get("config", {}).get("signatures", {}))


def requested_videos(request: dg.RunRequest) -> list[int]:
    """The videos a request of these sensors runs."""
    if request.partition_key is not None:
        return [int(request.partition_key)]
    return [int(v) for v in _config_signatures(request.run_config)]


def not_yet_requested(instance: dg.DagsterInstance, requests: list[dg.RunRequest]) -> tuple[list[dg.RunRequest], int]:
    """``requests`` less the one-video requests whose signature already has a run queued, running
    or done - whichever sensor asked for it (Dagster's run keys dedupe within one sensor only, so
    the event path and the reconcile would otherwise both run a new video), or is in a run of new
    videos not yet finished. Two runs queries for them all; returns the requests left and how many
    were dropped. (Runs of new videos cover partitions this tick registered: none can be running.)"""
    singles = [r for r in requests if r.partition_key is not None]
    if not singles:
        return requests, 0
    taken: set[tuple[str, str]] = set()
    for record in instance.get_run_records(filters=dg.RunsFilter(tags={SIGNATURE_TAG: [r.tags[SIGNATURE_TAG] for r in singles]}, statuses=LIVE_OR_DONE)):
        run = record.dagster_run
        taken.add((run.tags.get(PARTITION_NAME_TAG, ""), run.tags.get(SIGNATURE_TAG, "")))
    for record in instance.get_run_records(filters=dg.RunsFilter(tags={BATCH_TAG: NEW_VIDEOS}, statuses=IN_FLIGHT)):
        taken.update(_config_signatures(record.dagster_run.run_config).items())
    kept = [r for r in requests if r.partition_key is None or (r.partition_key, r.tags[SIGNATURE_TAG]) not in taken]
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
    to_run: list[tuple[VideoListing, str]] = []
    checked, left = 0, 0
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
            to_run.append((listing, reason))
    requests, running = not_yet_requested(context.instance, video_run_requests(to_run, new_keys, videos_per_run_from_env()))
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
