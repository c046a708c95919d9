"""Videos under an S3 prefix, read with a boto3 client (layout in the package docstring)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

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
    _video_id,
)
from resources.frame_sources.reading import (
    DEFAULT_MAX_BYTES,
    _botocore_transient,
    _check_limits,
    _client_error_info,
    _HttpFetcher,
    _read_limited,
    _too_large,
)
from resources.frame_sources.s3_ranged import open_s3_object
from resources.frame_sources.video import SamplingPolicy, is_video_file, parse_video_frame_url, sampling_from_env, scan_video
from resources.s3.urls import S3Location, S3UrlError, is_presigned, is_s3_host, parse_s3_url


class S3FrameSource(FrameSource):
    """Videos under an S3 prefix (see the module docstring for the layout), read with a boto3 client.

    ``endpoint_url`` names a MinIO/LocalStack/moto endpoint, so that URLs on it parse path-style and
    count as S3 hosts; the client itself must already be configured for it. ``http_timeout_s``
    applies to pre-signed URLs, which are fetched with httpx; the client keeps its own timeouts.
    ``sampling`` picks the frames of video files (default: VIDEO_SAMPLING, see :mod:`.video`);
    video files are read by ranged GETs, a few MiB at a time.
    """

    def __init__(
        self,
        client: Any,
        root_url: str,
        fps: float = 1.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        endpoint_url: str | None = None,
        http_timeout_s: float = 30.0,
        sampling: SamplingPolicy | None = None,
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
        self.sampling = sampling if sampling is not None else sampling_from_env()
        self._client = client
        self._http = _HttpFetcher(http_timeout_s, max_bytes)

    def describe(self) -> str:
        where = self.endpoint_url or "AWS"
        return f"S3 {S3Location(self.bucket, self.prefix).uri} on {where} ({self.fps:g} fps)"

    def video_ids(self) -> list[int]:
        names = [p[len(self.prefix):].rstrip("/") for p in self._common_prefixes(self.prefix)]
        return sorted(_unique_ids(names, self._root_uri(), lambda name: name))

    def list_videos(self) -> list[VideoListing]:
        return self._listings(self.prefix)

    def listing(self, video_id: int) -> VideoListing | None:
        found = self._listings(f"{self.prefix}{video_id}/")
        if not found and (padded := self._padded_folder(video_id)) is not None:
            found = self._listings(f"{self.prefix}{padded}/")
        return next((listing for listing in found if listing.video_id == video_id), None)

    def _listings(self, under: str) -> list[VideoListing]:
        """The listings of the videos whose keys start with ``under`` (the root, or one video's folder)."""
        # One recursive listing: S3 returns keys in order, so each video's keys arrive together and
        # its digest is finished when the next video starts (memory: one video's keys at a time).
        listings: list[VideoListing] = []
        names: dict[int, str] = {}
        finished: set[str] = set()
        current: str | None = None
        lines: list[str] = []
        for obj in self._objects(under, delimiter=False):
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
            if "/" not in inner and is_video_file(inner):
                lines.append(f"sampling {self.sampling.fingerprint()}")  # another policy lists other frames
        if current is not None:
            listings.append(VideoListing(int(current), _digest(lines)))
        return sorted(listings)

    def manifest(self, video_id: int) -> list[FrameRef]:
        video_prefix, files, folders = self._video_files(video_id)
        where = S3Location(self.bucket, video_prefix).uri
        resolve = functools.partial(self._resolve, video_prefix)
        manifest_name = _manifest_name(files, where)
        videos = [name for name in files if is_video_file(name)]
        if manifest_name is None and len(videos) > 1:
            raise FrameSourceError(f"{where} holds {len(videos)} video files ({', '.join(videos[:3])}): keep one per video folder")
        if manifest_name is None and videos:
            base = scan_video(self.open_file, S3Location(self.bucket, video_prefix + videos[0]).uri, self.sampling)
        elif manifest_name is None:
            refs = ((file, S3Location(self.bucket, video_prefix + file).uri) for file in files)
            base = _frames_from_names(refs, self.fps, where)
        else:
            base = _manifest_frames(manifest_name, self._read_listing_file(video_prefix + manifest_name), self.fps, resolve, S3Location(self.bucket, video_prefix + manifest_name).uri)
        if INGEST_DIR not in folders:  # no batch recorded: no extra request
            return base
        return merge_batches(base, read_batches(lambda: self._batch_names_at(video_prefix), lambda name: self._read_batch_at(video_prefix, name), where))

    def _batch_names(self, video_id: int) -> list[str]:
        video_prefix, _, folders = self._video_files(video_id)
        return self._batch_names_at(video_prefix) if INGEST_DIR in folders else []

    def _read_batch(self, video_id: int, name: str) -> list[FrameRef] | None:
        return self._read_batch_at(self._video_files(video_id)[0], name)

    def _delete_batches(self, video_id: int, names: list[str]) -> None:
        batch_prefix = f"{self._video_files(video_id)[0]}{INGEST_DIR}/"
        for start in range(0, len(names), 1000):  # DeleteObjects takes up to 1,000 keys
            keys = [{"Key": batch_prefix + name} for name in names[start : start + 1000]]
            where = S3Location(self.bucket, batch_prefix).uri
            try:
                errors = self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}).get("Errors") or []
            except ClientError as exc:
                code, message, _, transient = _client_error_info(exc)
                raise FrameSourceError(f"cannot delete batches under {where}: S3 error {code}: {message}", transient=transient) from exc
            except BotoCoreError as exc:
                raise FrameSourceError(f"cannot delete batches under {where}: {exc}", transient=_botocore_transient(exc)) from exc
            if errors:
                first = errors[0]
                raise FrameSourceError(f"cannot delete {len(errors)} batches under {where}: {first.get('Code')}: {first.get('Message')}")

    def _batch_names_at(self, video_prefix: str) -> list[str]:
        batch_prefix = f"{video_prefix}{INGEST_DIR}/"
        names = (obj["Key"][len(batch_prefix):] for obj in self._objects(batch_prefix, delimiter=True))
        return sorted(name for name in names if is_batch_name(name))

    def _read_batch_at(self, video_prefix: str, name: str) -> list[FrameRef] | None:
        location = S3Location(self.bucket, f"{video_prefix}{INGEST_DIR}/{name}")
        try:
            data = self._get_object(location, location.uri)
        except FrameReadError as exc:
            if exc.missing:
                return None  # compacted into a later batch since it was listed
            raise FrameSourceError(f"cannot read manifest {location.uri}: {exc.reason}", transient=exc.transient) from exc
        return _manifest_frames(MANIFEST_JSONL, data, self.fps, functools.partial(self._resolve, video_prefix), location.uri)

    def _read_listing_file(self, key: str) -> bytes:
        """A manifest file or ingest batch of a video, read for :meth:`manifest`."""
        location = S3Location(self.bucket, key)
        try:
            return self._get_object(location, location.uri)
        except FrameReadError as exc:
            raise FrameSourceError(f"cannot read manifest {location.uri}: {exc.reason}", transient=exc.transient) from exc

    def read(self, url: str) -> bytes:
        if parse_video_frame_url(url) is not None:  # one frame of a video file, as PNG
            return png_bytes(read_frame_image(self, url))
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

    def open_file(self, url: str) -> IO[bytes]:
        if _scheme(url) != "s3":
            raise FrameReadError(url, "an S3 frame source opens video files by s3:// urls")
        try:
            location = parse_s3_url(url, self.endpoint_url)
        except S3UrlError as exc:
            raise FrameReadError(url, str(exc)) from None
        return open_s3_object(self._client, location.bucket, location.key, url)

    def _root_uri(self) -> str:
        return S3Location(self.bucket, self.prefix).uri

    def _check_url(self, video_id: int, url: str) -> None:
        self._resolve(f"{self.prefix}{video_id}/", url)

    def _write_batch(self, video_id: int, name: str, data: bytes) -> None:
        try:
            video_prefix = self._video_files(video_id)[0]
        except VideoNotFound:
            video_prefix = f"{self.prefix}{video_id}/"
        key = f"{video_prefix}{INGEST_DIR}/{name}"
        try:  # one PUT of a new key: readers see the whole batch or none of it
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/x-ndjson")
        except ClientError as exc:
            code, message, _, transient = _client_error_info(exc)
            raise FrameSourceError(f"cannot write {S3Location(self.bucket, key).uri}: S3 error {code}: {message}", transient=transient) from exc
        except BotoCoreError as exc:
            raise FrameSourceError(f"cannot write {S3Location(self.bucket, key).uri}: {exc}", transient=_botocore_transient(exc)) from exc

    def _video_files(self, video_id: int) -> tuple[str, list[str], list[str]]:
        """The video's prefix and the names of the objects and of the sub-folders directly in it."""
        video_prefix = f"{self.prefix}{video_id}/"
        files, folders = self._children(video_prefix)
        if files or folders:
            return video_prefix, files, folders
        found = self._padded_folder(video_id)
        if found is None:
            raise VideoNotFound(f"video {video_id} not found: nothing under {S3Location(self.bucket, video_prefix).uri}")
        video_prefix = f"{self.prefix}{found}/"
        return (video_prefix, *self._children(video_prefix))

    def _padded_folder(self, video_id: int) -> str | None:
        """The zero-padded folder name ("0007") of ``video_id``, if it has one. Only such names start
        with "0" (besides video 0), so this lists just them, not the whole root."""
        padded = [p[len(self.prefix):].rstrip("/") for p in self._common_prefixes(self.prefix + "0")]
        found: str | None = _unique_ids(padded, self._root_uri(), lambda folder: folder).get(video_id)
        return found

    def _children(self, prefix: str) -> tuple[list[str], list[str]]:
        files: list[str] = []
        folders: list[str] = []
        for page in self._pages(prefix, delimiter=True):
            files.extend(obj["Key"][len(prefix):] for obj in page.get("Contents", ()))
            folders.extend(common["Prefix"][len(prefix):].rstrip("/") for common in page.get("CommonPrefixes", ()))
        return sorted(files), sorted(folders)

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
            code, message, missing, transient = _client_error_info(exc)
            raise FrameReadError(url, f"S3 error {code}: {message}", missing=missing, transient=transient) from exc
        except BotoCoreError as exc:
            raise FrameReadError(url, f"S3 request failed: {exc}", transient=_botocore_transient(exc)) from exc
        body = response["Body"]
        try:
            length = response.get("ContentLength")
            if length is not None and length > self.max_bytes:
                raise FrameReadError(url, _too_large(length, self.max_bytes))
            return _read_limited(body.read, self.max_bytes, url)
        except (BotoCoreError, OSError) as exc:  # the connection failed mid-body
            raise FrameReadError(url, f"S3 read failed: {exc}", transient=True) from exc
        finally:
            body.close()

    def _pages(self, prefix: str, delimiter: bool) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            params["Delimiter"] = "/"
        try:
            yield from self._client.get_paginator("list_objects_v2").paginate(**params)
        except ClientError as exc:
            code, _, _, transient = _client_error_info(exc)
            raise FrameSourceError(f"cannot list {S3Location(self.bucket, prefix).uri}: S3 error {code}: {exc}", transient=transient) from exc
        except BotoCoreError as exc:
            raise FrameSourceError(f"cannot list {S3Location(self.bucket, prefix).uri}: {exc}", transient=_botocore_transient(exc)) from exc

    def _objects(self, prefix: str, *, delimiter: bool) -> Iterator[dict[str, Any]]:
        for page in self._pages(prefix, delimiter):
            yield from page.get("Contents", ())

    def _common_prefixes(self, prefix: str) -> Iterator[str]:
        for page in self._pages(prefix, delimiter=True):
            for common in page.get("CommonPrefixes", ()):
                yield common["Prefix"]

