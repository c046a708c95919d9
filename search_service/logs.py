"""JSON log lines (``LOG_FORMAT=json``): one object per record, for log shippers.

Each line holds ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` and, when present,
``exc_info``. uvicorn's access records also carry ``client``, ``method``, ``path``, ``status``.
Used through :func:`json_log_config`, a ``logging.config.dictConfig`` for uvicorn's ``log_config``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # uvicorn.access formats "%s - "%s %s HTTP/%s" %d" from these args: keep them as fields.
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _version, status = record.args
            entry.update(client=client, method=method, path=path, status=status)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def json_log_config(level: str = "INFO") -> dict[str, Any]:
    """A dictConfig sending the root, ``uvicorn`` and ``uvicorn.access`` loggers to stderr as JSON."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            # propagate=False: uvicorn's loggers would otherwise print each line twice via root.
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }
