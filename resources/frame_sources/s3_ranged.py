"""A seekable, read-only file over one S3 object, read with ranged GETs: a video is decoded from S3
while holding one block of it in memory, never the whole object.

The object's ETag is pinned at open (``IfMatch`` on every range), so an object replaced while it is
read fails with an error instead of splicing two versions. PyAV treats a failing ``read`` as the
end of the data, so the failure is also kept in :attr:`S3RangeReader.error` for the caller to
raise once the decoder returns.
"""

from __future__ import annotations

import io
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from resources.frame_sources.base import FrameReadError
from resources.frame_sources.reading import _botocore_transient, _client_error_info

BLOCK_BYTES = 4 * 1024 * 1024  # one ranged GET; also the memory a reader holds


class S3RangeReader(io.RawIOBase):
    """Raw reads of ``bucket/key`` by byte range; wrap it in :func:`open_s3_object` for buffering."""

    def __init__(self, client: Any, bucket: str, key: str, url: str) -> None:
        super().__init__()
        self._client, self._bucket, self._key, self._url = client, bucket, key, url
        self.error: FrameReadError | None = None
        self.requests = 0
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code, message, missing, transient = _client_error_info(exc)
            raise FrameReadError(url, f"S3 error {code}: {message}", missing=missing, transient=transient) from exc
        except BotoCoreError as exc:
            raise FrameReadError(url, f"S3 request failed: {exc}", transient=_botocore_transient(exc)) from exc
        self.size: int = int(head["ContentLength"])
        self._etag: str | None = head.get("ETag")
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        if self.error is not None:
            raise self.error
        want = min(len(buffer), self.size - self._position)
        if want <= 0:
            return 0
        params = {"Bucket": self._bucket, "Key": self._key, "Range": f"bytes={self._position}-{self._position + want - 1}"}
        if self._etag:
            params["IfMatch"] = self._etag
        try:
            self.requests += 1
            body = self._client.get_object(**params)["Body"]
            try:
                data = body.read()
            finally:
                body.close()
        except ClientError as exc:
            code, message, missing, transient = _client_error_info(exc)
            if code in ("PreconditionFailed", "412"):
                message, transient = "the object changed while it was read", True  # the next run reads the new one
            self.error = FrameReadError(self._url, f"S3 error {code}: {message}", missing=missing, transient=transient)
            raise self.error from exc
        except (BotoCoreError, OSError) as exc:
            self.error = FrameReadError(self._url, f"S3 read failed: {exc}", transient=True)
            raise self.error from exc
        if len(data) != want:
            self.error = FrameReadError(self._url, f"S3 answered {len(data)} bytes for a range of {want}", transient=True)
            raise self.error
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def open_s3_object(client: Any, bucket: str, key: str, url: str, block_bytes: int = BLOCK_BYTES) -> io.BufferedReader:
    """A buffered, seekable binary file over the object; reads ``block_bytes`` per request."""
    return io.BufferedReader(S3RangeReader(client, bucket, key, url), buffer_size=block_bytes)
