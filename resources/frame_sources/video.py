"""Video files as frames: which frames a sampling policy picks, the url that names one frame, and
decoding a run of picked frames in one streaming pass (seeking to the first, never the whole file).

A video folder holding one video file (:data:`VIDEO_SUFFIXES`, no manifest) has the frames that
:func:`scan_video` picks; each is named ``<video file url>#frame=<frame_id>&t=<seconds>`` where
frame_id is the frame's index in the stream (presentation order) and ``t`` its presentation time
relative to the stream's start, in milliseconds (``timestamp_ms``). Frames are found again by that
time: :func:`.video_decode.decode_frames` seeks to the keyframe before the first wanted frame and
decodes forward.

Scanning for the ``fps`` and ``keyframes`` policies only demultiplexes (reads packets' timestamps,
decodes nothing); ``scene`` decodes every frame once (compared at 32x32 RGB). A stream that ends before the
duration its container declares (a cut-off download) keeps its frames, and one placeholder frame
stands for the missing rest, so embedding reports it as skipped with the reason.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Any

import av
import numpy as np

from resources.frame_sources.base import FrameReadError, FrameRef, FrameSourceError, _scheme

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})

THUMB = 32  # side of the RGB thumbnails that scene detection and near-duplicate checks compare

_FRAGMENT = re.compile(r"#frame=([0-9]{1,19})&t=([0-9]{1,16})\.([0-9]{3})$")

Opener = Callable[[str], IO[bytes]]  # video file url -> a seekable binary file


def is_video_file(name: str) -> bool:
    """Whether a file name has a video suffix (and is not a hidden or macOS ``._`` file)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoFrameUrl:
    """A parsed video frame url: the video file's url, the frame's index and its time."""

    video_url: str
    frame_id: int
    timestamp_ms: int


def video_frame_url(video_url: str, frame_id: int, timestamp_ms: int) -> str:
    """``<video_url>#frame=<frame_id>&t=<seconds with 3 decimals>``."""
    return f"{video_url}#frame={frame_id}&t={timestamp_ms // 1000}.{timestamp_ms % 1000:03d}"


def parse_video_frame_url(url: str) -> VideoFrameUrl | None:
    """The parts of a video frame url; None for any other url (an image file's)."""
    match = _FRAGMENT.search(url)
    if match is None or _scheme(url) not in ("file", "s3"):
        return None
    video_url = url[: match.start()]
    if not is_video_file(video_url.rsplit("/", 1)[-1]):
        return None
    return VideoFrameUrl(video_url, int(match.group(1)), int(match.group(2)) * 1000 + int(match.group(3)))


def is_video_frame_url(url: str) -> bool:
    """Whether ``url`` names one frame of a video file."""
    return parse_video_frame_url(url) is not None


@dataclass(frozen=True)
class SamplingPolicy:
    """Which frames of a video file are indexed.

    ``fps``: the first frame at or after every 1/value seconds (value 1 = one frame a second;
    ``every:N`` is fps 1/N); ``scene``: the first frame, then every frame whose 32x32 RGB
    picture differs from the frame before it by more than ``value`` (mean absolute difference,
    0..1): cuts, not motion; ``keyframes``: the stream's keyframes (what the encoder chose).
    """

    kind: str = "fps"
    value: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("fps", "scene", "keyframes"):
            raise ValueError(f"sampling kind must be fps, scene or keyframes, got {self.kind!r}")
        if not (math.isfinite(self.value) and self.value > 0) or (self.kind == "scene" and self.value >= 1):
            raise ValueError(f"sampling {self.kind} needs a value {'in (0, 1)' if self.kind == 'scene' else '> 0'}, got {self.value!r}")

    @classmethod
    def parse(cls, text: str) -> SamplingPolicy:
        """``fps:<rate>``, ``every:<seconds>``, ``scene:<threshold>`` or ``keyframes``."""
        kind, _, value = text.strip().lower().partition(":")
        try:
            if kind == "keyframes" and not value:
                return cls("keyframes", 1.0)
            number = float(value)
            return cls("fps", 1.0 / number) if kind == "every" else cls(kind, number)
        except (ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"video sampling must be fps:<rate>, every:<seconds>, scene:<0..1> or keyframes, got {text!r} ({exc})") from None

    def fingerprint(self) -> str:
        return "keyframes" if self.kind == "keyframes" else f"{self.kind}:{self.value:g}"


def sampling_from_env(env: Mapping[str, str] | None = None) -> SamplingPolicy:
    """VIDEO_SAMPLING (default ``fps:1``)."""
    raw = (os.environ if env is None else env).get("VIDEO_SAMPLING", "").strip() or "fps:1"
    try:
        return SamplingPolicy.parse(raw)
    except ValueError as exc:
        raise FrameSourceError(f"VIDEO_SAMPLING: {exc}") from None


class _Clock:
    """Presentation times of one stream in whole milliseconds from its start, exactly (no floats)."""

    def __init__(self, stream: Any) -> None:
        self.time_base = Fraction(stream.time_base)
        self.start = stream.start_time or 0

    def exact_ms(self, pts: int) -> Fraction:
        return (pts - self.start) * self.time_base * 1000

    def ms(self, pts: int) -> int:
        return math.floor(self.exact_ms(pts) + Fraction(1, 2))

    def pts(self, ms: int) -> int:
        return self.start + math.floor(Fraction(ms, 1000) / self.time_base)


def _declared_end_ms(container: Any, stream: Any, clock: _Clock) -> int | None:
    if stream.duration:
        return clock.ms(clock.start + stream.duration)
    # The container's duration covers every stream: only the video's own when it is alone (an
    # audio track that runs on past the picture is no truncation).
    return round(container.duration / 1000) if container.duration and len(container.streams) == 1 else None


def _open(opener: Opener, video_url: str) -> tuple[IO[bytes], Any]:
    handle = opener(video_url)
    try:
        container = av.open(handle, mode="r")
    except av.error.FFmpegError as exc:
        handle.close()
        _raise_io_error(handle, video_url)
        raise FrameReadError(video_url, f"not a readable video: {exc}") from None
    if not container.streams.video:
        container.close()
        handle.close()
        raise FrameReadError(video_url, "the file holds no video stream")
    return handle, container


def _raise_io_error(handle: IO[bytes], url: str) -> None:
    """Re-raise a read failure of the file object that PyAV saw only as end of data."""
    error = getattr(getattr(handle, "raw", handle), "error", None)
    if error is not None:
        raise error


def _pick(times: Sequence[Fraction], keys: Sequence[bool], policy: SamplingPolicy) -> list[int]:
    """Indexes of the frames ``policy`` picks among frames at ``times`` (exact ms, ascending).

    Exact, not rounded: at fps:30 a 30 fps stream's frame 1 is at 33.33 ms, not before the step.
    """
    if policy.kind == "keyframes":
        return [i for i, key in enumerate(keys) if key]
    # The step in ms as a small fraction: "every:1.5" is fps 0.666..., whose float reciprocal is not 1500.
    picked, step, k = [], Fraction(1000 / policy.value).limit_denominator(1000), 0
    for i, ms in enumerate(times):
        if ms >= k * step:
            picked.append(i)
            k = math.floor(ms / step) + 1  # the next multiple of the step after this frame
    return picked


def scan_video(opener: Opener, video_url: str, policy: SamplingPolicy) -> list[FrameRef]:
    """The frames ``policy`` picks from the video at ``video_url``, sorted by frame_id.

    Raises :class:`FrameSourceError` when the file is no readable video (``transient`` when
    reading it failed in a way that may pass).
    """
    try:
        handle, container = _open(opener, video_url)
    except FrameReadError as exc:
        raise FrameSourceError(f"cannot open video {video_url}: {exc.reason}", transient=exc.transient) from exc
    problem = None
    with handle, container:
        stream = container.streams.video[0]
        clock = _Clock(stream)
        frames: list[tuple[int, bool]] = []  # (pts, keyframe) in presentation order once sorted
        scores: dict[int, float] = {}
        try:
            if policy.kind == "scene":
                stream.thread_type = "AUTO"
                previous = None
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    thumb = frame_thumbnail(frame).astype(np.int16)
                    scores[frame.pts] = 1.0 if previous is None else float(np.abs(thumb - previous).mean()) / 255
                    previous = thumb
                    frames.append((frame.pts, frame.key_frame))
            else:
                frames = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None and p.size]
        except av.error.FFmpegError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        _raise_io_error(handle, video_url)
        frames.sort()
        times = [clock.ms(pts) for pts, _ in frames]
        if policy.kind == "scene":
            picked = [i for i, (pts, _) in enumerate(frames) if scores[pts] > policy.value or i == 0]
        else:
            picked = _pick([clock.exact_ms(pts) for pts, _ in frames], [key for _, key in frames], policy)
        refs = [FrameRef(i, times[i], video_frame_url(video_url, i, times[i])) for i in picked]
        # A stream shorter than its container says (or one that broke off) keeps what it has; one
        # placeholder after its last frame stands for the rest, which embedding then reports.
        end = _declared_end_ms(container, stream, clock)
        step = round(1000 / float(stream.average_rate)) if stream.average_rate else 40
        last = times[-1] if times else -step
        if problem is not None or (end is not None and end - last > 2 * step):
            refs.append(FrameRef(len(times), last + step, video_frame_url(video_url, len(times), last + step)))
    return refs


def frame_thumbnail(frame: av.VideoFrame) -> np.ndarray:
    """The frame as a ``(THUMB, THUMB, 3)`` uint8 RGB picture, scaled by the decoder's own scaler.

    Colour, not grey: a cut from a red to a blue scene of equal brightness is a change.
    """
    return frame.reformat(width=THUMB, height=THUMB, format="rgb24", interpolation="AREA").to_ndarray()
