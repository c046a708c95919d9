"""Reading one frame's bytes safely: byte limits, local files, pre-signed URLs over HTTP, and
telling permanent failures (skip the frame) from transient ones (retry later, never skip)."""

from __future__ import annotations

import errno
import math
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from resources.frame_sources.base import FrameReadError

# A 4K PNG frame is ~25 MB; 64 MiB leaves room for 8K JPEGs and refuses multi-GB mistakes.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

# S3 error codes that mean "this object does not exist" (get_object says NoSuchKey, HEAD says 404).
# NoSuchBucket is not among them: a wrong bucket is a configuration error, not a deleted frame.
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})

# Error codes that say "try again later" (throttling, trouble on the server's side, credentials
# that expired mid-run or a skewed clock): nothing about the object itself. The list follows
# botocore's own "standard" retry mode; any 5xx status or 429 counts as well.
_TRANSIENT_CODES = frozenset({
    "SlowDown", "RequestTimeout", "RequestTimeoutException", "ServiceUnavailable", "InternalError",
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequests", "TooManyRequestsException", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "PriorRequestNotComplete", "OperationAborted", "ExpiredToken",
    "RequestTimeTooSkewed",
})

# Local errors that are proof the path holds no readable frame. Any other OSError (EIO, EACCES,
# ESTALE on NFS, EMFILE, ETIMEDOUT, ...) is not: the disk, mount or permissions may be fixed.
_PERMANENT_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP})

_CHUNK = 1 << 20


def _transient_status(status: object) -> bool:
    return isinstance(status, int) and (status >= 500 or status == 429)


def _client_error_info(exc: ClientError) -> tuple[str, str, bool, bool]:
    """``(code, message, missing, transient)`` of a boto3 ClientError."""
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(error.get("Code") or status or "unknown")
    transient = code in _TRANSIENT_CODES or _transient_status(status) or _transient_status(int(code) if code.isdigit() else None)
    return code, str(error.get("Message", exc)), code in _MISSING_CODES, transient


def _botocore_transient(exc: BotoCoreError) -> bool:
    # Connection refused/reset, timeouts, a body cut short, missing or expired credentials: none
    # says anything about the object. Only a malformed request is permanent.
    return not isinstance(exc, ParamValidationError)


def _transient_os_error(exc: OSError) -> bool:
    return exc.errno not in _PERMANENT_ERRNOS


def _httpx_transient(exc: httpx.HTTPError) -> bool:
    # Transport errors (connect, timeouts, a connection dropped mid-body) are; a broken
    # content-encoding or an unsupported scheme is not.
    return isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.UnsupportedProtocol)


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
            raise FrameReadError(url, f"HTTP request failed: {type(exc).__name__}: {exc}", transient=_httpx_transient(exc)) from exc

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
    transient = _transient_status(response.status_code) or code in _TRANSIENT_CODES
    reason = f"HTTP {response.status_code}" + (f" ({code})" if code else "")
    return FrameReadError(url, reason, missing=missing, transient=transient)


def _check_limits(fps: float, max_bytes: int, http_timeout_s: float) -> None:
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if not (isinstance(max_bytes, int) and max_bytes > 0):
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    if not (isinstance(http_timeout_s, (int, float)) and http_timeout_s > 0):
        raise ValueError(f"http_timeout_s must be a positive number of seconds, got {http_timeout_s!r}")


def _file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file url {url!r} names host {parts.netloc!r}: only local files (file:///abs/path) are read")
    path = Path(unquote(parts.path))
    if not path.is_absolute():
        raise ValueError(f"file url {url!r} has no absolute path: expected file:///abs/path")
    return path


def _file_error(url: str, path: Path, exc: OSError, doing: str = "read") -> FrameReadError:
    """A local file's OSError as a FrameReadError: missing, a folder, or (maybe transient) I/O."""
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return FrameReadError(url, f"no such file {path}", missing=True)
    if isinstance(exc, IsADirectoryError):
        return FrameReadError(url, f"{path} is a folder, not a file")
    return FrameReadError(url, f"cannot {doing} {path}: {exc}", transient=_transient_os_error(exc))


def _read_file(path: Path, max_bytes: int, url: str | None = None) -> bytes:
    url = url if url is not None else str(path)
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise FrameReadError(url, _too_large(size, max_bytes))
            return _read_limited(handle.read, max_bytes, url)  # the file may have grown since fstat
    except OSError as exc:
        raise _file_error(url, path, exc) from exc


def _read_limited(read: Callable[[int], bytes], max_bytes: int, url: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
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

