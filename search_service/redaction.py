"""What of the pipeline's failure text a client may see: server paths and internal endpoints out.

A run's failure reason and a skipped frame's reason are written for operators - ``no such file
/srv/videos/12/frame_1.png``, ``no frame manifest at var/checkpoints/manifests/video_12.json``,
``Read timeout on endpoint URL: "http://10.0.3.4:6333/..."`` - and the job views of ``/jobs`` and
the ingest routes hand them to clients. :class:`Redactor` replaces the server's own file paths
(absolute paths, ``file://`` URIs and the configured checkpoint folder) with ``<server path>`` and
the internal endpoints it is told of (Dagster, Qdrant) with ``<internal endpoint>``. What the
client sent or can read - ``s3://`` URLs, http(s) URLs of S3 - stays: it is how the client knows
which frame failed. Operators read the whole text in the Dagster UI.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

SERVER_PATH = "<server path>"
INTERNAL_ENDPOINT = "<internal endpoint>"

_FILE_URI = re.compile(r"file://[^\s'\"`),;:]*")
# An absolute path: a "/" that starts a word (not the "/" of "s3://b/k" or "http://h:1/p"), then
# at least one more segment, so a lone "/" or "and/or" is left alone.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~%-])/[^\s'\"`),;:/]+(?:/[^\s'\"`),;:/]*)+|(?<![\w:/.~%-])/[^\s'\"`),;:/]+\.\w+")


class Redactor:
    """``redactor(text)``: ``text`` with server paths and ``endpoints`` replaced (see the module)."""

    def __init__(self, private_roots: Iterable[str | None] = (), endpoints: Iterable[str | None] = ()) -> None:
        roots = sorted({r.rstrip("/") for r in private_roots if r and "://" not in r and r.strip("/.")}, key=len, reverse=True)
        # A relative root (var/checkpoints) as a word of its own, with what follows it in the path.
        self._roots = [re.compile(rf"(?<![\w/.-]){re.escape(root)}(?:/[^\s'\"`),;:]*)?") for root in roots]
        origins = set()
        for url in endpoints:
            parts = urlsplit(url or "")
            if parts.scheme in ("http", "https") and parts.netloc:
                origins.add(f"{parts.scheme}://{parts.netloc}")
        self._endpoints = [re.compile(rf"{re.escape(o)}[^\s'\"`),;]*") for o in sorted(origins, key=len, reverse=True)]

    def __call__(self, text: str) -> str:
        for pattern in self._endpoints:
            text = pattern.sub(INTERNAL_ENDPOINT, text)
        text = _FILE_URI.sub(SERVER_PATH, text)
        for pattern in self._roots:
            text = pattern.sub(SERVER_PATH, text)
        return _ABSOLUTE_PATH.sub(SERVER_PATH, text)
