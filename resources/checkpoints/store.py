"""Where checkpoints live: a local folder or ``s3://bucket/prefix/``, through pyarrow's filesystems.

``CHECKPOINT_DIR`` names the store. Keys inside it are the same on both: ``video_<id>.parquet``
(published checkpoints), ``_work/video_<id>/chunk_<n>.parquet`` and ``plan.json`` (resumable
chunks), ``manifests/video_<id>.json``. On S3 the client honours ``S3_ENDPOINT_URL`` (MinIO,
moto, ...), ``AWS_REGION``, ``S3_TIMEOUT_SECONDS``, ``S3_MAX_ATTEMPTS`` (the frame source's
settings) and the AWS SDK's credential chain (environment, profile, web identity, instance/pod
role); nothing is configured twice.

The guarantees are the local folder's:

* **atomic publication** - locally a temporary file renamed into place; on S3 one object upload,
  which S3 makes visible whole or not at all (a multipart upload only on completion), and a killed
  writer leaves no object behind;
* **consistent reads** - a published checkpoint can be replaced while it is read. Locally the file
  is opened once (an open file keeps its old inode; a path opened twice may not); on S3 a Parquet reader's several range requests could straddle two
  versions, so :meth:`CheckpointStore.read_table` fetches the whole object, parses it in memory,
  checks that its rows hash to the content version in its footer and reads again if they do not
  (a torn read). Footer-only reads (:meth:`CheckpointStore.read_metadata`, for staleness checks)
  fetch the tail in one request and are retried when it does not parse;
* **versioned content** - the content version sits in the footer (``resources.checkpoints.format``).

Why pyarrow's S3 filesystem rather than fsspec/s3fs: pyarrow is already the checkpoint format's
library (one dependency, no aiobotocore pin against boto3), its S3 client is the AWS C++ SDK with
the standard credential chain and retry strategy, and Parquet reads and writes stream through it
directly. s3fs would add fsspec's async stack for the same operations.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from resources.checkpoints.format import META_KEY, content_version, write_table_atomic
from resources.s3.client import s3_settings_from_env

T = TypeVar("T")
PUBLISHED_NAME = re.compile(r"^video_(\d+)\.parquet$")
FOOTER_TAIL_BYTES = 256 * 1024  # one request holds any footer we write (metadata is small JSON)


@dataclass(frozen=True)
class StoredObject:
    """A listed object: its key in the store, size and modification time (change detection)."""

    key: str
    size: int
    mtime_ns: int


def _framesearch_meta(schema: pa.Schema) -> dict[str, object]:
    raw = (schema.metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


class TornReadError(OSError):
    """An S3 read returned bytes of no single version of the object (it was replaced meanwhile)."""


def _retry_torn(read: Callable[[], T], attempts: int = 5) -> T:
    """``read()``, again while it returns a torn object. pyarrow takes an object's size from a HEAD
    and its bytes in ranged GETs: an object replaced in between reads as bytes of neither version
    whole. Parquet refuses most such bytes; the rest fail the content-version check."""
    for attempt in range(attempts):
        try:
            return read()
        except FileNotFoundError:
            raise  # deleted: not a torn read
        except (OSError, pa.ArrowInvalid):
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _verified(table: pa.Table) -> pa.Table:
    """``table`` if its rows hash to the version in its footer (or it has none), else TornReadError."""
    version = _framesearch_meta(table.schema).get("version")
    if version is not None and content_version(table) != version:
        raise TornReadError(f"rows do not hash to the footer's version {version}")
    return table


def published_key(video_id: int) -> str:
    """The key of a video's published checkpoint."""
    return f"video_{video_id}.parquet"


def manifest_key(video_id: int) -> str:
    """The key of the frame manifest the pipeline stored for a video."""
    return f"manifests/video_{video_id}.json"


def _s3_filesystem(endpoint_url: str | None) -> pafs.S3FileSystem:
    """pyarrow's S3 client with the frame source's settings: AWS_REGION, S3_TIMEOUT_SECONDS and
    S3_MAX_ATTEMPTS (``resources.s3.client``), and ``endpoint_url`` (S3_ENDPOINT_URL)."""
    settings = s3_settings_from_env()
    options: dict[str, object] = {
        "region": settings.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        "connect_timeout": settings.timeout_s, "request_timeout": settings.timeout_s,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=settings.max_attempts),
    }
    if endpoint_url:
        parsed = urlparse(endpoint_url)
        options.update(endpoint_override=parsed.netloc or parsed.path, scheme=parsed.scheme or "https")
    # Credentials are left to the AWS SDK's default chain: never read or stored here.
    return pafs.S3FileSystem(**options)


class CheckpointStore:
    """A checkpoint store rooted at a local folder or an ``s3://bucket/prefix`` URI."""

    def __init__(self, root: str | Path, endpoint_url: str | None = None, filesystem: pafs.FileSystem | None = None) -> None:
        root = str(root)
        self.root = root
        self.is_s3 = root.startswith("s3://")
        if self.is_s3:
            self.base = root[len("s3://") :].strip("/")
            if not self.base:
                raise ValueError(f"checkpoint store {root!r} names no bucket")
            self.fs = filesystem or _s3_filesystem(endpoint_url if endpoint_url is not None else os.environ.get("S3_ENDPOINT_URL") or None)
        else:
            self.base = str(Path(root).absolute())
            self.fs = filesystem or pafs.LocalFileSystem()

    def __repr__(self) -> str:
        return f"CheckpointStore({self.root!r})"

    # -- addresses ---------------------------------------------------------------------------
    def path(self, key: str) -> str:
        """The filesystem path of ``key`` (``bucket/prefix/key`` on S3)."""
        return f"{self.base}/{key}"

    def uri(self, key: str) -> str:
        """``key`` as a person or a log reads it: ``s3://...``, or the local path under ``root`` as given."""
        return f"s3://{self.path(key)}" if self.is_s3 else str(Path(self.root) / key)

    def local_path(self, key: str) -> Path:
        """``key`` as a local :class:`Path` (local stores only)."""
        if self.is_s3:
            raise ValueError(f"{self.root} is on S3: no local path for {key}")
        return Path(self.path(key))

    # -- objects -----------------------------------------------------------------------------
    def info(self, key: str) -> StoredObject | None:
        """Size and mtime of ``key``, or None if it does not exist."""
        found = self.fs.get_file_info(self.path(key))
        if found.type != pafs.FileType.File:
            return None
        return StoredObject(key, found.size or 0, found.mtime_ns or 0)

    def exists(self, key: str) -> bool:
        return self.info(key) is not None

    def read_bytes(self, key: str) -> bytes:
        """The whole object in one request (raises FileNotFoundError if absent)."""
        with self.fs.open_input_stream(self.path(key)) as stream:
            return stream.read()

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` atomically (temp file + rename locally; one object upload on S3)."""
        if self.is_s3:
            with self.fs.open_output_stream(self.path(key)) as stream:
                stream.write(data)
            return
        path = self.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def read_json(self, key: str) -> dict | None:
        """A small JSON object, or None if absent."""
        try:
            return json.loads(self.read_bytes(key))
        except FileNotFoundError:
            return None

    def write_json(self, key: str, value: dict) -> None:
        self.write_bytes(key, json.dumps(value, sort_keys=True).encode())

    def delete_prefix(self, key: str) -> None:
        """Remove ``key`` and everything under it (missing is fine)."""
        try:
            self.fs.delete_dir(self.path(key))
        except FileNotFoundError:
            pass  # already gone; on S3 a "directory" with no objects does not exist

    def list(self, prefix: str = "", recursive: bool = False) -> list[StoredObject]:
        """Files under ``prefix`` (not recursive by default); a missing folder lists nothing."""
        selector = pafs.FileSelector(self.path(prefix).rstrip("/"), allow_not_found=True, recursive=recursive)
        found = []
        for entry in self.fs.get_file_info(selector):
            if entry.type == pafs.FileType.File:
                key = entry.path[len(self.base) + 1 :]
                found.append(StoredObject(key, entry.size or 0, entry.mtime_ns or 0))
        return found

    def folders(self, prefix: str = "") -> builtins.list[str]:  # builtins: the method list() above
        """Names of the folders directly under ``prefix`` (S3: common prefixes); none if missing."""
        selector = pafs.FileSelector(self.path(prefix).rstrip("/"), allow_not_found=True, recursive=False)
        return sorted(entry.base_name for entry in self.fs.get_file_info(selector) if entry.type == pafs.FileType.Directory)

    # -- checkpoints -------------------------------------------------------------------------
    def write_table(self, key: str, table: pa.Table) -> str:
        """Write a checkpoint table atomically with its content version in the footer; return it."""
        if not self.is_s3:
            return write_table_atomic(table, self.local_path(key))
        version = content_version(table)
        meta = dict(table.schema.metadata or {})
        meta[META_KEY] = json.dumps({**json.loads(meta.get(META_KEY, b"{}")), "version": version}, sort_keys=True).encode()
        buffer = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(meta), buffer, compression="zstd")
        self.write_bytes(key, buffer.getvalue())
        return version

    def read_table(self, key: str, columns: builtins.list[str] | None = None) -> pa.Table:  # list: the method above
        """A checkpoint table, read from one consistent snapshot of the object."""
        if not self.is_s3:
            # One open file: pq.read_table(path) opens the path more than once (schema, then data),
            # and a checkpoint renamed into place in between reads as "corrupt file" or mixes two
            # versions. An open descriptor keeps reading the inode it opened.
            with pa.OSFile(str(self.local_path(key))) as handle:
                return pq.read_table(handle, columns=columns)
        # Whole tables are checked against their content version; a column subset cannot be.
        parse = (lambda: _verified(pq.read_table(pa.BufferReader(self.read_bytes(key))))) if columns is None else (
            lambda: pq.read_table(pa.BufferReader(self.read_bytes(key)), columns=columns))
        return _retry_torn(parse)

    def read_metadata(self, key: str) -> dict[str, object]:
        """The framesearch footer metadata of a checkpoint (model, patch settings, plan, version)."""
        if not self.is_s3:
            return _framesearch_meta(pq.read_schema(self.local_path(key)))
        return _retry_torn(lambda: self._s3_footer_metadata(key))

    def _s3_footer_metadata(self, key: str) -> dict[str, object]:
        with self.fs.open_input_file(self.path(key)) as handle:
            size = handle.size()
            start = max(0, size - FOOTER_TAIL_BYTES)
            handle.seek(start)
            tail = handle.read()  # one ranged GET
        if start == 0:
            schema = pq.read_schema(pa.BufferReader(tail))
        else:
            # The footer is the tail's last 4 + 4 + footer-length bytes; parse it from the tail.
            footer_len = int.from_bytes(tail[-8:-4], "little")
            if footer_len + 8 > len(tail):  # a footer over FOOTER_TAIL_BYTES: take the whole object
                return _framesearch_meta(self.read_table(key).schema)
            schema = pq.read_schema(pa.BufferReader(b"PAR1" + tail[-(footer_len + 8) :]))
        return _framesearch_meta(schema)

    def published(self) -> dict[int, StoredObject]:
        """``{video_id: object}`` of every published checkpoint (temporary files excluded)."""
        found = {}
        for entry in self.list():
            match = PUBLISHED_NAME.match(entry.key)
            if match:
                found[int(match.group(1))] = entry
        return found
