"""The facade: one index of two collections (see :mod:`.layout`), kept equal to the checkpoints
by per-video sync, and searched with candidates from both the global and the patch vectors.

**Why candidates come from patches.** A small object barely moves a frame's global vector, so a
rerank that only reorders the global search's pool never sees the frames that hold it once the
library is larger than the pool. Every patch vector is therefore also a point of the companion
collection with an HNSW graph: a query's nearest patches bring their frames in. A search with
rerank takes the union of the global pool (``pool`` frames) and the frames of the nearest
patches (``patch_pool`` per query row, batched), scores exactly that union inside Qdrant - the
global cosine, and Qdrant's MaxSim over the frame's stored patches - and fuses the two scores
(:mod:`.fusion`). Patch vectors never leave the engine; only scores do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resources.vector_index import queries as queries_
from resources.vector_index.backend import Backend, StoredPoint, VectorQuery, Where
from resources.vector_index.companions import COMPANION_RUNS_REVISION, CompanionRuns, companion_runs
from resources.vector_index.fusion import DEFAULT_ALPHA, DEFAULT_FUSION, fuse
from resources.vector_index.layout import PATCH_POINT_VECTOR, IndexLayout, index_layout, patch_payload, patch_point_id
from resources.vector_index.schema import (
    GLOBAL_VECTOR,
    PATCH_VECTOR,
    IndexPoint,
    IndexSchema,
    SchemaMismatchError,
    SearchFilters,
    SearchHit,
    check_id,
    rerank_pool,
    validate_point,
)

UPSERT_BATCH = 512  # frames per write: ~25 MB at 24 patches x 512-d
PATCH_UPSERT_BATCH = 4096  # companion points per write


@dataclass
class SyncResult:
    """What a per-video sync did. ``skipped`` is True when the index already held this version."""

    video_id: int
    version: str
    points: int
    upserted: int = 0
    deleted: int = 0
    skipped: bool = False
    seconds: float = 0.0
    indexed: int = 0  # the video's frame points counted in the index after the sync
    patch_points: int = 0  # the video's companion (patch) points the checkpoint asks for
    patches_indexed: int = 0  # ... and counted in the index after the sync


def _normalized(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norms = np.linalg.norm(vector, axis=-1, keepdims=True)
    if not np.isfinite(vector).all() or (norms == 0).any():
        raise ValueError("query vectors must be finite and non-zero")
    return vector / norms


class VectorIndex:
    """The frame index: schema management, idempotent per-video sync and search.

    Open with :meth:`open`; use as a context manager so an embedded index is released.
    """

    def __init__(self, backend: Backend, schema: IndexSchema, layout: IndexLayout | None = None) -> None:
        self._backend = backend
        self.schema = schema
        self.layout = layout or index_layout(schema)
        self.mode = backend.kind

    @classmethod
    def open(
        cls,
        schema: IndexSchema,
        *,
        url: str | None = None,
        path: str | Path | None = None,
        api_key: str | None = None,
        lock_timeout_s: float = 0.0,
        client: Any = None,
        layout: IndexLayout | None = None,
    ) -> VectorIndex:
        """A server index when ``url`` is given (``":memory:"`` for qdrant-client's in-process
        mode; or a ready ``qdrant_client.QdrantClient`` as ``client``), else the embedded index
        under ``path``. Creates the collections if they are missing; refuses any whose schema
        differs. Raises :class:`IndexBusyError` if another process holds the embedded index (after
        waiting up to ``lock_timeout_s``)."""
        layout = layout or index_layout(schema)
        if url or client is not None:
            from resources.vector_index.server import ServerBackend

            backend: Backend = ServerBackend(url, api_key, client=client)
        elif path is not None:
            from resources.vector_index.edge import EdgeBackend

            names = [c.name for c in layout.collections]
            backend = EdgeBackend(Path(path), schema.collection, names, lock_timeout_s)
        else:
            raise ValueError("give a Qdrant url (QDRANT_URL) or an embedded index path (QDRANT_PATH)")
        try:
            index = cls(backend, schema, layout)
            index._ensure_collections()
        except BaseException:
            backend.close()
            raise
        return index

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._backend.close()

    def _ensure_collections(self) -> None:
        existing = {c.name: self._backend.existing(c.name) for c in self.layout.collections}
        if all(found is None for found in existing.values()):
            for collection in self.layout.collections:
                self._backend.create(collection, self.schema.dim)
            return
        for collection in self.layout.collections:
            expected = collection.describe(self.schema.dim)
            if existing[collection.name] != expected:
                found = existing[collection.name] or "no such collection"
                raise SchemaMismatchError(
                    f"collection {collection.name!r} exists with vectors {found}, but this code writes "
                    f"{expected}; nothing was written. Use another QDRANT_COLLECTION, or delete the "
                    f"index's collections ({', '.join(c.name for c in self.layout.collections)}) and "
                    f"sync again from the checkpoints."
                )

    # -- writes ------------------------------------------------------------------------------

    def _counts(self, video_id: int, version: str | None = None) -> tuple[int, int]:
        frames = self._backend.count(self.layout.frames.name, Where(video_id=video_id, version=version))
        return frames, self._backend.count(self.layout.patches.name, Where(video_id=video_id, version=self._companion_version(version)))

    def _companion_version(self, version: str | None) -> str | None:
        """The version companion points carry: the checkpoint's, tagged with the temporal dedup
        setting when it is on. The companion set depends on both, so a change of COMPANION_DEDUP
        alone re-syncs a video and deletes the points of the other setting (with the plain
        checkpoint version those would have counted as current and stayed). ``COMPANION_RUNS_REVISION``
        names the grouping rule, so a change of the rule re-syncs too."""
        if version is None or self.layout.companion_dedup is None:
            return version
        return f"{version}~dedup{self.layout.companion_dedup:g}{COMPANION_RUNS_REVISION}"

    def sync_video(self, video_id: int, points: Sequence[IndexPoint], version: str) -> SyncResult:
        """Make the video's frame points and patch points equal to ``points`` (one checkpoint
        ``version``) in both collections.

        Idempotent: a version already fully present in both is a no-op. Points of the video that
        are not in ``points`` are deleted from both. Both counts are verified afterwards, so an
        interrupted sync is completed by the next one (every point it wrote is rewritten).
        """
        started = time.perf_counter()
        check_id(video_id)
        if not version:
            raise ValueError("a checkpoint version is required")
        for point in points:
            if point.video_id != video_id:
                raise ValueError(f"point {point.video_id}:{point.frame_id} does not belong to video {video_id}")
            validate_point(point, self.schema.dim)
        ids = [p.id for p in points]
        if len(set(ids)) != len(ids):
            raise ValueError(f"video {video_id}: duplicate frame ids in one checkpoint")
        points = sorted(points, key=lambda p: p.frame_id)  # runs of a window are consecutive frames
        runs = companion_runs(points, self.layout.companion_dedup)
        want = (len(points), len(runs))
        result = SyncResult(video_id, version, len(points), patch_points=want[1])
        if points and self._counts(video_id) == want == self._counts(video_id, version):
            result.skipped, (result.indexed, result.patches_indexed) = True, want
            result.seconds = time.perf_counter() - started
            return result
        frames, patches = self.layout.frames.name, self.layout.patches.name
        points = [self._with_version(p, version) for p in points]
        # Frames first: a patch point found by a query always names a frame that exists, or one
        # that a query's exact scoring simply does not find (then it is left out).
        for start in range(0, len(points), UPSERT_BATCH):
            batch = points[start : start + UPSERT_BATCH]
            self._backend.upsert(frames, [self._frame_point(p) for p in batch])
            result.upserted += len(batch)
        for start in range(0, len(runs), PATCH_UPSERT_BATCH):
            chunk = range(start, min(start + PATCH_UPSERT_BATCH, len(runs)))
            self._backend.upsert(patches, [self._companion_point(points, runs, i, self._companion_version(version)) for i in chunk])
        # Every current point now carries this version: whatever else the video has is stale.
        stale = Where(video_id=video_id, not_version=version if points else None)
        result.deleted = self._backend.count(frames, stale)
        self._backend.delete(patches, Where(video_id=video_id, not_version=self._companion_version(version) if points else None))
        self._backend.delete(frames, stale)
        result.indexed, result.patches_indexed = self._counts(video_id)
        self._backend.flush()  # durable when this returns (the embedded index keeps no WAL)
        if (result.indexed, result.patches_indexed) != want:
            raise RuntimeError(
                f"video {video_id}: index holds {result.indexed} frame and {result.patches_indexed} patch points "
                f"after sync, expected {want[0]} and {want[1]}"
            )
        result.seconds = time.perf_counter() - started
        return result

    @staticmethod
    def _with_version(point: IndexPoint, version: str) -> IndexPoint:
        payload = {**point.payload, "checkpoint_version": version}
        return IndexPoint(point.video_id, point.frame_id, point.global_vector, point.patch_vectors, payload)

    @staticmethod
    def _frame_point(point: IndexPoint) -> StoredPoint:
        return StoredPoint(point.id, {GLOBAL_VECTOR: point.global_vector.tolist(), PATCH_VECTOR: point.patch_vectors.tolist()}, point.payload)

    @staticmethod
    def _companion_point(points: Sequence[IndexPoint], runs: CompanionRuns, i: int, version: str | None) -> StoredPoint:
        """Companion point ``i``: its run's first frame's window (id and vector), standing for the
        frames up to the run's last, marked with the companion ``version``."""
        first, window, last = points[int(runs.first[i])], int(runs.window[i]), points[int(runs.last[i])]
        vector = {PATCH_POINT_VECTOR: first.patch_vectors[window].tolist()}
        payload = {**patch_payload(first, last), "checkpoint_version": version}
        return StoredPoint(patch_point_id(first.video_id, first.frame_id, window), vector, payload)

    def delete_video(self, video_id: int) -> None:
        """Delete every point of the video from both collections (nothing happens if it has none)."""
        where = Where(video_id=check_id(video_id))
        for collection in (self.layout.patches.name, self.layout.frames.name):
            self._backend.delete(collection, where)
        self._backend.flush()

    def count(self, video_id: int | None = None, version: str | None = None) -> int:
        """Frame points in the index, or of one video (and checkpoint ``version``)."""
        where = Where(video_id=None if video_id is None else check_id(video_id), version=version)
        return self._backend.count(self.layout.frames.name, where)

    def count_patches(self, video_id: int | None = None, version: str | None = None) -> int:
        """Patch points (companion collection) in the index, or of one video (and ``version``)."""
        where = Where(video_id=None if video_id is None else check_id(video_id), version=self._companion_version(version))
        return self._backend.count(self.layout.patches.name, where)

    def video_ids(self) -> set[int]:
        """The ids of the videos that have frame points: one facet on the indexed ``video_id``."""
        return self._backend.video_ids(self.layout.frames.name)

    def payloads(self, ids: Sequence[str]) -> dict[str, dict]:
        """The stored payloads of those of ``ids`` (point ids) that are in the index."""
        if not ids:
            return {}
        return {pid: payload for pid, (payload, _) in self._backend.retrieve(self.layout.frames.name, ids, "all").items()}

    def frame_vectors(self, point_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """A stored frame's global vector ``(dim,)`` and patch vectors ``(patches, dim)`` (as
        stored: the patches in their compact datatype), or None if the point does not exist."""
        found = self._backend.retrieve(self.layout.frames.name, [point_id], "none", [GLOBAL_VECTOR, PATCH_VECTOR])
        if point_id not in found:
            return None
        vectors = found[point_id][1]
        return np.asarray(vectors[GLOBAL_VECTOR], np.float32), np.asarray(vectors[PATCH_VECTOR], np.float32)

    def optimize(self) -> None:
        """Build pending vector indexes (embedded mode; a server does this by itself)."""
        self._backend.optimize()

    # -- reads -------------------------------------------------------------------------------

    def search(
        self,
        vector: np.ndarray,
        *,
        top_k: int = 10,
        filters: SearchFilters = SearchFilters(),
        patch_queries: np.ndarray | None = None,
        alpha: float = DEFAULT_ALPHA,
        pool: int | None = None,
        patch_pool: int | None = None,
        fusion: str = DEFAULT_FUSION,
        trace: queries_.SearchTrace | None = None,
    ) -> list[SearchHit]:
        """Global search, or - with ``patch_queries`` ``(rows, dim)`` - a rerank of the union of
        the global pool and the frames of each row's nearest patches, by ``fusion`` of the global
        cosine and ``maxsim`` (the mean over query rows of the best cosine against the frame's
        patches); alpha 1 ranks by the global score alone, 0 by maxsim alone (:mod:`.fusion`).
        ``pool``: frames from the global search (default max(100, 3 x top_k)); ``patch_pool``:
        nearest patches per text query (``pool`` if None; 0: the global pool alone); ``trace``:
        filled with each stage's frames and scores (:class:`~.queries.SearchTrace`)."""
        if not 1 <= top_k <= 1000:
            raise ValueError(f"top_k must be between 1 and 1000, got {top_k}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
        filters.check()
        vector = _normalized(vector)
        if vector.shape != (self.schema.dim,):
            raise ValueError(f"query vector has shape {vector.shape}, expected ({self.schema.dim},)")
        frames = self.layout.frames.name
        if patch_queries is None:
            [hits] = self._backend.query(frames, [VectorQuery(GLOBAL_VECTOR, vector.tolist(), Where(filters), top_k, "light", hnsw_ef=self.layout.frames.vector(GLOBAL_VECTOR).search_ef)])
            return [SearchHit(pid, score, score, None, payload) for pid, score, payload in hits]
        queries = _normalized(np.atleast_2d(patch_queries))
        if queries.ndim != 2 or queries.shape[1] != self.schema.dim or len(queries) == 0:
            raise ValueError(f"patch queries have shape {queries.shape}, expected (1+, {self.schema.dim})")
        pool = rerank_pool(top_k, pool)
        candidates = queries_.candidates(
            self._backend, self.layout, vector, queries, filters, top_k, pool, pool if patch_pool is None else patch_pool, trace
        )
        if not candidates:
            return []
        ids, global_scores, maxsims = queries_.exact_scores(self._backend, self.layout, vector, queries, filters, candidates)
        if not ids:
            return []
        fused = fuse(global_scores, maxsims, alpha, fusion)
        order = sorted(range(len(ids)), key=lambda i: (-fused[i], ids[i]))[:top_k]
        if trace is not None:
            trace.candidates, trace.scored, trace.ranked = candidates, ids, [ids[i] for i in order]
            trace.global_scores, trace.maxsim_scores, trace.fused = global_scores, maxsims, fused
        read = queries_.best_patches(self._backend, self.layout, [ids[i] for i in order], queries)
        return [
            SearchHit(ids[i], float(fused[i]), float(global_scores[i]), float(maxsims[i]), *read[ids[i]])
            for i in order
            if ids[i] in read  # deleted between scoring and reading: left out
        ]
