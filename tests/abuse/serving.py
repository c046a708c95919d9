"""Serve an app under the bounded uvicorn configuration of ``python -m search_service``."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from search_service.server import ServerSettings, server_config
from tests.servers import running_uvicorn


def running_bounded(app: Any, settings: ServerSettings = ServerSettings()) -> AbstractContextManager[str]:
    """Serve ``app`` in a thread with :func:`search_service.server.server_config` until the block
    ends; yields the base URL once ``/healthz`` answers 200."""
    return running_uvicorn(app, lambda port: server_config(app, replace(settings, host="127.0.0.1", port=port), log_level="warning"))
