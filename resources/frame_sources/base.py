"""The interface every frame source implements, and the values and errors it speaks in."""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

from resources.frame_sources.batches import BATCH_SETTLE_S, batch_bytes, merge_batches, new_batch_name, read_batches, settled_batches

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

# Ingest batches of a video live in this sub-folder (sub-prefix) of the video's folder.
INGEST_DIR = "ingest"


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
    """The root, a listing or a manifest cannot be used; the message says which and why.

    ``transient`` is True when the cause may go away by itself (the endpoint unreachable, a
    timeout, a 5xx or throttling answer, a local I/O error): retry later rather than give up.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class VideoNotFound(FrameSourceError):
    """No folder (prefix) for this video_id under the source's root."""


class FrameReadError(RuntimeError):
    """One frame's bytes could not be read.

    ``missing`` is True when the object or file does not exist. ``transient`` is True when the
    failure says nothing about the frame itself (connection refused, timeout, 5xx, throttling,
    local I/O error): such a frame must be retried later, never recorded as skipped. Everything
    else (missing, refused URL, over the byte limit, access denied to a pre-signed URL) is
    permanent for this URL.
    """

    def __init__(self, url: str, reason: str, *, missing: bool = False, transient: bool = False) -> None:
        super().__init__(f"cannot read frame {_redact(url)}: {reason}")
        self.url = url
        self.reason = reason
        self.missing = missing
        self.transient = transient


# Frame and video ids become Qdrant point ids and pyarrow int64 columns: both are signed 64-bit.
MAX_ID = 2**63 - 1


def check_id(value: object, what: str, where: str = "") -> int:
    """``value`` if it is an int in [0, MAX_ID]; :class:`FrameSourceError` naming it otherwise."""
    prefix = f"{where}: " if where else ""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise FrameSourceError(f"{prefix}{what} must be an integer from 0 to 2**63-1, got {value!r}")
    return value


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

    def open_file(self, url: str) -> IO[bytes]:
        """A seekable binary file of a video file url (no fragment), read without loading it whole;
        :class:`FrameReadError` when it cannot be opened. Sources that hold video files implement it."""
        raise FrameReadError(url, f"{type(self).__name__} does not read video files")

    def listing(self, video_id: int) -> VideoListing | None:
        """One video's listing, as :meth:`list_videos` has it (the same signature); None when the
        video holds no file. Sources override it to list that video alone."""
        return next((listing for listing in self.list_videos() if listing.video_id == video_id), None)

    def video_ids(self) -> list[int]:
        """The video_ids under the root, sorted; cheaper than :meth:`list_videos` where it can be."""
        return [listing.video_id for listing in self.list_videos()]

    def record_frames(self, video_id: int, frames: Iterable[FrameRef]) -> list[FrameRef]:
        """Add or replace ``frames`` in the video's manifest and return the whole new manifest.

        Each call writes one new, immutable *ingest batch* (``<video>/ingest/<time-sortable
        name>.jsonl``, absolute URLs) and never rewrites a shared file, so concurrent writers to
        one video cannot lose each other's frames; :meth:`manifest` applies the batches in name
        order over the video's files or manifest file (a later batch wins per frame_id). Every
        batch is a new file, so the video's signature changes and the sensor sees it.
        """
        check_id(video_id, "video_id")
        frames = list(frames)
        for ref in frames:  # refuse what a reader of the manifest would refuse, before writing
            where = f"video {video_id}, frame {ref.frame_id}"
            check_id(ref.frame_id, "frame_id", f"video {video_id}")
            if ref.timestamp_ms is not None:
                check_id(ref.timestamp_ms, "timestamp_ms", where)
            try:
                self._check_url(video_id, ref.url)
            except ValueError as exc:
                raise FrameSourceError(f"{where}: {exc}") from None
        if frames:
            self._write_batch(video_id, new_batch_name(), batch_bytes(frames))
        return self.manifest(video_id)

    def compact_batches(self, video_id: int, *, settle_s: float = BATCH_SETTLE_S) -> int:
        """Merge the video's ingest batches older than ``settle_s`` into one; the number of batch
        files removed (0 when fewer than two had settled).

        Every :meth:`manifest` reads every batch, so many small ingests into one video would make
        each read cost more than the last; the pipeline - the one writer that removes batches -
        compacts them when it lists the video. The merged frames are written over the newest
        settled batch (same name, so the same place in the order; an atomic replace), then the
        older ones are deleted: a reader at any moment sees the same frames, and a crash in
        between leaves batches whose merge is unchanged. Batches newer than ``settle_s`` are left
        alone, so a writer that named its batch before the compaction started but stored it after
        is never ordered behind frames it was meant to replace.
        """
        settled = settled_batches(self._batch_names(video_id), time.time_ns() - int(settle_s * 1e9))
        if len(settled) < 2:
            return 0
        merged = merge_batches([], read_batches(lambda: settled, lambda name: self._read_batch(video_id, name), f"video {video_id}"))
        self._write_batch(video_id, settled[-1], batch_bytes(merged))
        self._delete_batches(video_id, settled[:-1])
        return len(settled) - 1

    def _write_batch(self, video_id: int, name: str, data: bytes) -> None:
        """Store one ingest batch ``name`` of the video, creating the video if needed (or replacing
        the batch of that name, atomically)."""
        raise NotImplementedError(f"{type(self).__name__} cannot record frames")

    def _batch_names(self, video_id: int) -> list[str]:
        """The names of the video's ingest batches, sorted; [] for a source without batches."""
        return []

    def _read_batch(self, video_id: int, name: str) -> list[FrameRef] | None:
        """One ingest batch's frames; None when it is gone (compacted into a later one meanwhile)."""
        raise NotImplementedError(f"{type(self).__name__} has no ingest batches")

    def _delete_batches(self, video_id: int, names: list[str]) -> None:
        """Remove these ingest batches of the video (gone ones are no error)."""
        raise NotImplementedError(f"{type(self).__name__} has no ingest batches")

    def _check_url(self, video_id: int, url: str) -> None:
        """Raise ValueError if a manifest row of this video could not hold ``url``."""
        raise NotImplementedError(f"{type(self).__name__} cannot record frames")


def _scheme(url: str) -> str | None:
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None


def _redact(url: str) -> str:
    # A pre-signed URL's query is a credential: messages and logs get the location only.
    return url.split("?", 1)[0] + "?<query redacted>" if "?" in url and _scheme(url) in ("http", "https") else url
