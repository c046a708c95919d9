"""Many videos through the encoder as one stream: reading runs ahead, batches span videos.

A run of many videos used to take them one after the other: list, fetch, decode, encode, write -
the encoder idle while frames were fetched and decoded, and each video's last batch short. Here a
reader thread lists each video, opens its :class:`~.video_job.VideoJob` (its plan, its chunks
already on disk) and fetches and decodes its frames, chunk by chunk, ahead of the encoder, which
takes whatever has been decoded - the end of one video and the start of the next - in groups of at
least ``batch_size`` frames (or ``pixel_budget / 2`` of pixels, for large frames), so its batches
stay full across video boundaries. The encoder's thread writes each chunk as soon as its frames are
encoded and publishes each video when its last chunk is written, in the videos' order.

What does not change: each video has its own chunks, plan, checks and checkpoint, so a crash loses
at most the chunks being encoded, a resumed run embeds exactly the unfinished chunks, and one
video's failure (nothing usable, a rejected checkpoint) is that video's alone (:class:`VideoFailed`);
the stream goes on with the next. A transient read failure (an outage) ends the reading: what was
read is finished and the stream stops - the caller fails the rest as not tried, to be retried.

Memory is bounded: the reader holds at most ``pixel_budget`` bytes of decoded frames that the
encoder has not finished (plus one frame), so it runs ahead by about a group, never a whole video.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from resources.checkpoints.byte_budget_queue import ByteBudgetQueue, Stopped
from resources.checkpoints.dedup import DedupConfig, dedup_config_from_env
from resources.checkpoints.store import CheckpointStore
from resources.checkpoints.video_job import (
    CheckpointRejected,
    ChunkTally,
    EmbedReport,
    NoUsableFrameError,
    SourceUnavailableError,
    VideoJob,
    decode_chunk,
)
from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig, PatchPlan, plan_patches
from resources.frame_sources import DecodedFrame, FrameReadError, FrameRef, FrameSource, FrameSourceError

DEFAULT_PIXEL_BUDGET = 512 * 2**20  # bytes of decoded frames read ahead of the encoder (~85 1080p frames)

Validator = Callable[[pa.Table], None]


@dataclass(frozen=True)
class VideoInput:
    """One video for the stream: how to list its frames (called on the reader thread; whatever it
    raises fails the video at ``manifest``) and, given the frames, the check its finished checkpoint
    must pass before it is published (or None)."""

    video_id: int
    list_frames: Callable[[], Sequence[FrameRef]]
    validator: Callable[[Sequence[FrameRef]], Validator | None] | None = None


@dataclass(frozen=True)
class VideoListed:
    """The video's frames were listed (the first outcome of a video that was)."""

    video_id: int
    frames: Sequence[FrameRef]


@dataclass(frozen=True)
class VideoEmbedded:
    """The video's checkpoint is published (or was already, ``report.up_to_date``)."""

    video_id: int
    report: EmbedReport


@dataclass(frozen=True)
class VideoFailed:
    """The video did not finish: at ``manifest`` (its listing raised ``error``) or ``embed``
    (:class:`NoUsableFrameError`, :class:`SourceUnavailableError`, or :class:`CheckpointRejected`
    raised by its validator)."""

    video_id: int
    stage: str
    error: Exception

    @property
    def transient(self) -> bool:
        """The failure may pass (a source outage): the stream stopped reading after it."""
        return isinstance(self.error, SourceUnavailableError) or (isinstance(self.error, FrameSourceError) and self.error.transient)


Outcome = VideoListed | VideoEmbedded | VideoFailed


# -- what the reader hands the encoder, in order ------------------------------------------------


@dataclass
class _Frame:
    job: VideoJob
    chunk: int
    frame: DecodedFrame
    plan: PatchPlan

    @property
    def nbytes(self) -> int:
        return int(self.frame.pixels.numel())


@dataclass
class _ChunkEnd:
    job: VideoJob
    chunk: int
    tally: ChunkTally
    stored: pa.Table | None = None  # found on disk from an interrupted run: nothing to encode


@dataclass
class _VideoEnd:
    job: VideoJob
    validate: Validator | None


@dataclass
class _Outcome:
    outcome: VideoListed | VideoFailed
    job: VideoJob | None = None


@dataclass
class _Crash:
    """The reader met an error that is not a video's (a bug, the store failing): re-raised on the
    encoder's thread once what was read before it is finished."""

    error: BaseException


_Item = _Frame | _ChunkEnd | _VideoEnd | _Outcome | _Crash
_DONE = object()


@dataclass
class _Group:
    items: list[_Item] = field(default_factory=list)
    frames: list[_Frame] = field(default_factory=list)
    nbytes: int = 0
    crash: BaseException | None = None  # the reader's error, raised once the group is finished


class EmbeddingStream:
    """Embeds videos into their published checkpoints, reading ahead of the encoder (see module)."""

    def __init__(
        self,
        source: FrameSource,
        encoder: FrameEncoder,
        store: CheckpointStore,
        patch_config: PatchConfig,
        max_pixels: int,
        chunk_frames: int,
        dedup: DedupConfig | None = None,
        pixel_budget: int = DEFAULT_PIXEL_BUDGET,
        on_chunk: Callable[[int, int, int], None] | None = None,
    ) -> None:
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.source, self.encoder, self.store = source, encoder, store
        self.patch_config, self.max_pixels, self.chunk_frames = patch_config, max_pixels, chunk_frames
        self.dedup = dedup if dedup is not None else dedup_config_from_env()
        self.pixel_budget = pixel_budget
        self.on_chunk = on_chunk  # (video_id, chunks done, chunks total), for progress logs
        self.group_frames = encoder.config.batch_size

    def run(self, videos: Iterable[VideoInput]) -> Iterator[Outcome]:
        """Each video's outcomes in the videos' order: :class:`VideoListed`, then
        :class:`VideoEmbedded` or :class:`VideoFailed` (or only a failure at ``manifest``). After a
        transient failure the stream ends: the videos after it get no outcome."""
        pipe = ByteBudgetQueue(self.pixel_budget)
        reader = threading.Thread(target=self._read, args=(list(videos), pipe), name="frame-reader", daemon=True)
        reader.start()
        try:
            ended = False
            while not ended:
                group, ended = self._gather(pipe)
                self._encode(group)
                pipe.release(group.nbytes)
                yield from self._finish(group)
                if group.crash is not None:
                    raise group.crash  # after finishing what was read: its chunks are kept for a re-run
        finally:
            pipe.stop()  # a caller that stops early (an exception, a closed generator) stops the reader
            reader.join()

    # -- the reader thread --------------------------------------------------------------------

    def _read(self, videos: list[VideoInput], pipe: ByteBudgetQueue) -> None:
        try:
            for video in videos:
                if not self._read_video(video, pipe):
                    break
            pipe.put(_DONE)
        except Stopped:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the encoder's thread, which re-raises it
            try:
                pipe.put(_Crash(exc))
            except Stopped:
                return

    def _read_video(self, video: VideoInput, pipe: ByteBudgetQueue) -> bool:
        """Read one video into the pipe; False after a transient failure (stop reading)."""
        try:
            frames = list(video.list_frames())
        except Exception as exc:  # noqa: BLE001 - the video's own failure, judged by the caller
            failed = VideoFailed(video.video_id, "manifest", exc)
            pipe.put(_Outcome(failed))
            return not failed.transient
        info = self.encoder.info
        job = VideoJob(video.video_id, frames, self.store, info, self.patch_config, self.chunk_frames, self.dedup)
        pipe.put(_Outcome(VideoListed(video.video_id, frames), job))
        validate = video.validator(frames) if video.validator else None
        if not job.open():
            pipe.put(_VideoEnd(job, validate))  # up to date: published with this plan already
            return True
        for number, refs in enumerate(job.chunks):
            stored = job.stored_chunk(number)
            if stored is not None:
                pipe.put(_ChunkEnd(job, number, ChunkTally(), stored))
                continue
            tally = ChunkTally()
            try:
                for frame in decode_chunk(refs, self.source, self.max_pixels, self.dedup, job.end_ms(number), job.report.seconds, tally):
                    started = time.perf_counter()
                    plan = plan_patches(frame.pixels.shape[2], frame.pixels.shape[1], self.patch_config)
                    job.report.seconds["patch_plan"] += time.perf_counter() - started
                    item = _Frame(job, number, frame, plan)
                    pipe.put(item, item.nbytes)
            except FrameReadError as exc:  # only transient ones leave decode_chunk
                error = SourceUnavailableError(
                    f"video {job.video_id}: stopped at chunk {number + 1}/{len(job.chunks)}, the frame source failed "
                    f"in a way that may pass ({exc}); finished chunks are kept, re-run to resume"
                )
                error.__cause__ = exc
                pipe.put(_Outcome(VideoFailed(job.video_id, "embed", error), job))
                return False
            pipe.put(_ChunkEnd(job, number, tally))
        pipe.put(_VideoEnd(job, validate))
        return True

    # -- the encoder's thread -----------------------------------------------------------------

    def _gather(self, pipe: ByteBudgetQueue) -> tuple[_Group, bool]:
        """The next group: items up to ``group_frames`` frames or half the pixel budget, waiting
        for the reader as long as the group is short (a short batch is what this avoids); True when
        the reader is done."""
        group = _Group()
        while len(group.frames) < self.group_frames and group.nbytes < self.pixel_budget // 2:
            item = pipe.get()
            if item is _DONE:
                return group, True
            if isinstance(item, _Crash):
                group.crash = item.error
                return group, True
            assert isinstance(item, _Frame | _ChunkEnd | _VideoEnd | _Outcome)
            group.items.append(item)
            if isinstance(item, _Frame):
                group.frames.append(item)
                group.nbytes += item.nbytes
        return group, False

    def _encode(self, group: _Group) -> None:
        if not group.frames:
            return
        started, images_before = time.perf_counter(), self.encoder.timings.images
        embeddings = self.encoder.encode_frames([f.frame.pixels for f in group.frames], self.patch_config, [f.plan for f in group.frames])
        seconds, images = time.perf_counter() - started, self.encoder.timings.images - images_before
        # The group's model time and inputs, shared among its videos by their frames' inputs: a
        # global view and a crop per window (exact for crops; dense windows share passes).
        weights = [1 + len(f.plan) for f in group.frames]
        total = sum(weights)
        for item, embedding, weight in zip(group.frames, embeddings, weights, strict=True):
            item.job.report.seconds["embed"] += seconds * weight / total
            item.job.report.images_encoded += weight if images == total else round(images * weight / total)
            item.job.add_encoded(item.chunk, item.frame, embedding)

    def _finish(self, group: _Group) -> Iterator[Outcome]:
        """Write the group's finished chunks and publish its finished videos, in order."""
        for item in group.items:
            if isinstance(item, _Outcome):
                yield item.outcome
            elif isinstance(item, _ChunkEnd):
                job = item.job
                if item.stored is not None:
                    job.add_chunk(item.stored, resumed=True)
                else:
                    job.write_chunk(item.chunk, item.tally)
                if self.on_chunk:
                    self.on_chunk(job.video_id, item.chunk + 1, len(job.chunks))
            elif isinstance(item, _VideoEnd):
                yield self._publish(item.job, item.validate)

    @staticmethod
    def _publish(job: VideoJob, validate: Validator | None) -> VideoEmbedded | VideoFailed:
        if job.report.up_to_date:
            return VideoEmbedded(job.video_id, job.report)
        try:
            return VideoEmbedded(job.video_id, job.publish(validate))
        except (NoUsableFrameError, CheckpointRejected) as exc:
            return VideoFailed(job.video_id, "embed", exc)
