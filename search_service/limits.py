"""Bounds on what one request may cost the service, and the guard that enforces the HTTP ones.

:class:`RequestGuard` is a pure ASGI middleware around every route. It counts request body bytes
as the route receives them and answers 413 the moment a body passes its limit, so an oversized
body is never spooled to disk or held in memory: JSON routes get ``MAX_JSON_BYTES``, the upload
route ``MAX_UPLOAD_BYTES`` plus room for the form around the file. A declared ``Content-Length``
over the limit is refused before a byte of the body is read. A body that has not arrived within
``BODY_TIMEOUT_S`` of the request's headers is answered with 408, so a slow client cannot hold a
connection and a worker's buffers open for as long as it likes.

The guard also answers an unexpected server error with a JSON 500 itself (the traceback goes to
the log). Starlette's own 500 handler re-raises the exception after answering, and uvicorn then
resets the connection, so a client on a kept-alive connection saw its next request fail too.

Header read time, keep-alive and connection counts are the server's: see ``search_service.__main__``.
The query-image bounds (``MAX_QUERY_PIXELS``, ``MAX_QUERY_PATCHES``) are applied in
``search_service.search``; they live here so that all per-request bounds are read in one place.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resources.settings import SettingsError

log = logging.getLogger(__name__)

# Room for the multipart framing around the uploaded file: boundaries, part headers and the form
# fields beside it (top_k, filters). A form of the documented fields is a few hundred bytes.
MULTIPART_OVERHEAD = 64 * 1024

# Every route that reads a multipart form (a file upload): they get the upload limit, not the JSON one.
UPLOAD_PATHS = ("/search/image/upload", "/search/hybrid/upload")

# The key under which routes find the limits in ``request.state``.


@dataclass(frozen=True)
class RequestLimits:
    """Per-request bounds; the env var named on each field configures it."""

    # MAX_JSON_BYTES: body limit of every JSON route. The largest legitimate body is an ingest batch
    # of 10,000 items (the batch maximum): ~130 bytes an item with typical S3 URLs (1.3 MB), so 8 MiB
    # leaves room for URLs six times as long while a 150 MB body is refused after 8 MiB.
    max_json_bytes: int = 8 * 1024 * 1024
    # BODY_TIMEOUT_S: the whole body must arrive within this many seconds of the headers. 30 s
    # carries a 20 MiB upload at ~6 Mbit/s and a 4 MB phone photo at ~1 Mbit/s.
    body_timeout_s: float = 30.0
    # MAX_QUERY_PIXELS: query images with more pixels are scaled down (aspect kept) before they are
    # encoded. 3840x2160: a 4K frame is searched as it is, a 12 MP phone photo at ~2/3 of its side.
    max_query_pixels: int = 3840 * 2160
    # MAX_QUERY_PATCHES: query patches embedded for rerank, subsampled uniformly above this. 144 is
    # what a 1080p frame gets at the default patch settings, so frame-sized queries are unchanged;
    # on ViT-B-32 it bounds the patch encode to ~4 s on 2 CPU cores (39 crops/s), well under 0.1 s on a GPU.
    max_query_patches: int = 144

    def __post_init__(self) -> None:
        for name, value in (
            ("MAX_JSON_BYTES", self.max_json_bytes),
            ("BODY_TIMEOUT_S", self.body_timeout_s),
            ("MAX_QUERY_PIXELS", self.max_query_pixels),
            ("MAX_QUERY_PATCHES", self.max_query_patches),
        ):
            if not value > 0:
                raise SettingsError(f"{name} must be positive, got {value}")


def request_limits_from_env(env: Mapping[str, str] | None = None) -> RequestLimits:
    """The limits from MAX_JSON_BYTES, BODY_TIMEOUT_S, MAX_QUERY_PIXELS and MAX_QUERY_PATCHES."""
    env = os.environ if env is None else env
    defaults = RequestLimits()
    values: dict[str, float] = {}
    for name, field, kind in (
        ("MAX_JSON_BYTES", "max_json_bytes", int),
        ("BODY_TIMEOUT_S", "body_timeout_s", float),
        ("MAX_QUERY_PIXELS", "max_query_pixels", int),
        ("MAX_QUERY_PATCHES", "max_query_patches", int),
    ):
        raw = env.get(name, "").strip()
        try:
            values[field] = kind(raw) if raw else getattr(defaults, field)
        except ValueError:
            raise SettingsError(f"{name} must be a {'number' if kind is float else 'whole number'}, got {raw!r}") from None
    return RequestLimits(**values)  # type: ignore[arg-type]


class RequestRefused(Exception):
    """The request's body is refused while it is being read; ``status`` and ``detail`` are the answer."""

    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BodyTooLarge(RequestRefused):
    status = 413


class BodyTooSlow(RequestRefused):
    status = 408


class RequestGuard:
    """Pure ASGI middleware: body size and time limits, and JSON 500s that keep the connection.

    ``max_upload_bytes`` is the upload route's file limit (MAX_UPLOAD_BYTES); the other limits
    come from ``limits`` (default: the environment); the app hands the same ``limits`` to its
    searches for the query-image bounds.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_upload_bytes: int,
        limits: RequestLimits | None = None,
        upload_paths: Collection[str] = UPLOAD_PATHS,
    ) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        # Read here, when Starlette builds its middleware stack at start-up: a bad value stops the
        # service from starting instead of failing requests.
        self.limits = limits or request_limits_from_env()
        self.upload_paths = frozenset(upload_paths)

    def body_limit(self, path: str) -> tuple[int, str]:
        """The body limit for ``path`` in bytes and the setting that names it."""
        if path in self.upload_paths:
            return self.max_upload_bytes + MULTIPART_OVERHEAD, "MAX_UPLOAD_BYTES"
        return self.limits.max_json_bytes, "MAX_JSON_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.body_limit(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            # Refused from the header: not one byte of the body is read.
            await _answer(scope, receive, send, 413, f"request body of {declared:,} bytes is over the limit of {limit:,} bytes ({setting})")
            return

        deadline = time.monotonic() + self.limits.body_timeout_s
        received = 0
        body_done = not _has_body(scope, declared)
        started = False

        async def guarded_receive() -> Message:
            nonlocal received, body_done
            if body_done:
                return await receive()  # after the body: only http.disconnect comes, whenever it comes
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())) as waited:
                message = await receive()
            if waited.cancelled_caught:
                raise BodyTooSlow(f"the request body did not arrive within {self.limits.body_timeout_s:g} s (BODY_TIMEOUT_S)")
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(f"request body is over the limit of {limit:,} bytes ({setting})")
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracked_send)
        except RequestRefused as exc:
            if started:
                raise
            await _answer(scope, receive, send, exc.status, exc.detail)
        except Exception:
            if started:
                raise  # half a response cannot be mended: the server closes the connection
            # Not a client error (those are answered by the routes' handlers): a bug or an outage
            # nobody mapped. The caller gets a JSON 500 on a connection that stays usable; the
            # traceback goes to the log, not to the caller.
            log.exception("unhandled error answering %s %s", scope.get("method"), scope.get("path"))
            # The connection is kept unless the body is unread (reading it now could take forever).
            await _answer(scope, receive, send, 500, "internal server error (logged)", close=not body_done)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            # The HTTP server has already refused malformed values (h11 and httptools both do).
            return int(value) if value.isdigit() else None
    return None


def _has_body(scope: Scope, declared: int | None) -> bool:
    chunked = any(name == b"transfer-encoding" for name, _ in scope["headers"])
    return chunked or bool(declared)


async def _answer(scope: Scope, receive: Receive, send: Send, status: int, detail: str, *, close: bool = True) -> None:
    # "Connection: close" after a refused body: the rest of it is still on the wire, and reading it
    # to reuse the connection would be the very work the refusal saves.
    headers = {"Connection": "close"} if close else None
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)
