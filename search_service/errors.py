"""The service's client-facing error: :class:`HTTPProblem`, answered as ``{"detail": ...}`` with its
status by the exception handler that ``app.py`` installs."""

from __future__ import annotations

from typing import Any


class HTTPProblem(Exception):
    """An error the client can act on: ``status`` and a ``detail`` naming what to fix."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail
