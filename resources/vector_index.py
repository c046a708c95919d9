"""The frame index in Qdrant: embedded (Qdrant Edge, in-process) or a Qdrant server (qdrant-client).

:class:`VectorIndex` is one facade over two backends that build the same collection, run the same
queries and return the same results (the test suite runs every query against both). The rerank
runs inside Qdrant in a single query: a ``global`` prefetch picks the candidate pool, a MaxSim
query on ``patches`` scores the same pool, and a formula fuses both scores - no candidate's
patch vectors ever leave the engine.

Inputs are validated here before any call, because the two backends fail differently on bad
input (and Edge raises bare ``Exception`` s): callers never need to branch on backend errors.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resources.index_schema import (
    GLOBAL_VECTOR,
    INDEXED_INTEGER_FIELDS,
    INDEXED_KEYWORD_FIELDS,
    PATCH_BOXES,
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

log = logging.getLogger(__name__)

UPSERT_BATCH = 512  # points per write: ~25 MB at 24 patches x 512-d
MIN_SERVER_VERSION = (1, 10)  # multivectors (MaxSim) arrived in Qdrant 1.10
# full_scan_threshold is in KB of vectors: filters leaving under ~10k frames (512-d) are scored
# exactly, which is both faster and exact where HNSW with a tight filter loses recall.
HNSW_GLOBAL = {"m": 16, "ef_construct": 100, "full_scan_threshold": 20_000}
# Reranked hits whose patch vectors are read at once to find each one's best patch. Both clients
# hand vectors over as Python lists (~2.4 MB per 144 x 512-d frame), so reading all top_k=100 at
# once cost ~240 MB per request; in batches of 8 it is ~20 MB whatever top_k is.
BEST_PATCH_BATCH = 8


class IndexBusyError(RuntimeError):
    """The embedded index is held by another process (one process at a time may open a shard)."""


class IndexUnavailableError(RuntimeError):
    """The index cannot be reached or opened; the message says why."""


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
    indexed: int = 0  # the video's points counted in the index after the sync


def _normalized(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norms = np.linalg.norm(vector, axis=-1, keepdims=True)
    if not np.isfinite(vector).all() or (norms == 0).any():
        raise ValueError("query vectors must be finite and non-zero")
    return vector / norms


# ---------------------------------------------------------------------------------------------
# Backends: the same operations in each library's vocabulary.
# ---------------------------------------------------------------------------------------------


class _Backend(ABC):
    kind: str

    @abstractmethod
    def existing_vectors(self) -> dict[str, dict[str, Any]] | None:
        """``{name: {"size", "distance", "comparator"}}`` of the stored collection, None if absent."""

    @abstractmethod
    def create(self, schema: IndexSchema) -> None: ...

    @abstractmethod
    def upsert(self, points: Sequence[IndexPoint]) -> None: ...

    @abstractmethod
    def delete(self, video_id: int, keep_version: str | None) -> None:
        """Delete a video's points, all of them or those whose checkpoint_version differs."""

    @abstractmethod
    def count(self, video_id: int | None = None, version: str | None = None) -> int: ...

    @abstractmethod
    def video_ids(self) -> set[int]:
        """Every video_id that has at least one point."""

    @abstractmethod
    def nearest(self, vector: np.ndarray, filters: SearchFilters, limit: int, ids: Sequence[str] | None = None) -> list[tuple[str, float, dict]]:
        """Global cosine top ``limit`` (optionally only among ``ids``): ``(id, score, payload)``."""

    @abstractmethod
    def maxsim(self, queries: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
        """Qdrant's MaxSim (sum over query rows of the best patch cosine) for exactly ``ids``."""

    @abstractmethod
    def fused(self, vector: np.ndarray, queries: np.ndarray, alpha: float, filters: SearchFilters, limit: int, pool: int) -> list[tuple[str, float, dict, np.ndarray]]:
        """Top ``limit`` by ``alpha * global + (1 - alpha) * maxsim / rows`` over the global pool:
        ``(id, score, payload, stored global vector)``."""

    @abstractmethod
    def payloads(self, ids: Sequence[str]) -> dict[str, dict]:
        """Payloads of those of ``ids`` that exist."""

    @abstractmethod
    def patches_and_boxes(self, ids: Sequence[str]) -> dict[str, tuple[np.ndarray, list | None]]:
        """Stored patch vectors ``(patches, dim)`` and ``patch_boxes`` of exactly ``ids`` (for
        display, not scoring): keep ``ids`` short, every vector arrives as a Python list."""

    def optimize(self) -> None:  # building indexes is explicit on Edge, automatic on a server
        return None

    @abstractmethod
    def close(self) -> None: ...


class _EdgeBackend(_Backend):
    """Qdrant Edge: the Qdrant engine in this process, one shard folder per collection."""

    kind = "embedded"

    def __init__(self, path: Path, lock_timeout_s: float = 0.0, hnsw_ef: int = 128) -> None:
        import qdrant_edge as qe

        self.qe = qe
        self.path = path
        self.params = qe.SearchParams(hnsw_ef=hnsw_ef)
        self.light_payload = qe.PayloadSelector.Exclude([PATCH_BOXES])
        path.mkdir(parents=True, exist_ok=True)
        # Our own advisory lock, held as long as the shard is open: a typed, immediate answer to
        # "is another process using this shard?" instead of parsing Edge's WAL error text.
        self._lock_file = open(path.parent / f".{path.name}.lock", "a+")  # noqa: SIM115
        deadline = time.monotonic() + lock_timeout_s
        while True:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._lock_file.close()
                    raise IndexBusyError(f"the embedded index {path} is open in another process") from None
                time.sleep(0.1)
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f"{os.getpid()}\n")  # who holds it, for a person looking
        self._lock_file.flush()
        try:
            self.shard = qe.EdgeShard.load(str(path)) if (path / "edge_config.json").is_file() else None
        except Exception as exc:  # Edge raises bare Exception for every failure
            self._release()
            raise IndexUnavailableError(f"cannot open the embedded index {path}: {exc}") from exc

    def _release(self) -> None:
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()

    def existing_vectors(self) -> dict[str, dict[str, Any]] | None:
        config_file = self.path / "edge_config.json"
        if not config_file.is_file():
            return None
        vectors = json.loads(config_file.read_text())["vectors"]
        return {
            name: {
                "size": params["size"],
                "distance": str(params["distance"]).lower(),
                "comparator": (params.get("multivector_config") or {}).get("comparator"),
            }
            for name, params in vectors.items()
        }

    def create(self, schema: IndexSchema) -> None:
        qe = self.qe
        config = qe.EdgeConfig(
            vectors={
                GLOBAL_VECTOR: qe.EdgeVectorParams(
                    size=schema.dim, distance=qe.Distance.Cosine, hnsw_config=qe.HnswIndexConfig(**HNSW_GLOBAL)
                ),
                PATCH_VECTOR: qe.EdgeVectorParams(
                    size=schema.dim,
                    distance=qe.Distance.Cosine,
                    multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
                    hnsw_config=qe.HnswIndexConfig(**{**HNSW_GLOBAL, "m": 0}),  # rerank only: no graph
                ),
            }
        )
        self.shard = qe.EdgeShard.create(str(self.path), config)
        for name in INDEXED_INTEGER_FIELDS:
            self.shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Integer))
        for name in INDEXED_KEYWORD_FIELDS:
            self.shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))

    def _filter(self, filters: SearchFilters | None = None, video_id: int | None = None, version: str | None = None, not_version: str | None = None, ids: Sequence[str] | None = None) -> Any:
        qe = self.qe
        must: list[Any] = []
        if filters is not None:
            if filters.video_ids is not None:
                must.append(qe.FieldCondition(key="video_id", match=qe.MatchAny(list(filters.video_ids))))
            for name, (low, high) in filters.ranges().items():
                must.append(qe.FieldCondition(key=name, range=qe.RangeFloat(gte=low, lte=high)))
            if filters.point_ids is not None:
                must.append(qe.HasIdCondition(set(filters.point_ids)))
        if video_id is not None:
            must.append(qe.FieldCondition(key="video_id", match=qe.MatchValue(video_id)))
        if version is not None:
            must.append(qe.FieldCondition(key="checkpoint_version", match=qe.MatchValue(version)))
        if ids is not None:
            must.append(qe.HasIdCondition(set(ids)))
        must_not = [qe.FieldCondition(key="checkpoint_version", match=qe.MatchValue(not_version))] if not_version else None
        return qe.Filter(must=must or None, must_not=must_not) if (must or must_not) else None

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        qe = self.qe
        self.shard.update(
            qe.UpdateOperation.upsert_points(
                # Lists convert to Rust ~2x faster than numpy arrays, which go element by element.
                [qe.Point(p.id, {GLOBAL_VECTOR: p.global_vector.tolist(), PATCH_VECTOR: p.patch_vectors.tolist()}, p.payload) for p in points]
            )
        )

    def delete(self, video_id: int, keep_version: str | None) -> None:
        flt = self._filter(video_id=video_id, not_version=keep_version)
        self.shard.update(self.qe.UpdateOperation.delete_points_by_filter(flt))

    def count(self, video_id: int | None = None, version: str | None = None) -> int:
        return int(self.shard.count(self.qe.CountRequest(exact=True, filter=self._filter(video_id=video_id, version=version))))

    def video_ids(self):
        total = self.count()
        if not total:
            return set()
        # A facet on the indexed video_id reads the payload index's per-value counts: ~0.1-0.3 s
        # for 100,000 videos (300,000 points) here, where a scroll reads every point. The
        # approximate facet leaves deleted points out (tested, also in optimized segments); the
        # exact one lists deleted values with count 0 and took 2 s. limit = points >= values.
        response = self.shard.facet(self.qe.FacetRequest("video_id", limit=total, exact=False))
        return {int(hit.value) for hit in response.hits if hit.count > 0}

    def nearest(self, vector, filters, limit, ids=None):
        qe = self.qe
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(vector.tolist(), using=GLOBAL_VECTOR),
            filter=self._filter(filters, ids=ids),
            with_payload=self.light_payload,
            params=self.params,
        )
        return [(str(p.id), float(p.score), p.payload or {}) for p in self.shard.query(request)]

    def maxsim(self, queries, ids):
        qe = self.qe
        request = qe.QueryRequest(
            limit=len(ids), query=qe.Query.Nearest(queries.tolist(), using=PATCH_VECTOR), filter=self._filter(ids=ids)
        )
        return {str(p.id): float(p.score) for p in self.shard.query(request)}

    def payloads(self, ids):
        return {str(r.id): r.payload or {} for r in self.shard.retrieve(list(ids), with_payload=True, with_vector=False)}

    def patches_and_boxes(self, ids):
        records = self.shard.retrieve(list(ids), with_payload=self.qe.PayloadSelector.Include([PATCH_BOXES]), with_vector=[PATCH_VECTOR])
        return {str(r.id): (np.asarray(r.vector[PATCH_VECTOR], np.float32), (r.payload or {}).get(PATCH_BOXES)) for r in records}

    def fused(self, vector, queries, alpha, filters, limit, pool):
        qe = self.qe
        E = qe.Expression
        formula = qe.Formula(
            E.Sum(
                [
                    E.Mult([E.Constant(float(alpha)), E.Variable("$score[0]")]),
                    E.Mult([E.Constant(float((1 - alpha) / len(queries))), E.Variable("$score[1]")]),
                ]
            )
        )
        flt = self._filter(filters)
        def global_pool() -> Any:
            return qe.Prefetch(limit=pool, query=qe.Query.Nearest(vector.tolist(), using=GLOBAL_VECTOR), filter=flt, params=self.params)

        patches = qe.Prefetch(
            limit=pool,  # equal pools: a point missing from one prefetch would silently score 0 there
            query=qe.Query.Nearest(queries.tolist(), using=PATCH_VECTOR),
            prefetches=[global_pool()],
        )
        request = qe.QueryRequest(
            limit=limit, query=formula, prefetches=[global_pool(), patches], with_payload=self.light_payload,
            with_vector=[GLOBAL_VECTOR],
        )
        return [(str(p.id), float(p.score), p.payload or {}, np.asarray(p.vector[GLOBAL_VECTOR], np.float32)) for p in self.shard.query(request)]

    def optimize(self) -> None:
        self.shard.optimize()

    def close(self) -> None:
        try:
            if self.shard is not None:
                self.shard.flush()
                self.shard.close()
                self.shard = None
        finally:
            self._release()


class _ServerBackend(_Backend):
    """A Qdrant server (or qdrant-client's ``:memory:`` mode) through qdrant-client."""

    kind = "server"

    def __init__(self, url: str | None, collection: str, api_key: str | None = None, timeout_s: float = 30.0, client: Any = None, hnsw_ef: int = 128) -> None:
        from qdrant_client import QdrantClient, models

        self.models = models
        self.collection = collection
        self.params = models.SearchParams(hnsw_ef=hnsw_ef)
        self.light_payload = models.PayloadSelectorExclude(exclude=[PATCH_BOXES])
        self._owns_client = client is None  # a client handed in is the caller's to close
        if client is not None or url == ":memory:":
            self.kind = "memory" if url == ":memory:" else "server"
            self.client = client if client is not None else QdrantClient(":memory:")
            if self.client._client.__class__.__name__ == "QdrantLocal":
                self.params = None  # local mode is exact search and warns about search params
            return
        # Our own version check below says what is wrong; the client's only warns.
        self.client = QdrantClient(url=url, api_key=api_key or None, timeout=int(timeout_s), check_compatibility=False)
        try:
            version = self.client.info().version
        except Exception as exc:  # noqa: BLE001 - any failure to reach the server means the same
            raise IndexUnavailableError(f"cannot reach Qdrant at {url}: {exc}") from exc
        parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if parts < MIN_SERVER_VERSION:
            raise IndexUnavailableError(
                f"Qdrant at {url} is version {version}; multivector (MaxSim) collections need >= "
                f"{'.'.join(map(str, MIN_SERVER_VERSION))}"
            )

    def existing_vectors(self):
        if not self.client.collection_exists(self.collection):
            return None
        vectors = self.client.get_collection(self.collection).config.params.vectors
        if not isinstance(vectors, dict):
            return {"": {"size": vectors.size, "distance": vectors.distance.value.lower(), "comparator": None}}
        return {
            name: {
                "size": params.size,
                "distance": params.distance.value.lower(),
                "comparator": params.multivector_config.comparator.value if params.multivector_config else None,
            }
            for name, params in vectors.items()
        }

    def create(self, schema: IndexSchema) -> None:
        models = self.models
        self.client.create_collection(
            self.collection,
            vectors_config={
                GLOBAL_VECTOR: models.VectorParams(
                    size=schema.dim,
                    distance=models.Distance.COSINE,
                    hnsw_config=models.HnswConfigDiff(**HNSW_GLOBAL),
                ),
                PATCH_VECTOR: models.VectorParams(
                    size=schema.dim,
                    distance=models.Distance.COSINE,
                    multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
                    hnsw_config=models.HnswConfigDiff(m=0),
                ),
            },
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # ":memory:" mode ignores payload indexes
            for name in INDEXED_INTEGER_FIELDS:
                self.client.create_payload_index(self.collection, name, field_schema=models.PayloadSchemaType.INTEGER)
            for name in INDEXED_KEYWORD_FIELDS:
                self.client.create_payload_index(self.collection, name, field_schema=models.PayloadSchemaType.KEYWORD)

    def _filter(self, filters=None, video_id=None, version=None, not_version=None, ids=None):
        models = self.models
        must: list[Any] = []
        if filters is not None:
            if filters.video_ids is not None:
                must.append(models.FieldCondition(key="video_id", match=models.MatchAny(any=list(filters.video_ids))))
            for name, (low, high) in filters.ranges().items():
                must.append(models.FieldCondition(key=name, range=models.Range(gte=low, lte=high)))
            if filters.point_ids is not None:
                must.append(models.HasIdCondition(has_id=list(filters.point_ids)))
        if video_id is not None:
            must.append(models.FieldCondition(key="video_id", match=models.MatchValue(value=video_id)))
        if version is not None:
            must.append(models.FieldCondition(key="checkpoint_version", match=models.MatchValue(value=version)))
        if ids is not None:
            must.append(models.HasIdCondition(has_id=list(ids)))
        must_not = (
            [models.FieldCondition(key="checkpoint_version", match=models.MatchValue(value=not_version))] if not_version else None
        )
        return models.Filter(must=must or None, must_not=must_not) if (must or must_not) else None

    def upsert(self, points):
        models = self.models
        self.client.upsert(
            self.collection,
            points=[
                models.PointStruct(
                    id=p.id,
                    vector={GLOBAL_VECTOR: p.global_vector.tolist(), PATCH_VECTOR: p.patch_vectors.tolist()},
                    payload=p.payload,
                )
                for p in points
            ],
            wait=True,
        )

    def delete(self, video_id, keep_version):
        selector = self.models.FilterSelector(filter=self._filter(video_id=video_id, not_version=keep_version))
        self.client.delete(self.collection, points_selector=selector, wait=True)

    def count(self, video_id=None, version=None):
        return self.client.count(self.collection, count_filter=self._filter(video_id=video_id, version=version), exact=True).count

    def video_ids(self):
        total = self.count()
        if not total:
            return set()
        # See _EdgeBackend.video_ids: a facet on the indexed field, limit = points >= values.
        response = self.client.facet(self.collection, "video_id", limit=total, exact=False)
        return {int(hit.value) for hit in response.hits if hit.count > 0}

    def nearest(self, vector, filters, limit, ids=None):
        points = self.client.query_points(
            self.collection, query=vector.tolist(), using=GLOBAL_VECTOR, query_filter=self._filter(filters, ids=ids),
            limit=limit, with_payload=self.light_payload, search_params=self.params,
        ).points
        return [(str(p.id), float(p.score), p.payload or {}) for p in points]

    def maxsim(self, queries, ids):
        points = self.client.query_points(
            self.collection, query=queries.tolist(), using=PATCH_VECTOR, query_filter=self._filter(ids=ids),
            limit=len(ids), with_payload=False,
        ).points
        return {str(p.id): float(p.score) for p in points}

    def payloads(self, ids):
        records = self.client.retrieve(self.collection, ids=list(ids), with_payload=True, with_vectors=False)
        return {str(r.id): r.payload or {} for r in records}

    def patches_and_boxes(self, ids):
        records = self.client.retrieve(
            self.collection, ids=list(ids), with_payload=self.models.PayloadSelectorInclude(include=[PATCH_BOXES]),
            with_vectors=[PATCH_VECTOR],
        )
        return {str(r.id): (np.asarray(r.vector[PATCH_VECTOR], np.float32), (r.payload or {}).get(PATCH_BOXES)) for r in records}

    def fused(self, vector, queries, alpha, filters, limit, pool):
        models = self.models
        formula = models.FormulaQuery(
            formula=models.SumExpression(
                sum=[
                    models.MultExpression(mult=[float(alpha), "$score[0]"]),
                    models.MultExpression(mult=[float((1 - alpha) / len(queries)), "$score[1]"]),
                ]
            )
        )
        flt = self._filter(filters)
        def global_pool() -> Any:
            return models.Prefetch(query=vector.tolist(), using=GLOBAL_VECTOR, limit=pool, filter=flt, params=self.params)

        patches = models.Prefetch(query=queries.tolist(), using=PATCH_VECTOR, limit=pool, prefetch=[global_pool()])
        points = self.client.query_points(
            self.collection, prefetch=[global_pool(), patches], query=formula, limit=limit, with_payload=self.light_payload,
            with_vectors=[GLOBAL_VECTOR],
        ).points
        return [(str(p.id), float(p.score), p.payload or {}, np.asarray(p.vector[GLOBAL_VECTOR], np.float32)) for p in points]

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


# ---------------------------------------------------------------------------------------------
# The facade
# ---------------------------------------------------------------------------------------------


class VectorIndex:
    """The frames collection: schema management, idempotent per-video sync and search.

    Open with :meth:`open`; use as a context manager so an embedded shard is released.
    """

    def __init__(self, backend: _Backend, schema: IndexSchema) -> None:
        self._backend = backend
        self.schema = schema
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
        hnsw_ef: int = 128,
    ) -> VectorIndex:
        """A server index when ``url`` is given (``":memory:"`` for qdrant-client's in-process
        mode; or a ready ``qdrant_client.QdrantClient`` as ``client``), else the embedded shard
        under ``path``. Creates the collection if it is missing;
        refuses one whose schema differs. Raises :class:`IndexBusyError` if another process holds
        the embedded shard (after waiting up to ``lock_timeout_s``). ``hnsw_ef`` is the HNSW
        search beam of the global index: larger is slower and recalls more."""
        if url or client is not None:
            backend: _Backend = _ServerBackend(url, schema.collection, api_key, client=client, hnsw_ef=hnsw_ef)
        elif path is not None:
            backend = _EdgeBackend(Path(path) / schema.collection, lock_timeout_s, hnsw_ef=hnsw_ef)
        else:
            raise ValueError("give a Qdrant url (QDRANT_URL) or an embedded index path (QDRANT_PATH)")
        try:
            index = cls(backend, schema)
            index._ensure_collection()
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

    def _ensure_collection(self) -> None:
        existing = self._backend.existing_vectors()
        if existing is None:
            self._backend.create(self.schema)
            return
        expected = {
            GLOBAL_VECTOR: {"size": self.schema.dim, "distance": "cosine", "comparator": None},
            PATCH_VECTOR: {"size": self.schema.dim, "distance": "cosine", "comparator": "max_sim"},
        }
        if existing != expected:
            raise SchemaMismatchError(
                f"collection {self.schema.collection!r} exists with vectors {existing}, but this code "
                f"writes {expected}; nothing was written. Use another QDRANT_COLLECTION or delete it."
            )

    # -- writes ------------------------------------------------------------------------------

    def sync_video(self, video_id: int, points: Sequence[IndexPoint], version: str) -> SyncResult:
        """Make the video's points equal to ``points`` (one checkpoint ``version``).

        Idempotent: a version already fully present is a no-op. Points of the video that are not
        in ``points`` are deleted. The count is verified afterwards.
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
        result = SyncResult(video_id, version, len(points))
        backend = self._backend
        if points and backend.count(video_id) == len(points) == backend.count(video_id, version):
            result.skipped, result.indexed = True, len(points)
            result.seconds = time.perf_counter() - started
            return result
        for start in range(0, len(points), UPSERT_BATCH):
            batch = [self._with_version(p, version) for p in points[start : start + UPSERT_BATCH]]
            backend.upsert(batch)
            result.upserted += len(batch)
        # Every current frame now carries this version: whatever else the video has is stale.
        result.deleted = backend.count(video_id) - (backend.count(video_id, version) if points else 0)
        if result.deleted:
            backend.delete(video_id, keep_version=version if points else None)
        after = backend.count(video_id)
        result.indexed = after
        if after != len(points):
            raise RuntimeError(f"video {video_id}: index holds {after} points after sync, expected {len(points)}")
        result.seconds = time.perf_counter() - started
        return result

    @staticmethod
    def _with_version(point: IndexPoint, version: str) -> IndexPoint:
        payload = {**point.payload, "checkpoint_version": version}
        return IndexPoint(point.video_id, point.frame_id, point.global_vector, point.patch_vectors, payload)

    def delete_video(self, video_id: int) -> None:
        """Delete every point of the video (nothing happens if it has none)."""
        self._backend.delete(check_id(video_id), keep_version=None)

    def count(self, video_id: int | None = None, version: str | None = None) -> int:
        """Points in the index, or of one video (and checkpoint ``version``)."""
        return self._backend.count(None if video_id is None else check_id(video_id), version)

    def video_ids(self) -> set[int]:
        """The ids of the videos that have points: one facet on the indexed ``video_id``, not a
        scan of the points."""
        return self._backend.video_ids()

    def payloads(self, ids: Sequence[str]) -> dict[str, dict]:
        """The stored payloads of those of ``ids`` (point ids) that are in the index."""
        return self._backend.payloads(ids) if ids else {}

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
        alpha: float = 0.5,
        pool: int | None = None,
    ) -> list[SearchHit]:
        """Global search, or - with ``patch_queries`` ``(rows, dim)`` - global prefetch followed by
        MaxSim rerank: ``score = alpha * global + (1 - alpha) * maxsim`` where ``maxsim`` is the
        mean over query rows of the best cosine against the frame's patches."""
        if not 1 <= top_k <= 1000:
            raise ValueError(f"top_k must be between 1 and 1000, got {top_k}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
        filters.check()
        vector = _normalized(vector)
        if vector.shape != (self.schema.dim,):
            raise ValueError(f"query vector has shape {vector.shape}, expected ({self.schema.dim},)")
        if patch_queries is None:
            return [SearchHit(pid, score, score, None, payload) for pid, score, payload in self._backend.nearest(vector, filters, top_k)]
        queries = _normalized(np.atleast_2d(patch_queries))
        if queries.ndim != 2 or queries.shape[1] != self.schema.dim or len(queries) == 0:
            raise ValueError(f"patch queries have shape {queries.shape}, expected (1+, {self.schema.dim})")
        hits = self._backend.fused(vector, queries, alpha, filters, top_k, rerank_pool(top_k, pool))
        if not hits:
            return []
        # The response shows the fused score's parts. The global part is the cosine with the
        # returned frames' stored global vectors (k x dim floats; patch vectors never travel);
        # the MaxSim part follows from the fused score, or - where (1 - alpha) is too small to
        # divide by accurately - from one exact MaxSim query over the k returned ids.
        globals_ = np.stack([stored for *_, stored in hits]) @ vector  # (k,)
        if alpha <= 0.9:
            maxsims = [(score - alpha * g) / (1.0 - alpha) for (_, score, _, _), g in zip(hits, globals_)]
        else:
            exact = self._backend.maxsim(queries, [pid for pid, *_ in hits])
            maxsims = [exact.get(pid, 0.0) / len(queries) for pid, *_ in hits]
        best = self._best_patches([pid for pid, *_ in hits], queries)
        return [
            SearchHit(pid, score, float(g), float(m), payload, *best.get(pid, (None, None)))
            for (pid, score, payload, _), g, m in zip(hits, globals_, maxsims)
        ]

    def _best_patches(self, ids: list[str], queries: np.ndarray) -> dict[str, tuple[int, list[int] | None]]:
        """``{id: (index, box)}`` of each frame's patch that matched a query row best, for the
        response's box, once the ranking is done. Reads BEST_PATCH_BATCH frames' patch vectors
        and boxes at a time, so a request's memory does not grow with top_k."""
        best = {}
        for start in range(0, len(ids), BEST_PATCH_BATCH):
            for pid, (patches, boxes) in self._backend.patches_and_boxes(ids[start : start + BEST_PATCH_BATCH]).items():
                i = int((patches @ queries.T).max(axis=1).argmax())  # (patches, rows) -> best patch
                box = boxes[i] if isinstance(boxes, list) and i < len(boxes) else None
                best[pid] = (i, None if box is None else [int(v) for v in box])
        return best
