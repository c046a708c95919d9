"""Videos in a local folder: one sub-folder per video_id (layout in the package docstring)."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import IO

from resources.frame_sources.base import (
    INGEST_DIR,
    FrameReadError,
    FrameRef,
    FrameSource,
    FrameSourceError,
    VideoListing,
    VideoNotFound,
    _redact,
    _scheme,
)
from resources.frame_sources.batches import is_batch_name, merge_batches, read_batches
from resources.frame_sources.frames import png_bytes, read_frame_image
from resources.frame_sources.manifests import (
    MANIFEST_JSONL,
    _digest,
    _frames_from_names,
    _manifest_frames,
    _manifest_name,
    _relative_path,
    _unique_ids,
)
from resources.frame_sources.reading import DEFAULT_MAX_BYTES, _check_limits, _file_error, _file_url_path, _HttpFetcher, _read_file, _transient_os_error
from resources.frame_sources.video import SamplingPolicy, is_video_file, parse_video_frame_url, sampling_from_env, scan_video
from resources.s3.urls import is_presigned, is_s3_host


class LocalFolderSource(FrameSource):
    """Videos in a local folder (see the package docstring for the layout).

    ``sampling`` picks the frames of video files (default: VIDEO_SAMPLING, see :mod:`.video`).
    """

    def __init__(
        self,
        root: Path,
        fps: float = 1.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        http_timeout_s: float = 30.0,
        sampling: SamplingPolicy | None = None,
    ) -> None:
        _check_limits(fps, max_bytes, http_timeout_s)
        self.root = Path(root)
        self.fps = fps
        self.max_bytes = max_bytes
        self.sampling = sampling if sampling is not None else sampling_from_env()
        self._http = _HttpFetcher(http_timeout_s, max_bytes)

    def describe(self) -> str:
        return f"local folder {self.root} ({self.fps:g} fps)"

    def video_ids(self) -> list[int]:
        return sorted(self._folders())

    def list_videos(self) -> list[VideoListing]:
        return [VideoListing(video_id, _local_signature(folder, self.sampling)) for video_id, folder in sorted(self._folders().items())]

    def listing(self, video_id: int) -> VideoListing | None:
        try:
            return VideoListing(video_id, _local_signature(self._folder(video_id), self.sampling))
        except VideoNotFound:
            return None

    def manifest(self, video_id: int) -> list[FrameRef]:
        folder = self._folder(video_id)
        try:
            entries = [(entry.name, entry.is_file()) for entry in os.scandir(folder)]
        except OSError as exc:
            raise FrameSourceError(f"cannot list video folder {folder}: {exc}", transient=_transient_os_error(exc)) from exc
        files = sorted(name for name, is_file in entries if is_file)
        manifest_name = _manifest_name(files, str(folder))
        base = folder.resolve()
        resolve = functools.partial(self._resolve, base)
        videos = [name for name in files if is_video_file(name)]
        if manifest_name is None and len(videos) > 1:
            raise FrameSourceError(f"{folder} holds {len(videos)} video files ({', '.join(videos[:3])}): keep one per video folder")
        if manifest_name is None and videos:
            frames = scan_video(self.open_file, (base / videos[0]).as_uri(), self.sampling)
        elif manifest_name is None:
            frames = _frames_from_names(((name, (base / name).as_uri()) for name in files), self.fps, str(folder))
        else:
            path = folder / manifest_name
            frames = _manifest_frames(manifest_name, self._read_listing_file(path), self.fps, resolve, str(path))
        if not any(name == INGEST_DIR and not is_file for name, is_file in entries):
            return frames
        batch_dir = folder / INGEST_DIR
        return merge_batches(frames, read_batches(lambda: self._batch_names_in(batch_dir), lambda name: self._read_batch_file(batch_dir / name, base), str(batch_dir)))

    def _batch_names(self, video_id: int) -> list[str]:
        return self._batch_names_in(self._folder(video_id) / INGEST_DIR)

    def _read_batch(self, video_id: int, name: str) -> list[FrameRef] | None:
        folder = self._folder(video_id)
        return self._read_batch_file(folder / INGEST_DIR / name, folder.resolve())

    def _delete_batches(self, video_id: int, names: list[str]) -> None:
        batch_dir = self._folder(video_id) / INGEST_DIR
        for name in names:
            try:
                (batch_dir / name).unlink(missing_ok=True)
            except OSError as exc:
                raise FrameSourceError(f"cannot delete {batch_dir / name}: {exc}", transient=_transient_os_error(exc)) from exc

    def _batch_names_in(self, batch_dir: Path) -> list[str]:
        try:
            return sorted(entry.name for entry in os.scandir(batch_dir) if entry.is_file() and is_batch_name(entry.name))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise FrameSourceError(f"cannot list {batch_dir}: {exc}", transient=_transient_os_error(exc)) from exc

    def _read_batch_file(self, path: Path, base: Path) -> list[FrameRef] | None:
        try:
            data = _read_file(path, self.max_bytes)
        except FrameReadError as exc:
            if exc.missing:
                return None  # compacted into a later batch since it was listed
            raise FrameSourceError(f"cannot read manifest {path}: {exc.reason}", transient=exc.transient) from exc
        return _manifest_frames(MANIFEST_JSONL, data, self.fps, functools.partial(self._resolve, base), str(path))

    def _read_listing_file(self, path: Path) -> bytes:
        """A manifest file or ingest batch of a video, read for :meth:`manifest`."""
        try:
            return _read_file(path, self.max_bytes)
        except FrameReadError as exc:
            raise FrameSourceError(f"cannot read manifest {path}: {exc.reason}", transient=exc.transient) from exc

    def read(self, url: str) -> bytes:
        if parse_video_frame_url(url) is not None:  # one frame of a video file, as PNG
            return png_bytes(read_frame_image(self, url))
        scheme = _scheme(url)
        if scheme == "file":
            try:
                path = _file_url_path(url)
            except ValueError as exc:
                raise FrameReadError(url, str(exc)) from None
            return _read_file(path, self.max_bytes, url)
        if scheme in ("http", "https") and is_presigned(url) and is_s3_host(url):
            return self._http.fetch(url)
        raise FrameReadError(url, "a local folder source reads file:// urls and pre-signed https urls of AWS S3 hosts")

    def open_file(self, url: str) -> IO[bytes]:
        try:
            path = _file_url_path(url) if _scheme(url) == "file" else None
        except ValueError as exc:
            raise FrameReadError(url, str(exc)) from None
        if path is None:
            raise FrameReadError(url, "a local folder source opens file:// urls")
        try:
            return path.open("rb")
        except OSError as exc:
            raise _file_error(url, path, exc, "open") from exc

    def _folders(self) -> dict[int, Path]:
        try:
            entries = [(entry.name, entry.is_dir()) for entry in os.scandir(self.root)]
        except OSError as exc:
            raise FrameSourceError(f"cannot list the video root {self.root}: {exc}", transient=_transient_os_error(exc)) from exc
        return _unique_ids((name for name, is_dir in entries if is_dir), self.root, lambda name: self.root / name)

    def _check_url(self, video_id: int, url: str) -> None:
        self._resolve(self.root / str(video_id), url)

    def _write_batch(self, video_id: int, name: str, data: bytes) -> None:
        try:
            folder = self._folder(video_id)
        except VideoNotFound:
            folder = self.root / str(video_id)
        batch_dir = folder / INGEST_DIR
        try:
            batch_dir.mkdir(parents=True, exist_ok=True)
            # Written under a dot-name that readers skip, then renamed (atomic): a reader sees the
            # whole batch or none of it. The name is unique, so no other writer is replaced.
            tmp = batch_dir / f".{name}.tmp"
            tmp.write_bytes(data)
            tmp.replace(batch_dir / name)
        except OSError as exc:
            raise FrameSourceError(f"cannot write {batch_dir / name}: {exc}", transient=_transient_os_error(exc)) from exc

    def _folder(self, video_id: int) -> Path:
        folder = self.root / str(video_id)
        if folder.is_dir():
            return folder
        # Zero-padded names ("0007") are video 7 too; only then is the whole root scanned.
        found = self._folders().get(video_id)
        if found is None:
            raise VideoNotFound(f"video {video_id} not found: no folder {folder}")
        return found

    def _resolve(self, base: Path, url: str) -> str:
        scheme = _scheme(url)
        if scheme is None:
            return (base / _relative_path(url)).as_uri()
        if scheme == "file":
            _file_url_path(url)
            return url
        if scheme == "s3":
            raise ValueError(f"url {url!r}: s3:// urls need an S3 frame source, this is a local folder")
        if scheme in ("http", "https") and is_presigned(url) and is_s3_host(url):
            return url
        raise ValueError(
            f"url {_redact(url)!r}: expected a path relative to the video folder, file://, or a pre-signed https url of an AWS S3 host"
        )


def _local_signature(folder: Path, sampling: SamplingPolicy) -> str:
    lines = []
    for directory, _, files in os.walk(folder):
        for name in files:
            path = Path(directory, name)
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # removed while listing: it is not part of the video any more
            lines.append(json.dumps([path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns]))
            if directory == str(folder) and is_video_file(name):
                lines.append(f"sampling {sampling.fingerprint()}")  # another policy lists other frames
    return _digest(lines)

