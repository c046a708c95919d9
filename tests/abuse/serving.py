"""Serve an app under the bounded uvicorn configuration of ``python -m search_service``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import uvicorn

from search_service.server import ServerSettings, server_config
from tests.servers import free_port, wait_http_ok


@contextmanager
def running_bounded(app: Any, settings: ServerSettings = ServerSettings()) -> Iterator[str]:
    """Serve ``app`` in a thread with :func:`search_service.server.server_config` until the block
    ends; yields the base URL once ``/healthz`` answers 200."""
    settings = replace(settings, port=free_port())
    server = uvicorn.Server(server_config(app, settings, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.port}"
    try:
        wait_http_ok(f"{base}/healthz", alive=thread.is_alive)
        yield base
    finally:
        server.should_exit = True
        thread.join(10)
