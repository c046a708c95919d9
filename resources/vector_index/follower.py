"""Keep the index equal to the published checkpoints: the index is a materialized view of them.

A checkpoint store (a folder or ``s3://bucket/prefix``, see ``resources.checkpoints.store``) holds
one ``video_<id>.parquet`` per video, each carrying its content version in the footer. Whoever
holds the index applies what changed:

* in server mode (QDRANT_URL) the pipeline syncs each video right after writing its checkpoint;
* in embedded mode only one process can hold the Qdrant Edge shard. The pipeline syncs when it
  can take the shard (:func:`sync_or_defer`); while the search service holds it, the service's
  :class:`CheckpointFollower` polls the folder and applies new versions within seconds. Syncing a
  version that is already applied is a no-op, so both may try the same checkpoint safely.

* on a Qdrant server (QDRANT_URL) the pipeline syncs, and the search service runs a follower that
  only removes (``apply=False``): deleting a video's checkpoint deletes its points there too.

A follower that starts (a service restart) first reconciles: videos the index holds without a
published checkpoint - removed while nobody followed - are deleted. A folder that is missing or
lists no checkpoint at all reads as an unmounted volume and never deletes anything (to empty the
index on purpose, delete the collection).

``python -m resources.vector_index.follower`` runs a follower on its own (holding the embedded shard).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from resources.checkpoints.format import META_KEY, content_version
from resources.checkpoints.store import CheckpointStore, published_key
from resources.vector_index import IndexBusyError, SyncResult, VectorIndex
from resources.vector_index.schema import IndexSchema, points_from_checkpoint

log = logging.getLogger(__name__)

def _sync_table(index: VectorIndex, video_id: int, table: pa.Table) -> SyncResult:
    meta = (table.schema.metadata or {}).get(META_KEY)
    version = str(json.loads(meta).get("version") or "") if meta else ""
    version = version or content_version(table)  # checkpoints written before versions existed
    return index.sync_video(video_id, points_from_checkpoint(table, index.schema.dim, version), version)


def sync_checkpoint(index: VectorIndex, video_id: int, path: Path) -> SyncResult:
    """Sync one video's points to the checkpoint at ``path`` (a no-op if that version is in).

    The file is opened once and its version taken from the table read: opening the path twice
    (footer, then rows) could pair one version's number with another's rows if it is replaced."""
    with pa.OSFile(str(path)) as handle:
        return _sync_table(index, video_id, pq.read_table(handle))


def sync_from_store(index: VectorIndex, store: CheckpointStore, video_id: int) -> SyncResult:
    """Sync one video to its published checkpoint in ``store`` (a folder or S3), read consistently."""
    return _sync_table(index, video_id, store.read_table(published_key(video_id)))


class SyncSession:
    """Syncs many videos through one opening of the index (a run's videos), instead of opening it
    per video: opening and closing an embedded shard of 10,000 frames took 0.6-0.9 s (2-core
    AMD EPYC), longer than syncing a video. ``hold_s`` bounds how long an embedded shard is kept
    between syncs before it is released (and reopened at the next sync): the search service and
    other runs wait for the shard at most that long. None holds it until :meth:`close` (a Qdrant
    server, which has no lock). Use as a context manager, or call :meth:`close`."""

    def __init__(self, open_index: Callable[[], VectorIndex], hold_s: float | None = None) -> None:
        self._open, self.hold_s = open_index, hold_s
        self._index: VectorIndex | None = None
        self._opened_at = 0.0
        self.opened = 0  # times the index was opened (for tests and logs)

    def sync_or_defer(self, video_id: int, path: Path | CheckpointStore) -> SyncResult | None:
        """As :func:`sync_or_defer`, through the session's open index (opened here if need be)."""
        if self._index is not None and self.hold_s is not None and time.monotonic() - self._opened_at > self.hold_s:
            self.release()
        if self._index is None:
            try:
                self._index = self._open()
            except IndexBusyError:
                log.info("index held by another process: video %s will be applied by its follower", video_id)
                return None
            self._opened_at, self.opened = time.monotonic(), self.opened + 1
        if isinstance(path, CheckpointStore):
            return sync_from_store(self._index, path, video_id)
        return sync_checkpoint(self._index, video_id, path)

    def release(self, optimize: bool = True) -> None:
        """Optimize and close the index if open: another process may take it now."""
        index, self._index = self._index, None
        if index is not None:
            with index:
                if optimize:
                    index.optimize()

    close = release

    def __enter__(self) -> SyncSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.release(optimize=exc_type is None)  # after a failure only close: nothing to finish


def sync_or_defer(open_index: Callable[[], VectorIndex], video_id: int, path: Path | CheckpointStore) -> SyncResult | None:
    """Sync now if the index can be opened; ``None`` if another process holds the embedded shard
    (its follower applies the checkpoint instead). ``open_index`` opens a :class:`VectorIndex`;
    ``path`` is the checkpoint file, or the store whose published checkpoint of the video counts.
    A session of one sync: the index is optimized and closed before it returns."""
    with SyncSession(open_index) as session:
        return session.sync_or_defer(video_id, path)


@dataclass
class CheckpointFollower:
    """Applies new and changed checkpoints under ``root`` to ``index`` and removes videos whose
    checkpoint is gone: at its first poll every video the index holds without a checkpoint
    (:meth:`reconcile`), afterwards those it saw vanish. Failures are logged and retried on the
    next poll. ``root`` is a folder, an ``s3://bucket/prefix`` URI or a :class:`CheckpointStore`.

    ``apply=False`` only removes: for a Qdrant server, where the pipeline syncs each video itself."""

    index: VectorIndex
    root: Path | str | CheckpointStore
    apply: bool = True
    errors: dict[int, str] = field(default_factory=dict)  # video_id -> last error, for health
    _seen: dict[int, tuple[int, int]] = field(default_factory=dict)  # video_id -> (mtime_ns, size)
    applied: int = 0  # checkpoints synced (not counting no-ops) since start
    reconciled: bool = False  # the start-up reconcile has run (it is retried until it has)
    started_at: float = field(default_factory=time.time)
    caught_up_at: float | None = None  # wall time of the last poll that left nothing unapplied
    _warned_empty: bool = False

    def __post_init__(self) -> None:
        self.store = self.root if isinstance(self.root, CheckpointStore) else CheckpointStore(self.root)

    def lag_seconds(self, now: float | None = None) -> float:
        """Seconds since the index was last known equal to the published checkpoints (since
        start while it never was): grows while polls fail or checkpoints cannot be applied."""
        now = time.time() if now is None else now
        return max(0.0, now - (self.caught_up_at if self.caught_up_at is not None else self.started_at))

    def poll(self) -> list[SyncResult]:
        """Apply what changed under ``root`` since the last poll (the first poll reconciles)."""
        results = []
        listed_at = time.time()  # everything published before this is applied when the poll ends well
        current = self.store.published()
        if not self.reconciled:
            try:
                self.reconcile(current)
            except Exception:  # noqa: BLE001 - syncing must go on; retried on the next poll
                log.exception("reconciling the index with %s failed; retrying on the next poll", self.root)
        for video_id, listed in sorted(current.items()):
            try:
                key = (listed.mtime_ns, listed.size)  # from the listing: no request per unchanged video
                if self._seen.get(video_id) == key:
                    continue
                if not self.apply:
                    self._seen[video_id] = key
                    continue
                result = sync_from_store(self.index, self.store, video_id)
            except FileNotFoundError:
                continue  # replaced between listing and reading: the next poll sees the new one
            except Exception as exc:  # noqa: BLE001 - one bad checkpoint must not stop the others
                self.errors[video_id] = f"{type(exc).__name__}: {exc}"
                log.error("video %s: checkpoint %s not applied: %s", video_id, self.store.uri(listed.key), exc)
                continue
            self._seen[video_id] = key
            self.errors.pop(video_id, None)
            if not result.skipped:
                self.applied += 1
                log.info("video %s: applied checkpoint %s (%d points)", video_id, result.version, result.points)
            results.append(result)
        gone = set(self._seen) - set(current)
        if gone and self._looks_mounted(current):
            for video_id in gone:
                # Forgotten: a checkpoint published again since the listing is applied next poll.
                del self._seen[video_id]
                self._remove(video_id, "checkpoint removed, points deleted")
        if any(not r.skipped for r in results):
            self.index.optimize()
        if self.reconciled and not self.errors:
            self.caught_up_at = listed_at
        return results

    def reconcile(self, listed: Mapping[int, object]) -> list[int]:
        """Delete the videos the index holds that have no checkpoint in ``listed`` (a listing of
        ``root`` taken just before): those removed while no follower ran. Returns them. Deletes
        nothing (and stays pending) while the folder looks unmounted."""
        indexed = self.index.video_ids()  # one facet: ~0.1-0.3 s at 100,000 videos
        if not indexed:
            self.reconciled = True
            return []
        if not self._looks_mounted(listed):
            return []
        # The pipeline publishes a checkpoint before it syncs the video, so a video that reached
        # the index after ``listed`` was taken has a checkpoint in this second listing.
        stale = sorted(indexed - set(listed) - set(self.store.published()))
        for video_id in stale:
            # Not in _seen: a checkpoint published between that listing and this delete is
            # applied (again) by the next poll.
            self._seen.pop(video_id, None)
            self._remove(video_id, "in the index without a checkpoint, points deleted")
        self.reconciled = True
        return stale

    def _remove(self, video_id: int, why: str) -> None:
        """Delete the video's points; then, if a checkpoint was published meanwhile (the video
        re-run after its removal), sync it again. The pipeline publishes before it syncs, so its
        sync either follows this delete or its checkpoint is seen here: no re-run is lost, also
        where this follower does not apply checkpoints itself."""
        self.index.delete_video(video_id)
        log.info("video %s: %s", video_id, why)
        if self.store.exists(published_key(video_id)):
            try:
                sync_from_store(self.index, self.store, video_id)
            except FileNotFoundError:
                return  # removed again
            log.info("video %s: published again meanwhile, applied", video_id)

    def _looks_mounted(self, listed: Mapping[int, object]) -> bool:
        """Whether deleting is safe: False for a missing folder or one that lists no checkpoint
        (asked only when the index holds videos): an unmounted volume looks like that, and it must
        never empty the index."""
        if listed:
            self._warned_empty = False
            return True
        if not self._warned_empty:
            log.warning("checkpoint folder %s is missing or empty: not deleting anything from the index", self.root)
            self._warned_empty = True
        return False

    def run(self, stop: threading.Event, interval_s: float = 2.0) -> None:
        """Poll until ``stop`` is set."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - keep following; the error is in the log
                log.exception("checkpoint follower poll failed")
            stop.wait(max(0.0, interval_s - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> int:
    """Hold the embedded index and follow a checkpoint folder until interrupted."""
    from resources.settings import index_settings_from_env

    parser = argparse.ArgumentParser(prog="python -m resources.vector_index.follower", description=main.__doc__)
    parser.add_argument("--checkpoints", default="var/checkpoints", help="folder or s3://bucket/prefix (CHECKPOINT_DIR)")
    parser.add_argument("--dim", type=int, required=True, help="vector dimension of the checkpoints")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = index_settings_from_env()
    schema = IndexSchema(settings.collection, args.dim)
    with VectorIndex.open(schema, url=settings.url, path=settings.path, api_key=settings.api_key, lock_timeout_s=60, layout=settings.layout(schema)) as index:
        stop = threading.Event()
        try:
            CheckpointFollower(index, args.checkpoints).run(stop, args.interval)
        except KeyboardInterrupt:
            stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
