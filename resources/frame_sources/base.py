"""The interface every frame source implements, and the values and errors it speaks in."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class FrameRef:
    """One frame of a video: ``url`` is ``file:///abs/path``, ``s3://bucket/key`` or an http(s) S3 URL."""

    frame_id: int
    timestamp_ms: int | None
    url: str


@dataclass(frozen=True, order=True)
class VideoListing:
    """A video and a digest of its files, which changes whenever a frame file or the manifest does."""

    video_id: int
    signature: str


class FrameSourceError(RuntimeError):
    """The root, a listing or a manifest cannot be used; the message says which and why."""


class VideoNotFound(FrameSourceError):
    """No folder (prefix) for this video_id under the source's root."""


class FrameReadError(RuntimeError):
    """One frame's bytes could not be read. ``missing`` is True when the object or file does not exist."""

    def __init__(self, url: str, reason: str, *, missing: bool = False) -> None:
        super().__init__(f"cannot read frame {_redact(url)}: {reason}")
        self.url = url
        self.reason = reason
        self.missing = missing



class FrameSource(ABC):
    """Where frames come from. Implementations are safe to call from several threads."""

    @abstractmethod
    def list_videos(self) -> list[VideoListing]:
        """Every video under the root with its signature, sorted by video_id."""

    @abstractmethod
    def manifest(self, video_id: int) -> list[FrameRef]:
        """The frames of one video sorted by frame_id; :class:`VideoNotFound` when it does not exist."""

    @abstractmethod
    def read(self, url: str) -> bytes:
        """The bytes of one frame URL from :meth:`manifest`; :class:`FrameReadError` when it cannot."""

    @abstractmethod
    def describe(self) -> str:
        """A one-line description for logs and run metadata (no credentials)."""

    def video_ids(self) -> list[int]:
        """The video_ids under the root, sorted; cheaper than :meth:`list_videos` where it can be."""
        return [listing.video_id for listing in self.list_videos()]

    def record_frames(self, video_id: int, frames: Iterable[FrameRef]) -> list[FrameRef]:
        """Add or replace ``frames`` in the video's manifest and return the whole new manifest.

        The video's current frames (listed files or an existing manifest) are carried over, so
        nothing it had is lost; the result is written as ``manifest.jsonl`` with absolute URLs,
        replacing a ``manifest.csv``. Concurrent writers to one video: the last one wins.
        """
        frames = list(frames)
        for ref in frames:  # refuse what a reader of the manifest would refuse, before writing
            try:
                self._check_url(video_id, ref.url)
            except ValueError as exc:
                raise FrameSourceError(f"video {video_id}, frame {ref.frame_id}: {exc}") from None
        try:
            current = {ref.frame_id: ref for ref in self.manifest(video_id)}
        except VideoNotFound:
            current = {}
        current.update({ref.frame_id: ref for ref in frames})
        merged = [current[k] for k in sorted(current)]
        lines = [json.dumps({"frame_id": r.frame_id, "timestamp_ms": r.timestamp_ms, "url": r.url}) for r in merged]
        self._write_manifest(video_id, ("\n".join(lines) + "\n").encode())
        return merged

    def _write_manifest(self, video_id: int, data: bytes) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot record frames")

    def _check_url(self, video_id: int, url: str) -> None:
        """Raise ValueError if a manifest row of this video could not hold ``url``."""
        raise NotImplementedError(f"{type(self).__name__} cannot record frames")



def _scheme(url: str) -> str | None:
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None



def _redact(url: str) -> str:
    # A pre-signed URL's query is a credential: messages and logs get the location only.
    return url.split("?", 1)[0] + "?<query redacted>" if "?" in url and _scheme(url) in ("http", "https") else url
