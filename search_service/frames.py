"""``GET /frames/{image_id}``: the picture of an indexed frame, as a JPEG.

Only frames in the index can be read: the client names an ``image_id`` (``"<video_id>:<frame_id>"``),
the service looks up the point's stored ``url`` and reads it with the pipeline's own frame-source
readers (local file, S3 object, pre-signed S3 URL; video frames decoded at their timestamp). No path
or URL from the client is ever opened.

Query parameters:
    size=N       scale down (aspect kept) so the longer side is at most N pixels (16..4096)
    box=x,y,w,h  draw this rectangle (frame pixels, e.g. a result's ``best_patch_box``)
    v=VERSION    the checkpoint version the URL was made for (results' ``thumbnail_url`` carry it)

Caching: the ETag is a digest of the frame's checkpoint version, url and the rendering options.
A URL whose ``v`` is the frame's current version is ``immutable`` (a re-indexed frame gets a new
version and so a new URL); any other answer must be revalidated, and ``If-None-Match`` gets a 304.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from PIL import Image, ImageDraw
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from resources.frame_sources import FrameReadError, LocalFolderSource, S3FrameSource, _scheme, read_frame_image
from resources.frame_sources.images import ImageDecodeError
from resources.s3.urls import S3UrlError, parse_s3_url
from resources.vector_index import VectorIndex
from resources.vector_index.schema import IMAGE_ID_PATTERN, MAX_ID, point_id
from search_service.request_bodies import query_param
from search_service.schemas import BOX, FRAME_SIZE

THUMBNAIL_SIZE = 320  # px, the longer side of results' thumbnails
JPEG_QUALITY = 85
_IMAGE_ID = re.compile(IMAGE_ID_PATTERN)


class FrameNotIndexed(LookupError):
    """The image_id is malformed or names no frame in the index (404)."""


class FrameUnavailable(Exception):
    """The frame is indexed but its picture cannot be served; ``status`` and ``reason`` say why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def parse_image_id(image_id: str) -> tuple[int, int]:
    """``(video_id, frame_id)`` of ``"<video_id>:<frame_id>"``; :class:`FrameNotIndexed` otherwise."""
    match = _IMAGE_ID.match(image_id)
    if not match or int(match.group(1)) > MAX_ID or int(match.group(2)) > MAX_ID:
        raise FrameNotIndexed(f"{image_id[:64]!r} is not an image id (expected '<video_id>:<frame_id>' in ASCII digits, no leading zeros)")
    return int(match.group(1)), int(match.group(2))


def indexed_payload(index: VectorIndex, image_id: str) -> tuple[str, dict[str, Any]]:
    """The point id and stored payload of an indexed frame; :class:`FrameNotIndexed` if none."""
    pid = point_id(*parse_image_id(image_id))
    payload = index.payloads([pid]).get(pid)
    if payload is None:
        raise FrameNotIndexed(f"frame {image_id} is not in the index")
    return pid, payload


def thumbnail_url(payload: dict[str, Any], size: int = THUMBNAIL_SIZE) -> str:
    """The relative URL of a result's thumbnail: immutable while the frame's checkpoint stands."""
    params = {"size": size, "v": str(payload.get("checkpoint_version") or "")[:16]}
    return f"/frames/{payload['image_id']}?{urlencode(params)}"


class FrameReader:
    """Reads indexed frames' pictures from the URLs the pipeline stored, with the frame sources'
    own reader (:func:`read_frame_image`): ``file://`` through :class:`LocalFolderSource`,
    ``s3://`` and S3 http(s) URLs through :class:`S3FrameSource` (one per bucket, sharing one
    boto3 client); video frame urls (``<video url>#frame=N&t=S``) are decoded at that frame."""

    def __init__(self, client_factory: Callable[[], Any], *, endpoint_url: str | None, max_bytes: int, max_pixels: int) -> None:
        self._client_factory = client_factory
        self._client: Any = None
        self.endpoint_url, self.max_bytes, self.max_pixels = endpoint_url, max_bytes, max_pixels
        # Reading a file:// URL does not depend on the source's root.
        self._local = LocalFolderSource(Path("/"), max_bytes=max_bytes)
        self._s3: dict[str, S3FrameSource] = {}
        self._lock = threading.Lock()

    def image(self, payload: dict[str, Any]) -> Image.Image:
        """The frame as an RGB image (an image file's, or a video file's frame decoded at its
        position); :class:`FrameUnavailable` when it cannot be read."""
        url = str(payload.get("url", ""))
        try:
            return read_frame_image(self._source(url), url, max_pixels=self.max_pixels)
        except FrameReadError as exc:
            status = 404 if exc.missing else 503 if exc.transient else 502
            raise FrameUnavailable(status, f"frame {payload.get('image_id')}: {exc.reason}") from exc
        except ImageDecodeError as exc:
            raise FrameUnavailable(502, f"frame {payload.get('image_id')}: {exc.reason}") from exc

    def _source(self, url: str) -> LocalFolderSource | S3FrameSource:
        scheme = _scheme(url)
        if scheme == "file":
            return self._local
        if scheme not in ("s3", "http", "https"):
            raise FrameUnavailable(502, f"stored frame URL has an unsupported scheme {scheme!r}")
        try:
            bucket = parse_s3_url(url, self.endpoint_url).bucket
        except S3UrlError as exc:
            raise FrameUnavailable(502, f"stored frame URL is not an S3 URL: {exc}") from None
        with self._lock:  # request threads share one client and one source per bucket
            if bucket not in self._s3:
                if self._client is None:
                    self._client = self._client_factory()
                self._s3[bucket] = S3FrameSource(self._client, f"s3://{bucket}/", max_bytes=self.max_bytes, endpoint_url=self.endpoint_url)
            return self._s3[bucket]


def parse_box(text: str | None) -> tuple[int, int, int, int] | None:
    """``x,y,w,h`` (already matched against :data:`~search_service.schemas.BOX_PATTERN`) as ints."""
    if text is None:
        return None
    x, y, w, h = (int(p) for p in text.split(","))
    return x, y, w, h


def render_jpeg(image: Image.Image, size: int | None, box: tuple[int, int, int, int] | None) -> bytes:
    """``image`` scaled to ``size`` (longer side) with ``box`` (frame pixels) drawn, as JPEG bytes."""
    scale = 1.0
    if size is not None and max(image.size) > size:
        scale = size / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BICUBIC, reducing_gap=3.0)
    if box is not None:
        x, y, w, h = (v * scale for v in box)
        width = max(2, round(max(image.size) / 160))
        draw = ImageDraw.Draw(image)
        # Scaled down, a box can be thinner than a pixel: keep its far corner at or after its near one
        # (PIL refuses the rectangle otherwise). Parts outside the image are clipped by PIL.
        draw.rectangle((x, y, max(x, x + w - 1), max(y, y + h - 1)), outline=(255, 196, 0), width=width)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _etag(payload: dict[str, Any], size: int | None, box: tuple[int, int, int, int] | None) -> str:
    key = f"{payload.get('checkpoint_version')}|{payload.get('url')}|{size}|{box}"
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


def if_none_match(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header matches ``etag`` (RFC 9110 13.1.2): ``*`` matches any
    current representation; otherwise a list of entity tags compared weakly (``W/`` ignored)."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


async def get_frame(request: Request) -> Response:
    """The handler of ``GET /frames/{image_id}`` (see the module docstring)."""
    state = request.state.service
    searcher = state.searcher()  # 503 while the index is not open
    params = request.query_params
    size = query_param(request, "size", FRAME_SIZE)
    box = parse_box(query_param(request, "box", BOX))
    _, payload = await run_in_threadpool(indexed_payload, searcher.index, request.path_params["image_id"])
    etag = _etag(payload, size, box)
    current = params.get("v") == str(payload.get("checkpoint_version") or "")[:16]
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable" if current else "private, no-cache"}
    if if_none_match(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    reader: FrameReader = state.frame_reader

    def render() -> bytes:
        return render_jpeg(reader.image(payload), size, box)

    return Response(await run_in_threadpool(render), media_type="image/jpeg", headers=headers)
