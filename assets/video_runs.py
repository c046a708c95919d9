"""A run's videos through the pipeline - manifest, embeddings checkpoint, index sync - as Dagster events.

:func:`run_videos` never raises for a problem of a video itself: it yields the events of each
video's partitions as they happen (materializations, check results, and an observation naming why
it failed) and returns the failures. So a run of several videos records each video's own figures
and checks, and one bad video fails only its own partitions (see ``assets/videos.py``). When the
run embeds, its videos go through one :class:`~resources.checkpoints.embedding_stream.EmbeddingStream`:
the next videos are listed, fetched and decoded while the current ones are encoded, and the
encoder's batches span videos; each video's events still come in its own order.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Generator, Iterator, Sequence
from collections.abc import Set as AbstractSet

import dagster as dg

from assets.video_steps import (
    ALL_ASSETS,
    ALL_CHECKS,
    EMBEDDINGS,
    INDEX,
    MANIFEST,
    Event,
    PipelineParts,
    VideoFailure,
    VideoRun,
    compact_ingest_batches,
    record_embeddings,
    record_manifest,
    stored_manifest,
    sync,
    validator,
)
from resources.checkpoints.embedding_stream import EmbeddingStream, VideoFailed, VideoInput, VideoListed
from resources.checkpoints.store import manifest_key, published_key
from resources.checkpoints.video_job import CheckpointRejected, NoUsableFrameError, SourceUnavailableError
from resources.frame_sources import FrameRef, FrameSourceError


def run_videos(
    video_ids: Sequence[int], parts: PipelineParts, selected: AbstractSet[dg.AssetKey] = ALL_ASSETS,
    checks: AbstractSet[dg.AssetCheckKey] = ALL_CHECKS,
) -> Generator[Event, None, list[VideoFailure]]:
    """Manifest -> checkpoint -> index for each video; see the module docstring. Yields the videos'
    events as they happen and returns the failures (``failed = yield from run_videos(...)``).

    Stages whose asset is not ``selected`` (the UI can materialize one asset alone) are not run:
    their stored result - the manifest file, the published checkpoint - is used instead. After a
    video meets an outage (a transient failure), the videos not yet reached are failed as not tried.
    """
    runs = {video_id: VideoRun(video_id, checks) for video_id in video_ids}
    if EMBEDDINGS in selected:
        yield from _streamed(runs, parts, selected)
    else:
        for video in runs.values():
            yield from _without_embedding(video, parts, selected)
            yield from video.take(parts)
            if video.failure is not None and video.failure.transient:
                break  # an outage: the videos after it are failed as not tried, below
    outage = next((v.failure for v in runs.values() if v.failure is not None and v.failure.transient), None)
    for video in runs.values():
        if outage is not None and video.failure is None and not video.finished:
            # The source (or the index) is out: every further video would wait out the same
            # timeouts (a hanging endpoint: attempts x S3_TIMEOUT_SECONDS each). Fail them at once
            # as transient, so the step's outage retry takes them all, soon, when it may pass.
            video.fail("waiting", f"not tried: video {outage.video_id} met an outage at {outage.stage} ({outage.reason})", transient=True)
            yield from video.take(parts)
    return [v.failure for v in runs.values() if v.failure is not None]


class ManifestMissing(RuntimeError):
    """frame_embeddings was asked for without frame_manifest, and no manifest is stored."""


def _frames_of(video_id: int, parts: PipelineParts, list_source: bool) -> list[FrameRef]:
    """The video's frames: listed from the source (``frame_manifest`` selected), else the stored
    manifest. Runs on the stream's reader thread."""
    if list_source:
        compact_ingest_batches(video_id, parts)
        return parts.source.manifest(video_id)
    stored = stored_manifest(parts.store, video_id)
    if stored is None:
        where = parts.store.store().uri(manifest_key(video_id))
        raise ManifestMissing(f"video {video_id}: no frame manifest at {where}; materialize frame_manifest first")
    return stored


def _streamed(runs: dict[int, VideoRun], parts: PipelineParts, selected: AbstractSet[dg.AssetKey]) -> Iterator[Event]:
    """The run's videos through one embedding stream, each video's events in its own order."""
    stream = EmbeddingStream(
        parts.source, parts.encoder, parts.store.store(), parts.patch_config, parts.max_pixels, parts.store.chunk_frames,
        on_chunk=lambda video_id, done, total: parts.log(f"video {video_id}: chunk {done}/{total}"),
    )
    dim, listed_at = parts.encoder.info.embed_dim, {}
    inputs = [
        VideoInput(
            video_id, functools.partial(_frames_of, video_id, parts, MANIFEST in selected),
            functools.partial(validator, video, dim=dim),
        )
        for video_id, video in runs.items()
    ]
    for outcome in stream.run(inputs):
        video = runs[outcome.video_id]
        if isinstance(outcome, VideoListed):
            listed_at[video.video_id] = time.perf_counter()
            if MANIFEST in selected:
                record_manifest(video, list(outcome.frames), parts)
        elif isinstance(outcome, VideoFailed):
            _fail_from(video, outcome)
        else:
            record_embeddings(video, outcome.report, time.perf_counter() - listed_at[video.video_id], parts)
            yield from video.take(parts)  # stored before the sync's, as a one-by-one run would
            if INDEX in selected:
                sync(video, outcome.report.frames, parts)
            video.finished = True
        yield from video.take(parts)


def _fail_from(video: VideoRun, failed: VideoFailed) -> None:
    error = failed.error
    if isinstance(error, FrameSourceError):
        video.fail("manifest", str(error), transient=error.transient)
    elif isinstance(error, SourceUnavailableError):
        # Nothing was published: the index keeps the video's previous points (an outage never shrinks it).
        video.fail("embed", str(error), transient=True)
    elif isinstance(error, CheckpointRejected):
        video.fail("embed", f"video {video.video_id}: {error}")
    elif isinstance(error, (NoUsableFrameError, ManifestMissing)):
        video.fail("embed", str(error))
    else:  # the listing raised something unforeseen: the video's failure, not the run's
        video.fail(failed.stage, f"video {video.video_id}: {type(error).__name__}: {error}")


def _without_embedding(video: VideoRun, parts: PipelineParts, selected: AbstractSet[dg.AssetKey]) -> Iterator[Event]:
    """The stages of a run that does not embed: the manifest alone, the index sync alone, or both."""
    video_id = video.video_id
    if MANIFEST in selected:
        try:
            refs = _frames_of(video_id, parts, list_source=True)
        except FrameSourceError as exc:
            video.fail("manifest", str(exc), transient=exc.transient)
            return
        record_manifest(video, refs, parts)
        yield from video.take(parts)
    if INDEX in selected:
        checkpoints, key = parts.store.store(), published_key(video_id)
        if not checkpoints.exists(key):
            video.fail("index", f"video {video_id}: no checkpoint at {checkpoints.uri(key)}; materialize frame_embeddings first")
            return
        sync(video, checkpoints.read_table(key, columns=["frame_id"]).num_rows, parts)
    video.finished = video.failure is None
