"""A local library's changes, from what the file system keeps: directory modification times.

Creating, deleting or renaming a file changes its directory's mtime, so a video whose folder (or
its ``ingest/`` batch folder) changed since the last look is one to list again, and nothing else
is: one ``scandir`` of the root and a ``stat`` or two a video, with no file read. What this does
not see - a file rewritten in place under the same name, a change in a deeper sub-folder - the
full listing (the reconcile path) finds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from resources.change_feeds.batch import ChangeBatch
from resources.frame_sources.base import INGEST_DIR, FrameSourceError
from resources.frame_sources.manifests import _video_id

# A change in the last moments before a look may carry an mtime just under the time the look
# began (coarse file-system clocks, a write racing the scan): look back this far. A change seen
# twice requests the same run key, which Dagster skips.
SLACK_NS = 2_000_000_000


class FolderChangeFeed:
    """The videos under ``root`` whose folders changed since ``since_ns`` (a previous batch's
    ``resume``). With no ``since_ns`` - the first look - it reports nothing and starts from now:
    the library as it was is the full listing's to take in."""

    def __init__(self, root: Path, since_ns: int | None) -> None:
        self.root, self.since_ns = Path(root), since_ns

    def poll(self, *, budget_s: float = 0.0) -> ChangeBatch:
        """The videos whose folders changed (one scan of the root: ``budget_s`` does not bound it)."""
        started = time.time_ns()
        batch = ChangeBatch(resume=started - SLACK_NS)
        if self.since_ns is None:
            return batch
        try:
            entries = list(os.scandir(self.root))
        except OSError as exc:
            raise FrameSourceError(f"cannot list the video root {self.root}: {exc}", transient=True) from exc
        for entry in entries:
            try:
                video_id = _video_id(entry.name)
            except ValueError:
                continue  # an id out of range: the listing reports it
            if video_id is None or not entry.is_dir():
                continue
            if _changed_since(entry.path, self.since_ns):
                batch.video_ids.add(video_id)
        return batch

    def ack(self, batch: ChangeBatch) -> None:
        """Nothing to delete: the next look starts from ``batch.resume``."""


def _changed_since(folder: str, since_ns: int) -> bool:
    """Whether the video folder, or its batch folder, was modified at or after ``since_ns``."""
    for path in (folder, os.path.join(folder, INGEST_DIR)):
        try:
            if os.stat(path).st_mtime_ns >= since_ns:
                return True
        except FileNotFoundError:
            continue
    return False
