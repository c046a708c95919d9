"""Decoding picked frames of a video file: one seek and a forward pass per run of nearby frames,
skipping what no wanted frame needs, and losing only what a damaged stretch takes with it."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, MutableMapping, Sequence
from typing import IO, Any

import av

from resources.frame_sources.base import FrameRef
from resources.frame_sources.video import Opener, _Clock, _declared_end_ms, _open, _raise_io_error

# Targets further apart than this are reached by a new seek rather than by decoding through the gap.
SEEK_GAP_MS = 20_000
# Non-reference frames are skipped while the next wanted frame is further away than this many
# frames: twice what the decoder's frame threads (one per core, at most 16) and B-frame reordering
# can hold in flight, so that a wanted frame is rarely submitted while skipping is still on.
SKIP_MARGIN_FRAMES = 2 * (min(os.cpu_count() or 1, 16) + 1) + 8

DecodedFrames = Iterator[tuple[FrameRef, "av.VideoFrame | str"]]


def decode_frames(opener: Opener, video_url: str, refs: Sequence[FrameRef], stats: MutableMapping[str, int] | None = None) -> DecodedFrames:
    """``(ref, frame)`` for each of ``refs`` (frames of one video file, by timestamp), or
    ``(ref, reason)`` when that frame cannot be decoded; one pass per run of nearby frames.

    Raises :class:`FrameReadError` when the file cannot be opened or read (``transient`` as for
    any frame read). ``stats`` counts ``decoded`` frames and ``restarts`` (see :func:`_decode_run`).
    """
    stats = stats if stats is not None else {}
    wanted = sorted(refs, key=lambda r: (r.timestamp_ms or 0, r.frame_id))
    handle, container = _open(opener, video_url)
    with handle, container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads: decoding is the cost of a video
        clock = _Clock(stream)
        runs: list[deque[FrameRef]] = []
        for ref in wanted:
            if runs and (ref.timestamp_ms or 0) - (runs[-1][-1].timestamp_ms or 0) <= SEEK_GAP_MS:
                runs[-1].append(ref)
            else:
                runs.append(deque([ref]))
        for run in runs:
            yield from _decode_run(container, stream, clock, run, handle, video_url, stats)


def _decode_run(
    container: Any, stream: Any, clock: _Clock, pending: deque[FrameRef], handle: IO[bytes], url: str, stats: MutableMapping[str, int]
) -> DecodedFrames:
    """Answer every ref of ``pending`` (nearby frames, by time) from one seek and forward decode.

    Far from the next wanted frame the decoder skips non-reference frames (nothing is predicted
    from them, so the frames it does decode are bit for bit the same; ~3x faster through an h264
    stretch with B-frames). Frames still in flight in its threads when skipping stops may have
    been skipped: a wanted frame missed after skipping is decoded again from its keyframe without
    skipping. A damaged stretch (the decoder fails) costs only the frames that depend on it: the
    decode restarts from the keyframe before the next wanted frame, and a frame whose own restart
    fails again is reported as undecodable.
    """
    codec = stream.codec_context
    margin_ms = round(SKIP_MARGIN_FRAMES * 1000 / float(stream.average_rate or 30))
    restarted_for: FrameRef | None = None  # restarted once after a decoder error at this frame
    careful: FrameRef | None = None  # no skipping until this frame (missed while skipping) is answered
    while pending:
        # Backward to the keyframe at or before the wanted frame (1 ms early: times are rounded).
        container.seek(clock.pts(max((pending[0].timestamp_ms or 0) - 1, 0)), stream=stream, backward=True, any_frame=False)
        codec.skip_frame, skipping, skipped = "DEFAULT", False, False
        last_ms: int | None = None
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                last_ms = clock.ms(frame.pts)
                stats["decoded"] = stats.get("decoded", 0) + 1
                if skipped and (pending[0].timestamp_ms or 0) < last_ms:
                    careful = pending[0]
                    stats["restarts"] = stats.get("restarts", 0) + 1
                    break
                while pending and (pending[0].timestamp_ms or 0) < last_ms:
                    ref = pending.popleft()
                    yield ref, f"no frame at {ref.timestamp_ms} ms in the stream (the next one is at {last_ms} ms)"
                if pending and pending[0].timestamp_ms == last_ms:
                    yield pending.popleft(), frame
                    skipped = False
                if not pending:
                    return
                if careful is not None and careful not in pending:
                    careful = None
                want = careful is None and (pending[0].timestamp_ms or 0) - last_ms > margin_ms
                if want != skipping:
                    codec.skip_frame, skipping = ("NONREF" if want else "DEFAULT"), want
                skipped = skipped or skipping
            else:
                _raise_io_error(handle, url)
                end = _declared_end_ms(container, stream, clock)
                where = f"it ends at {last_ms} ms" if last_ms is not None else "no frame decoded"
                declared = f" of the {end} ms the container declares: truncated or corrupt" if end is not None and (last_ms or 0) < end - 1 else ""
                while pending:
                    yield pending.popleft(), f"beyond the end of the decodable stream: {where}{declared}"
        except av.error.FFmpegError as exc:
            _raise_io_error(handle, url)
            if restarted_for is not pending[0]:
                restarted_for = pending[0]  # once more, from the keyframe before this very frame
                continue
            ref = pending.popleft()
            yield ref, f"the stream cannot be decoded here ({type(exc).__name__}: {exc}; last good frame at {last_ms} ms)"
