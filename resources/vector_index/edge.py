"""The embedded backend: Qdrant Edge, the Qdrant engine in this process, one shard folder per
collection under the index path (``<path>/<collection>``).

Edge raises bare ``Exception`` for every failure, so inputs are validated before any call (by
:mod:`resources.vector_index.index`) and opening errors become :class:`IndexUnavailableError`.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resources.vector_index.backend import Backend, Hit, IndexBusyError, IndexUnavailableError, PayloadChoice, VectorQuery, Where
from resources.vector_index.layout import CollectionLayout
from resources.vector_index.schema import PATCH_BOXES

_DATATYPES = {"float32": "Float32", "float16": "Float16", "uint8": "Uint8", "turbo4": "Turbo4", "turbo8": "Turbo8", "turbo16": "Turbo16"}


class EdgeBackend(Backend):
    """Qdrant Edge shards under ``root``, held by this process through an advisory lock named
    after ``lock_name`` (one lock for all of the index's collections)."""

    kind = "embedded"

    def __init__(self, root: Path, lock_name: str, collections: Sequence[str], lock_timeout_s: float = 0.0) -> None:
        import qdrant_edge as qe

        self.qe = qe
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # Our own advisory lock, held as long as the shards are open: a typed, immediate answer to
        # "is another process using this index?", and the only guard there is - without a
        # write-ahead log Edge lets a second process open the same shard.
        self._lock_file = open(root / f".{lock_name}.lock", "a+")  # noqa: SIM115
        deadline = time.monotonic() + lock_timeout_s
        while True:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._lock_file.close()
                    raise IndexBusyError(f"the embedded index {root / lock_name} is open in another process") from None
                time.sleep(0.1)
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f"{os.getpid()}\n")  # who holds it, for a person looking
        self._lock_file.flush()
        self.shards: dict[str, Any] = {}
        try:
            for name in collections:
                path = root / name
                self.shards[name] = qe.EdgeShard.load(str(path)) if (path / "edge_config.json").is_file() else None
        except Exception as exc:  # Edge raises bare Exception for every failure
            self.close()
            raise IndexUnavailableError(f"cannot open the embedded index {root}: {exc}") from exc

    def existing(self, collection):
        config_file = self.root / collection / "edge_config.json"
        if not config_file.is_file():
            return None
        vectors = json.loads(config_file.read_text())["vectors"]
        return {
            name: {
                "size": params["size"],
                "distance": str(params["distance"]).lower(),
                "comparator": (params.get("multivector_config") or {}).get("comparator"),
                "datatype": params.get("datatype", "float32"),
            }
            for name, params in vectors.items()
        }

    def create(self, layout: CollectionLayout, dim: int) -> None:
        qe = self.qe
        memory = getattr(qe.Memory, layout.memory.capitalize()) if layout.memory else None  # None: Edge's defaults
        vectors = {}
        for v in layout.vectors:
            vectors[v.name] = qe.EdgeVectorParams(
                size=dim,
                distance=qe.Distance.Cosine,
                datatype=getattr(qe.VectorStorageDatatype, _DATATYPES[v.datatype]),
                multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim) if v.multivector else None,
                hnsw_config=qe.HnswIndexConfig(m=v.hnsw_m, ef_construct=v.ef_construct, full_scan_threshold=v.full_scan_threshold, memory=memory),
                memory=memory,
                quantization_config=qe.BinaryQuantizationConfig(
                    encoding=qe.BinaryQuantizationEncoding.OneBit if v.quantization == "binary1" else qe.BinaryQuantizationEncoding.TwoBits,
                    memory=qe.Memory.Pinned,
                ) if v.quantization else None,
            )
        # No write-ahead log: Edge keeps up to 64 MB of it per collection once flushed (1,333 B of
        # 2,062 per patch at 48,000 patch points), and everything while nothing flushes (12.3 GB
        # of 17.4 during a 2.4-million-point load). The index is a view of the checkpoints: each
        # sync flushes before it returns (``flush``), and what a crash loses before that is
        # rewritten by the next sync, whose counts differ.
        config = qe.EdgeConfig(vectors=vectors, wal_enabled=False, payload_memory=memory, id_tracker_memory=memory)
        shard = qe.EdgeShard.create(str(self.root / layout.name), config)
        for field in layout.payload_indexes:
            params = (
                qe.IntegerIndexParams(lookup=field.lookup, range=field.range, memory=memory)
                if field.kind == "integer" else qe.KeywordIndexParams(memory=memory)
            )
            shard.update(qe.UpdateOperation.create_field_index(field.name, params))
        self.shards[layout.name] = shard

    def _filter(self, where: Where) -> Any:
        qe = self.qe
        must: list[Any] = []
        filters = where.filters
        if filters is not None:
            if filters.video_ids is not None:
                must.append(qe.FieldCondition(key="video_id", match=qe.MatchAny(list(filters.video_ids))))
            for name, (low, high) in filters.ranges().items():
                must.append(qe.FieldCondition(key=name, range=qe.RangeFloat(gte=low, lte=high)))
            if filters.point_ids is not None:
                must.append(qe.HasIdCondition(set(filters.point_ids)))
        if where.video_id is not None:
            must.append(qe.FieldCondition(key="video_id", match=qe.MatchValue(where.video_id)))
        if where.version is not None:
            must.append(qe.FieldCondition(key="checkpoint_version", match=qe.MatchValue(where.version)))
        if where.ids is not None:
            must.append(qe.HasIdCondition(set(where.ids)))
        must_not = [qe.FieldCondition(key="checkpoint_version", match=qe.MatchValue(where.not_version))] if where.not_version else None
        return qe.Filter(must=must or None, must_not=must_not) if (must or must_not) else None

    def _payload(self, choice: PayloadChoice) -> Any:
        selector = self.qe.PayloadSelector
        return {"none": False, "light": selector.Exclude([PATCH_BOXES]),
                "frame": selector.Include(["video_id", "frame_id"]), "all": True}[choice]

    def upsert(self, collection, points):
        qe = self.qe
        # Lists convert to Rust ~2x faster than numpy arrays, which go element by element.
        self.shards[collection].update(qe.UpdateOperation.upsert_points([qe.Point(p.id, p.vectors, p.payload) for p in points]))

    def delete(self, collection, where):
        self.shards[collection].update(self.qe.UpdateOperation.delete_points_by_filter(self._filter(where)))

    def count(self, collection, where=Where()):
        return int(self.shards[collection].count(self.qe.CountRequest(exact=True, filter=self._filter(where))))

    def video_ids(self, collection):
        total = self.count(collection)
        if not total:
            return set()
        # A facet on the indexed video_id reads the payload index's per-value counts: ~0.1-0.3 s
        # for 100,000 videos (300,000 points) here, where a scroll reads every point. The
        # approximate facet leaves deleted points out (tested, also in optimized segments); the
        # exact one lists deleted values with count 0 and took 2 s. limit = points >= values.
        response = self.shards[collection].facet(self.qe.FacetRequest("video_id", limit=total, exact=False))
        return {int(hit.value) for hit in response.hits if hit.count > 0}

    def query(self, collection, queries: Sequence[VectorQuery]) -> list[list[Hit]]:
        qe = self.qe
        requests = [
            qe.QueryRequest(
                limit=q.limit,
                query=qe.Query.Nearest(q.vector, using=q.using),
                filter=self._filter(q.where),
                with_payload=self._payload(q.payload),
                params=qe.SearchParams(exact=True) if q.exact else qe.SearchParams(
                    hnsw_ef=q.hnsw_ef, quantization=qe.QuantizationSearchParams(rescore=True, oversampling=q.oversampling) if q.oversampling else None,
                ),
            )
            for q in queries
        ]
        shard = self.shards[collection]
        batches = [shard.query(requests[0])] if len(requests) == 1 else shard.query_batch(qe.QueryBatchRequest(requests))
        return [[(str(p.id), float(p.score), p.payload or {}) for p in points] for points in batches]

    def retrieve(self, collection, ids, payload, vectors=()):
        records = self.shards[collection].retrieve(list(ids), with_payload=self._payload(payload), with_vector=list(vectors) or False)
        return {str(r.id): (r.payload or {}, dict(r.vector or {})) for r in records}

    def optimize(self) -> None:
        for shard in self.shards.values():
            if shard is not None:
                shard.optimize()

    def flush(self) -> None:
        for shard in self.shards.values():
            if shard is not None:
                shard.flush()

    def close(self) -> None:
        try:
            for name, shard in list(self.shards.items()):
                if shard is not None:
                    shard.flush()
                    shard.close()
                self.shards[name] = None
        finally:
            if not self._lock_file.closed:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()
