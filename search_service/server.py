"""The HTTP server settings the service runs under: uvicorn with every wait and size bounded.

uvicorn's defaults leave three things open that a public endpoint needs closed:

- **header time**: uvicorn has no header timeout. A client that opens a connection and sends its
  headers a byte at a time (or nothing at all) holds the connection forever. The protocol below
  closes it with a 408 when a request's headers are not complete ``HEADER_TIMEOUT_S`` after the
  connection opened or the previous response ended.
- **connections**: ``limit_concurrency`` is unset by default; here ``LIMIT_CONCURRENCY``
  connections and tasks at once, beyond which uvicorn answers 503 at once.
- **parser**: with ``httptools`` installed uvicorn picks it, and it takes a 100 KB header and a
  request line with a CR/LF in its path. h11 refuses both (400) and bounds a request's head to
  ``MAX_HEADER_BYTES``. Its parsing cost is nothing next to one model forward pass.

Body size and body time are bounded in the app itself (``search_service.limits``), keep-alive
by uvicorn (``TIMEOUT_KEEP_ALIVE_S``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from resources.settings import SettingsError
from search_service.logs import json_log_config

_TIMEOUT_BODY = b"request headers did not arrive in time (HEADER_TIMEOUT_S)"
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


@dataclass(frozen=True)
class ServerSettings:
    """uvicorn's bounds; the env var named on each field configures it."""

    host: str = "127.0.0.1"  # HOST (``--host``)
    port: int = 8000  # PORT (``--port``)
    header_timeout_s: float = 10.0  # HEADER_TIMEOUT_S: a request's headers must be in within this
    timeout_keep_alive_s: int = 5  # TIMEOUT_KEEP_ALIVE_S: an idle kept-alive connection is closed after this
    limit_concurrency: int = 100  # LIMIT_CONCURRENCY: connections + tasks at once; more get 503
    max_header_bytes: int = 16 * 1024  # MAX_HEADER_BYTES: request line and headers (h11's incomplete-event limit)
    graceful_shutdown_s: int = 30  # GRACEFUL_SHUTDOWN_S: running requests get this long to finish on shutdown
    log_format: str = "text"  # LOG_FORMAT: text (uvicorn's) or json (one object a line, search_service.logs)

    def __post_init__(self) -> None:
        for name, value in (
            ("HEADER_TIMEOUT_S", self.header_timeout_s), ("TIMEOUT_KEEP_ALIVE_S", self.timeout_keep_alive_s),
            ("LIMIT_CONCURRENCY", self.limit_concurrency), ("MAX_HEADER_BYTES", self.max_header_bytes),
            ("GRACEFUL_SHUTDOWN_S", self.graceful_shutdown_s), ("PORT", self.port),
        ):
            if not value > 0:
                raise SettingsError(f"{name} must be positive, got {value}")
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"LOG_FORMAT must be text or json, got {self.log_format!r}")


def server_settings_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> ServerSettings:
    """Settings from HOST, PORT, HEADER_TIMEOUT_S, TIMEOUT_KEEP_ALIVE_S, LIMIT_CONCURRENCY,
    MAX_HEADER_BYTES, GRACEFUL_SHUTDOWN_S and LOG_FORMAT; ``overrides`` that are not None win."""
    env = os.environ if env is None else env
    defaults = ServerSettings()
    values: dict[str, Any] = {}
    for name, field in (
        ("HOST", "host"), ("PORT", "port"), ("HEADER_TIMEOUT_S", "header_timeout_s"),
        ("TIMEOUT_KEEP_ALIVE_S", "timeout_keep_alive_s"), ("LIMIT_CONCURRENCY", "limit_concurrency"),
        ("MAX_HEADER_BYTES", "max_header_bytes"), ("GRACEFUL_SHUTDOWN_S", "graceful_shutdown_s"),
        ("LOG_FORMAT", "log_format"),
    ):
        default = getattr(defaults, field)
        raw = env.get(name, "").strip()
        try:
            values[field] = type(default)(raw) if raw else default
        except ValueError:
            raise SettingsError(f"{name} must be a {type(default).__name__}, got {raw!r}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ServerSettings(**values)


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a header timeout (``header_timeout_s``, set by :func:`server_config`).

    The clock starts when the connection opens and again when a response ends; if no new request
    has been parsed by then, the client gets a 408 and the connection is closed.
    """

    header_timeout_s = ServerSettings.header_timeout_s

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        # The request being waited for is the one after the current cycle: a new cycle object
        # appears exactly when its headers have been parsed.
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout, self.cycle)

    def _header_timeout(self, cycle_before: object) -> None:
        waiting = self.cycle is cycle_before and (self.cycle is None or self.cycle.response_complete)
        if waiting and not self.transport.is_closing():
            self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()


def server_config(app: Any, settings: ServerSettings | None = None, **uvicorn_options: Any) -> uvicorn.Config:
    """A uvicorn config for ``app`` with the bounds of ``settings`` (default: the environment)."""
    settings = settings or server_settings_from_env()
    if settings.log_format == "json":
        uvicorn_options.setdefault("log_config", json_log_config(str(uvicorn_options.get("log_level") or "info").upper()))
    protocol = type("BoundedH11Protocol", (HeaderTimeoutH11Protocol,), {"header_timeout_s": settings.header_timeout_s})
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=settings.timeout_keep_alive_s,
        limit_concurrency=settings.limit_concurrency,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
        **uvicorn_options,
    )
