"""Frame sources: which videos exist, which frames each holds, and the bytes of one frame, from a
local folder or an S3 prefix behind one small interface (:class:`FrameSource`).

Both sources read the same layout. The root holds one folder (S3: prefix) per video, named by its
integer video_id; other names are ignored:

    root/                                  (a folder, or s3://bucket/prefix/)
      1/                                   video 1: its image files are its frames
        frame_000000.jpg                   frame 0, timestamp round(0 * 1000 / fps) ms
        frame_000060.jpg                   frame 60 (the last run of digits in the name)
        cover.png                          no digits: skipped
        notes.txt                          not an image: skipped
      2/                                   video 2: a manifest lists the frames and wins over the files
        manifest.csv                       frame_id,timestamp_ms,url
        f_1.jpg                              1,0,f_1.jpg                  relative to the video folder
                                             2,,s3://other-bucket/x.jpg   empty timestamp: from fps
                                             3,80,https://b.s3.amazonaws.com/y.jpg?X-Amz-Signature=...
      3/
        manifest.jsonl                     {"frame_id": 1, "timestamp_ms": 0, "url": "f_1.jpg"} per line
      archive/                             not an integer: ignored

Frame images have one of :data:`IMAGE_SUFFIXES` (any case); names starting with "." (editor and
macOS ``._*`` files) are skipped. Manifest urls may be relative to the video folder, ``s3://``
(S3 source only), ``file://`` (local source only), or http(s) URLs of an S3 host: pre-signed ones
are fetched exactly as given, with httpx, a timeout and the byte limit; unsigned ones are read
through the S3 client. http(s) URLs of any other host are refused, so a manifest cannot make a
worker fetch internal addresses (cloud metadata, admin ports).

A video's signature (:class:`VideoListing`) is a digest of every file under its folder (name, size
and mtime locally; key, size and ETag on S3), so it changes when a frame or the manifest changes
and is stable otherwise. The S3 source computes all signatures from one paginated listing of the
root, never one request per video, so 100,000 videos cost about (objects / 1,000) requests.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from resources.s3_urls import S3Location, S3UrlError, is_presigned, is_s3_host, parse_s3_url

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def frame_id_from_name(name: str) -> int:
    """The frame number in a file name: the last run of digits (``frame_000120.jpg`` -> 120)."""
    digits = re.findall(r"\d+", Path(name).stem)
    if not digits:
        raise ValueError(f"no frame number in file name {name!r}")
    return int(digits[-1])


# A 4K PNG frame is ~25 MB; 64 MiB leaves room for 8K JPEGs and refuses multi-GB mistakes.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

MANIFEST_CSV = "manifest.csv"
MANIFEST_JSONL = "manifest.jsonl"

# S3 error codes that mean "this object does not exist" (get_object says NoSuchKey, HEAD says 404).
# NoSuchBucket is not among them: a wrong bucket is a configuration error, not a deleted frame.
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_CHUNK = 1 << 20


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


class LocalFolderSource(FrameSource):
    """Videos in a local folder (see the module docstring for the layout)."""

    def __init__(
        self,
        root: Path,
        fps: float = 1.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        http_timeout_s: float = 30.0,
    ) -> None:
        _check_limits(fps, max_bytes, http_timeout_s)
        self.root = Path(root)
        self.fps = fps
        self.max_bytes = max_bytes
        self._http = _HttpFetcher(http_timeout_s, max_bytes)

    def describe(self) -> str:
        return f"local folder {self.root} ({self.fps:g} fps)"

    def video_ids(self) -> list[int]:
        return sorted(self._folders())

    def list_videos(self) -> list[VideoListing]:
        return [VideoListing(video_id, _local_signature(folder)) for video_id, folder in sorted(self._folders().items())]

    def manifest(self, video_id: int) -> list[FrameRef]:
        folder = self._folder(video_id)
        try:
            files = sorted(entry.name for entry in os.scandir(folder) if entry.is_file())
        except OSError as exc:
            raise FrameSourceError(f"cannot list video folder {folder}: {exc}") from exc
        manifest_name = _manifest_name(files, str(folder))
        base = folder.resolve()
        if manifest_name is None:
            return _frames_from_names(((name, (base / name).as_uri()) for name in files), self.fps, str(folder))
        path = folder / manifest_name
        try:
            data = _read_file(path, self.max_bytes)
        except FrameReadError as exc:
            raise FrameSourceError(f"cannot read manifest {path}: {exc.reason}") from exc
        return _manifest_frames(manifest_name, data, self.fps, lambda url: self._resolve(base, url), str(path))

    def read(self, url: str) -> bytes:
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

    def _folders(self) -> dict[int, Path]:
        try:
            entries = [(entry.name, entry.is_dir()) for entry in os.scandir(self.root)]
        except OSError as exc:
            raise FrameSourceError(f"cannot list the video root {self.root}: {exc}") from exc
        return _unique_ids((name for name, is_dir in entries if is_dir), self.root, lambda name: self.root / name)

    def _check_url(self, video_id: int, url: str) -> None:
        self._resolve(self.root / str(video_id), url)

    def _write_manifest(self, video_id: int, data: bytes) -> None:
        try:
            folder = self._folder(video_id)
        except VideoNotFound:
            folder = self.root / str(video_id)
            folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{MANIFEST_JSONL}.tmp"
        tmp.write_bytes(data)
        tmp.replace(folder / MANIFEST_JSONL)  # atomic: a reader sees the old or the new manifest
        (folder / MANIFEST_CSV).unlink(missing_ok=True)

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


class S3FrameSource(FrameSource):
    """Videos under an S3 prefix (see the module docstring for the layout), read with a boto3 client.

    ``endpoint_url`` names a MinIO/LocalStack/moto endpoint, so that URLs on it parse path-style and
    count as S3 hosts; the client itself must already be configured for it. ``http_timeout_s``
    applies to pre-signed URLs, which are fetched with httpx; the client keeps its own timeouts.
    """

    def __init__(
        self,
        client: Any,
        root_url: str,
        fps: float = 1.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        endpoint_url: str | None = None,
        http_timeout_s: float = 30.0,
    ) -> None:
        _check_limits(fps, max_bytes, http_timeout_s)
        try:
            root = parse_s3_url(root_url, endpoint_url, allow_empty_key=True)
        except S3UrlError as exc:
            raise FrameSourceError(f"S3 root {root_url!r} is not usable: {exc}") from exc
        self.bucket = root.bucket
        self.prefix = root.key if not root.key or root.key.endswith("/") else root.key + "/"
        self.fps = fps
        self.max_bytes = max_bytes
        self.endpoint_url = endpoint_url
        self._client = client
        self._http = _HttpFetcher(http_timeout_s, max_bytes)

    def describe(self) -> str:
        where = self.endpoint_url or "AWS"
        return f"S3 {S3Location(self.bucket, self.prefix).uri} on {where} ({self.fps:g} fps)"

    def video_ids(self) -> list[int]:
        names = [p[len(self.prefix):].rstrip("/") for p in self._common_prefixes(self.prefix)]
        return sorted(_unique_ids(names, self._root_uri(), lambda name: name))

    def list_videos(self) -> list[VideoListing]:
        # One recursive listing: S3 returns keys in order, so each video's keys arrive together and
        # its digest is finished when the next video starts (memory: one video's keys at a time).
        listings: list[VideoListing] = []
        names: dict[int, str] = {}
        finished: set[str] = set()
        current: str | None = None
        lines: list[str] = []
        for obj in self._objects(self.prefix, delimiter=False):
            name, slash, inner = obj["Key"][len(self.prefix):].partition("/")
            video_id = _video_id(name) if slash else None
            if video_id is None:
                continue
            if name != current:
                if current is not None:
                    listings.append(VideoListing(int(current), _digest(lines)))
                    finished.add(current)
                if name in finished:
                    raise FrameSourceError(f"the listing of {self._root_uri()} is not in key order ({name!r} came back twice)")
                if video_id in names:
                    raise FrameSourceError(f"video {video_id} has two prefixes under {self._root_uri()}: {names[video_id]!r} and {name!r}")
                names[video_id], current, lines = name, name, []
            lines.append(json.dumps([inner, obj.get("Size"), obj.get("ETag")]))
        if current is not None:
            listings.append(VideoListing(int(current), _digest(lines)))
        return sorted(listings)

    def manifest(self, video_id: int) -> list[FrameRef]:
        video_prefix, files = self._video_files(video_id)
        where = S3Location(self.bucket, video_prefix).uri
        manifest_name = _manifest_name(files, where)
        if manifest_name is None:
            refs = ((file, S3Location(self.bucket, video_prefix + file).uri) for file in files)
            return _frames_from_names(refs, self.fps, where)
        manifest = S3Location(self.bucket, video_prefix + manifest_name)
        try:
            data = self._get_object(manifest, manifest.uri)
        except FrameReadError as exc:
            raise FrameSourceError(f"cannot read manifest {manifest.uri}: {exc.reason}") from exc
        return _manifest_frames(manifest_name, data, self.fps, lambda url: self._resolve(video_prefix, url), manifest.uri)

    def read(self, url: str) -> bytes:
        scheme = _scheme(url)
        if scheme in ("http", "https"):
            if not is_s3_host(url, self.endpoint_url):
                raise FrameReadError(url, "refused: not an S3 host (AWS S3 or the configured endpoint)")
            if is_presigned(url):
                return self._http.fetch(url)
        elif scheme != "s3":
            raise FrameReadError(url, "an S3 frame source reads s3:// urls and http(s) urls of S3 hosts")
        try:
            location = parse_s3_url(url, self.endpoint_url)
        except S3UrlError as exc:
            raise FrameReadError(url, str(exc)) from None
        return self._get_object(location, url)

    def _root_uri(self) -> str:
        return S3Location(self.bucket, self.prefix).uri

    def _check_url(self, video_id: int, url: str) -> None:
        self._resolve(f"{self.prefix}{video_id}/", url)

    def _write_manifest(self, video_id: int, data: bytes) -> None:
        try:
            video_prefix, files = self._video_files(video_id)
        except VideoNotFound:
            video_prefix, files = f"{self.prefix}{video_id}/", []
        try:
            self._client.put_object(Bucket=self.bucket, Key=video_prefix + MANIFEST_JSONL, Body=data, ContentType="application/x-ndjson")
            if MANIFEST_CSV in files:
                self._client.delete_object(Bucket=self.bucket, Key=video_prefix + MANIFEST_CSV)
        except (ClientError, BotoCoreError) as exc:
            raise FrameSourceError(f"cannot write {S3Location(self.bucket, video_prefix + MANIFEST_JSONL).uri}: {exc}") from exc

    def _video_files(self, video_id: int) -> tuple[str, list[str]]:
        """The video's prefix and the names of the objects directly in it (sub-folders aside)."""
        video_prefix = f"{self.prefix}{video_id}/"
        files, exists = self._children(video_prefix)
        if exists:
            return video_prefix, files
        # Zero-padded names ("0007") are video 7 too. Only they start with "0" (besides video 0),
        # so this fallback lists just them, not the whole root.
        padded = [p[len(self.prefix):].rstrip("/") for p in self._common_prefixes(self.prefix + "0")]
        found = _unique_ids(padded, self._root_uri(), lambda folder: folder).get(video_id)
        if found is None:
            raise VideoNotFound(f"video {video_id} not found: nothing under {S3Location(self.bucket, video_prefix).uri}")
        video_prefix = f"{self.prefix}{found}/"
        return video_prefix, self._children(video_prefix)[0]

    def _children(self, prefix: str) -> tuple[list[str], bool]:
        files, exists = [], False
        for page in self._pages(prefix, delimiter=True):
            files.extend(obj["Key"][len(prefix):] for obj in page.get("Contents", ()))
            exists = exists or bool(files) or bool(page.get("CommonPrefixes"))
        return sorted(files), exists

    def _resolve(self, video_prefix: str, url: str) -> str:
        scheme = _scheme(url)
        if scheme is None:
            return S3Location(self.bucket, video_prefix + _relative_path(url).as_posix()).uri
        if scheme == "file":
            raise ValueError(f"url {url!r}: an S3 manifest cannot point at local files")
        if scheme not in ("s3", "http", "https"):
            raise ValueError(f"url {url!r}: expected a path relative to the video folder, s3:// or an https S3 url")
        if scheme != "s3" and not is_s3_host(url, self.endpoint_url):
            raise ValueError(f"url {_redact(url)!r} is refused: not an S3 host (AWS S3 or the configured endpoint)")
        if scheme == "s3" or not is_presigned(url):
            parse_s3_url(url, self.endpoint_url)  # S3UrlError is a ValueError: reported with the line
        return url

    def _get_object(self, location: S3Location, url: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=location.bucket, Key=location.key)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "unknown"))
            raise FrameReadError(url, f"S3 error {code}: {error.get('Message', exc)}", missing=code in _MISSING_CODES) from exc
        except BotoCoreError as exc:
            raise FrameReadError(url, f"S3 request failed: {exc}") from exc
        body = response["Body"]
        try:
            length = response.get("ContentLength")
            if length is not None and length > self.max_bytes:
                raise FrameReadError(url, _too_large(length, self.max_bytes))
            return _read_limited(body.read, self.max_bytes, url)
        except (BotoCoreError, OSError) as exc:
            raise FrameReadError(url, f"S3 read failed: {exc}") from exc
        finally:
            body.close()

    def _pages(self, prefix: str, delimiter: bool) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            params["Delimiter"] = "/"
        try:
            yield from self._client.get_paginator("list_objects_v2").paginate(**params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "unknown")
            raise FrameSourceError(f"cannot list {S3Location(self.bucket, prefix).uri}: S3 error {code}: {exc}") from exc
        except BotoCoreError as exc:
            raise FrameSourceError(f"cannot list {S3Location(self.bucket, prefix).uri}: {exc}") from exc

    def _objects(self, prefix: str, *, delimiter: bool) -> Iterator[dict[str, Any]]:
        for page in self._pages(prefix, delimiter):
            yield from page.get("Contents", ())

    def _common_prefixes(self, prefix: str) -> Iterator[str]:
        for page in self._pages(prefix, delimiter=True):
            for common in page.get("CommonPrefixes", ()):
                yield common["Prefix"]


class _HttpFetcher:
    """GETs pre-signed URLs exactly as given: no redirects (a redirect could leave S3), a timeout, a byte cap."""

    def __init__(self, timeout_s: float, max_bytes: int) -> None:
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def fetch(self, url: str) -> bytes:
        try:
            with self._get_client().stream("GET", url) as response:
                if response.status_code != 200:
                    raise _http_error(url, response)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self._max_bytes:
                    raise FrameReadError(url, _too_large(int(declared), self._max_bytes))
                chunks = response.iter_bytes(_CHUNK)
                return _read_limited(lambda _size: next(chunks, b""), self._max_bytes, url)
        except httpx.HTTPError as exc:
            raise FrameReadError(url, f"HTTP request failed: {type(exc).__name__}: {exc}") from exc

    def _get_client(self) -> httpx.Client:
        # One client per source, created on first use: connections (and TLS sessions) are reused.
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self._timeout_s, follow_redirects=False)
            return self._client


def _http_error(url: str, response: httpx.Response) -> FrameReadError:
    # S3 explains refusals in a small XML body (<Code>NoSuchKey</Code>, SignatureDoesNotMatch, ...).
    head = b""
    for chunk in response.iter_bytes(4096):
        head += chunk
        if len(head) >= 4096:
            break
    match = re.search(rb"<Code>([^<]{1,64})</Code>", head)
    code = match.group(1).decode("ascii", "replace") if match else None
    missing = code == "NoSuchKey" or (response.status_code == 404 and code is None)
    reason = f"HTTP {response.status_code}" + (f" ({code})" if code else "")
    return FrameReadError(url, reason, missing=missing)


def _check_limits(fps: float, max_bytes: int, http_timeout_s: float) -> None:
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if not (isinstance(max_bytes, int) and max_bytes > 0):
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    if not (isinstance(http_timeout_s, (int, float)) and http_timeout_s > 0):
        raise ValueError(f"http_timeout_s must be a positive number of seconds, got {http_timeout_s!r}")


def _video_id(name: str) -> int | None:
    # ASCII digits only: str.isdigit() also accepts "²" and Arabic-Indic digits.
    return int(name) if name and name.isascii() and name.isdigit() else None


def _unique_ids(names: Iterable[str], root: object, locate: Callable[[str], Any]) -> dict[int, Any]:
    found: dict[int, tuple[str, Any]] = {}
    for name in names:
        video_id = _video_id(name)
        if video_id is None:
            continue
        if video_id in found:
            first = found[video_id][0]
            raise FrameSourceError(f"video {video_id} has two folders under {root}: {first!r} and {name!r}")
        found[video_id] = (name, locate(name))
    return {video_id: where for video_id, (_, where) in found.items()}


def _digest(lines: list[str]) -> str:
    hasher = hashlib.sha256()
    for line in sorted(lines):
        hasher.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return hasher.hexdigest()[:16]


def _local_signature(folder: Path) -> str:
    lines = []
    for directory, _, files in os.walk(folder):
        for name in files:
            path = Path(directory, name)
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # removed while listing: it is not part of the video any more
            lines.append(json.dumps([path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns]))
    return _digest(lines)


def _timestamp_ms(frame_id: int, fps: float) -> int:
    return round(frame_id * 1000 / fps)


def _manifest_name(files: list[str], where: str) -> str | None:
    present = [name for name in (MANIFEST_CSV, MANIFEST_JSONL) if name in files]
    if len(present) > 1:
        raise FrameSourceError(f"{where} holds both {MANIFEST_CSV} and {MANIFEST_JSONL}: keep one")
    return present[0] if present else None


def _frames_from_names(files: Iterable[tuple[str, str]], fps: float, where: str) -> list[FrameRef]:
    """FrameRefs of the image files among ``(name, url)`` pairs; names without digits are skipped."""
    names: dict[int, str] = {}
    refs = []
    for name, url in sorted(files):
        if name.startswith(".") or PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            frame_id = frame_id_from_name(name)
        except ValueError:
            continue
        if frame_id in names:
            raise FrameSourceError(f"{where}: frame {frame_id} is named twice, by {names[frame_id]!r} and {name!r}")
        names[frame_id] = name
        refs.append(FrameRef(frame_id, _timestamp_ms(frame_id, fps), url))
    return sorted(refs, key=lambda ref: ref.frame_id)


def _manifest_frames(name: str, data: bytes, fps: float, resolve: Callable[[str], str], where: str) -> list[FrameRef]:
    """FrameRefs from a manifest's bytes; ``resolve`` turns a row's url into a readable one or raises ValueError."""
    try:
        text = data.decode("utf-8-sig")  # Excel writes a byte-order mark
    except UnicodeDecodeError as exc:
        raise FrameSourceError(f"{where} is not UTF-8 text: {exc}") from None
    rows = _csv_rows(text, where) if name == MANIFEST_CSV else _jsonl_rows(text, where)
    lines: dict[int, int] = {}
    refs = []
    for line, row in rows:
        frame_id = _manifest_int(row.get("frame_id"), "frame_id", where, line)
        if frame_id is None:
            raise FrameSourceError(f"{where}, line {line}: missing frame_id")
        if frame_id in lines:
            raise FrameSourceError(f"{where}, line {line}: duplicate frame_id {frame_id} (first on line {lines[frame_id]})")
        lines[frame_id] = line
        timestamp_ms = _manifest_int(row.get("timestamp_ms"), "timestamp_ms", where, line)
        url = row.get("url")
        if not isinstance(url, str) or not url.strip():
            raise FrameSourceError(f"{where}, line {line}: missing url for frame {frame_id}")
        try:
            resolved = resolve(url.strip())
        except ValueError as exc:
            raise FrameSourceError(f"{where}, line {line}: {exc}") from None
        refs.append(FrameRef(frame_id, _timestamp_ms(frame_id, fps) if timestamp_ms is None else timestamp_ms, resolved))
    return sorted(refs, key=lambda ref: ref.frame_id)


def _csv_rows(text: str, where: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [cell.strip().lower() for cell in next(reader, [])]
        if "frame_id" not in header or "url" not in header:
            raise FrameSourceError(f"{where}, line 1: the header must name frame_id and url (and optionally timestamp_ms), got {header}")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise FrameSourceError(f"{where}, line {reader.line_num}: expected {len(header)} columns, got {len(row)}")
            yield reader.line_num, dict(zip(header, row))
    except csv.Error as exc:
        raise FrameSourceError(f"{where}, line {reader.line_num}: {exc}") from None


def _jsonl_rows(text: str, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FrameSourceError(f"{where}, line {number}: not JSON: {exc}") from None
        if not isinstance(row, dict):
            raise FrameSourceError(f"{where}, line {number}: expected a JSON object, got {type(row).__name__}")
        yield number, row


def _manifest_int(value: object, field: str, where: str, line: int) -> int | None:
    """A non-negative integer from a CSV cell or JSON value; None when absent or empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)  # JSON writers that only know floats (1500.0)
    elif isinstance(value, str) and _INTEGER.match(value.strip()):
        number = int(value.strip())
    if number is None or number < 0:
        raise FrameSourceError(f"{where}, line {line}: {field} must be a non-negative integer, got {value!r}")
    return number


def _scheme(url: str) -> str | None:
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None


def _relative_path(url: str) -> PurePosixPath:
    # Relative manifest urls are file names, taken literally (no percent-decoding), inside the folder.
    path = PurePosixPath(url)
    if path.is_absolute() or ".." in path.parts or url.startswith("\\"):
        raise ValueError(f"url {url!r}: a relative url must stay inside the video folder (no leading '/', no '..')")
    return path


def _file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file url {url!r} names host {parts.netloc!r}: only local files (file:///abs/path) are read")
    path = Path(unquote(parts.path))
    if not path.is_absolute():
        raise ValueError(f"file url {url!r} has no absolute path: expected file:///abs/path")
    return path


def _read_file(path: Path, max_bytes: int, url: str | None = None) -> bytes:
    url = url if url is not None else str(path)
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise FrameReadError(url, _too_large(size, max_bytes))
            return _read_limited(handle.read, max_bytes, url)  # the file may have grown since fstat
    except FileNotFoundError:
        raise FrameReadError(url, f"no such file {path}", missing=True) from None
    except IsADirectoryError:
        raise FrameReadError(url, f"{path} is a folder, not a file") from None
    except OSError as exc:
        raise FrameReadError(url, f"cannot read {path}: {exc}") from exc


def _read_limited(read: Callable[[int], bytes], max_bytes: int, url: str) -> bytes:
    chunks, total = [], 0
    while True:
        chunk = read(min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise FrameReadError(url, f"more than {max_bytes:,} bytes, over the limit")


def _too_large(size: int, max_bytes: int) -> str:
    return f"{size:,} bytes, over the limit of {max_bytes:,}"


def _redact(url: str) -> str:
    # A pre-signed URL's query is a credential: messages and logs get the location only.
    return url.split("?", 1)[0] + "?<query redacted>" if "?" in url and _scheme(url) in ("http", "https") else url
