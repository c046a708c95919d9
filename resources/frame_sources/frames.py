"""Decoded frames from any source: the one image of a stored frame url (:func:`read_frame_image`),
and the pixels of a chunk of frames for embedding (:func:`iter_frames`), whether the frames are
image files or frames of a video file (decoded in one pass per video, see :mod:`.video_decode`)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from resources.frame_sources.base import FrameReadError, FrameRef, FrameSource
from resources.frame_sources.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image, image_to_tensor
from resources.frame_sources.video import THUMB, frame_thumbnail, parse_video_frame_url
from resources.frame_sources.video_decode import decode_frames


@dataclass
class DecodedFrame:
    """One frame ready for the encoder."""

    ref: FrameRef
    pixels: torch.Tensor  # (3, H, W) uint8
    thumb: np.ndarray | None  # (THUMB, THUMB, 3) uint8 RGB, for near-duplicate checks; None when not asked for


def read_frame_image(source: FrameSource, url: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The RGB image of one stored frame url: an image file, or a video file's frame (seeks to
    the keyframe before it and decodes forward; never the whole file).

    Raises :class:`FrameReadError` when it cannot be read or a video frame cannot be decoded,
    :class:`~resources.frame_sources.images.ImageDecodeError` when an image file's bytes are not an image.
    """
    video = parse_video_frame_url(url)
    if video is None:
        return decode_image(source.read(url), max_pixels=max_pixels)
    ref = FrameRef(video.frame_id, video.timestamp_ms, url)
    for _, frame in decode_frames(source.open_file, video.video_url, [ref]):
        if isinstance(frame, str):
            raise FrameReadError(url, frame)
        if frame.width * frame.height > max_pixels:
            raise FrameReadError(url, f"frame is {frame.width}x{frame.height}, over the limit of {max_pixels:,} pixels")
        return frame.to_image()
    raise AssertionError("decode_frames answers every ref")  # pragma: no cover


def png_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as PNG (lossless): what ``FrameSource.read`` returns for a video frame."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def iter_frames(
    source: FrameSource,
    refs: Sequence[FrameRef],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    thumbs: bool = False,
    seconds: MutableMapping[str, float] | None = None,
    stats: MutableMapping[str, int] | None = None,
) -> Iterator[DecodedFrame | tuple[FrameRef, str]]:
    """Each of ``refs`` in order, decoded, or ``(ref, reason)`` when it is permanently unusable.

    A transient :class:`FrameReadError` is raised, never turned into a reason: it says nothing
    about the frame. Consecutive frames of one video file are decoded in one streaming pass.
    ``seconds["fetch"]``/``["decode"]`` accumulate the time spent (a video's reading counts as decode);
    ``stats`` counts the video frames the decoder produced (``decoded``) and its ``restarts``.
    """
    seconds = seconds if seconds is not None else {}
    index = 0
    while index < len(refs):
        video = parse_video_frame_url(refs[index].url)
        if video is None:
            yield _image_frame(source, refs[index], max_pixels, thumbs, seconds)
            index += 1
            continue
        end = index + 1
        while end < len(refs) and (other := parse_video_frame_url(refs[end].url)) is not None and other.video_url == video.video_url:
            end += 1
        yield from _video_frames(source, video.video_url, refs[index:end], max_pixels, thumbs, seconds, stats)
        index = end


def _image_frame(source: FrameSource, ref: FrameRef, max_pixels: int, thumbs: bool, seconds: MutableMapping[str, float]) -> DecodedFrame | tuple[FrameRef, str]:
    started = time.perf_counter()
    try:
        data = source.read(ref.url)
    except FrameReadError as exc:
        if exc.transient:
            raise
        return ref, f"{'missing' if exc.missing else 'unreadable'}: {exc.reason}"
    finally:
        seconds["fetch"] = seconds.get("fetch", 0.0) + time.perf_counter() - started
    started = time.perf_counter()
    try:
        image = decode_image(data, max_pixels=max_pixels)
        thumb = np.asarray(image.resize((THUMB, THUMB), Image.Resampling.BOX)) if thumbs else None
        return DecodedFrame(ref, image_to_tensor(image), thumb)
    except ImageDecodeError as exc:
        return ref, exc.reason
    finally:
        seconds["decode"] = seconds.get("decode", 0.0) + time.perf_counter() - started


def _video_frames(
    source: FrameSource,
    video_url: str,
    refs: Sequence[FrameRef],
    max_pixels: int,
    thumbs: bool,
    seconds: MutableMapping[str, float],
    stats: MutableMapping[str, int] | None,
) -> Iterator[DecodedFrame | tuple[FrameRef, str]]:
    order = {ref.frame_id: n for n, ref in enumerate(refs)}
    results: list[DecodedFrame | tuple[FrameRef, str] | None] = [None] * len(refs)
    started = time.perf_counter()
    try:
        for ref, frame in decode_frames(source.open_file, video_url, refs, stats):
            if isinstance(frame, str):
                results[order[ref.frame_id]] = (ref, frame)
            elif frame.width * frame.height > max_pixels:
                results[order[ref.frame_id]] = (ref, f"frame is {frame.width}x{frame.height}, over the limit of {max_pixels:,} pixels (MAX_IMAGE_PIXELS)")
            else:
                # (3, H, W) as a view of the (H, W, 3) array: the channels-last layout the encoder's
                # crops and resizes want anyway; a contiguous copy costs ~19 ms per 1080p frame.
                pixels = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
                results[order[ref.frame_id]] = DecodedFrame(ref, pixels, frame_thumbnail(frame) if thumbs else None)
    except FrameReadError as exc:
        if exc.transient:
            raise
        reason = f"{'missing' if exc.missing else 'unreadable'}: {exc.reason}"
        results = [r if r is not None else (ref, reason) for ref, r in zip(refs, results)]
    finally:
        seconds["decode"] = seconds.get("decode", 0.0) + time.perf_counter() - started
    yield from (r for r in results if r is not None)
