"""The server backend: a Qdrant server (or qdrant-client's in-process ``:memory:`` mode) through
qdrant-client. The same collections and queries as the embedded backend (the test suite runs
every query against both)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from resources.vector_index.backend import Backend, Hit, IndexUnavailableError, PayloadChoice, VectorQuery, Where
from resources.vector_index.layout import CollectionLayout
from resources.vector_index.schema import PATCH_BOXES

# Multivectors (MaxSim) arrived in Qdrant 1.10; the turbo4/turbo8 vector datatypes in 1.19/1.20.
MIN_SERVER_VERSION = (1, 20)


class ServerBackend(Backend):
    """Collections on a Qdrant server. ``client``: a ready ``QdrantClient`` (the caller's to close)."""

    kind = "server"

    def __init__(self, url: str | None, api_key: str | None = None, timeout_s: float = 30.0, client: Any = None) -> None:
        from qdrant_client import QdrantClient, models

        self.models = models
        self._local = False  # qdrant-client's local mode: always exact, and warns about search params
        self._owns_client = client is None
        if client is not None or url == ":memory:":
            self.kind = "memory" if url == ":memory:" else "server"
            self.client = client if client is not None else QdrantClient(":memory:")
            self._local = self.client._client.__class__.__name__ == "QdrantLocal"
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
                f"Qdrant at {url} is version {version}; framesearch's collections (MaxSim multivectors, "
                f"turbo4/turbo8 vectors) need >= {'.'.join(map(str, MIN_SERVER_VERSION))}"
            )

    def existing(self, collection):
        if not self.client.collection_exists(collection):
            return None
        vectors = self.client.get_collection(collection).config.params.vectors
        if vectors is None:  # a collection without dense vectors is none of ours
            return {}
        if not isinstance(vectors, dict):
            return {"": {"size": vectors.size, "distance": vectors.distance.value.lower(), "comparator": None, "datatype": None}}
        return {
            name: {
                "size": params.size,
                "distance": params.distance.value.lower(),
                "comparator": params.multivector_config.comparator.value if params.multivector_config else None,
                "datatype": params.datatype.value if params.datatype else "float32",
            }
            for name, params in vectors.items()
        }

    def create(self, layout: CollectionLayout, dim: int) -> None:
        models = self.models
        memory = models.Memory(layout.memory) if layout.memory else None  # None: the server's defaults
        self.client.create_collection(
            layout.name,
            vectors_config={
                v.name: models.VectorParams(
                    size=dim,
                    distance=models.Distance.COSINE,
                    datatype=models.Datatype(v.datatype),
                    multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM) if v.multivector else None,
                    hnsw_config=models.HnswConfigDiff(m=v.hnsw_m, ef_construct=v.ef_construct, full_scan_threshold=v.full_scan_threshold, memory=memory),
                    memory=memory,
                    quantization_config=models.BinaryQuantization(binary=models.BinaryQuantizationConfig(
                        encoding=models.BinaryQuantizationEncoding.ONE_BIT if v.quantization == "binary1" else models.BinaryQuantizationEncoding.TWO_BITS,
                        memory=models.Memory.PINNED,
                    )) if v.quantization else None,
                )
                for v in layout.vectors
            },
            payload=models.PayloadStorageParams(memory=memory) if memory else None,
            id_tracker=models.IdTrackerParams(memory=memory) if memory else None,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # ":memory:" mode ignores payload indexes
            for field in layout.payload_indexes:
                schema = (
                    models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER, lookup=field.lookup, range=field.range, memory=memory)
                    if field.kind == "integer" else models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, memory=memory)
                )
                self.client.create_payload_index(layout.name, field.name, field_schema=schema)

    def _filter(self, where: Where) -> Any:
        models = self.models
        must: list[Any] = []
        filters = where.filters
        if filters is not None:
            if filters.video_ids is not None:
                must.append(models.FieldCondition(key="video_id", match=models.MatchAny(any=list(filters.video_ids))))
            for name, (low, high) in filters.ranges().items():
                must.append(models.FieldCondition(key=name, range=models.Range(gte=low, lte=high)))
            if filters.point_ids is not None:
                must.append(models.HasIdCondition(has_id=list(filters.point_ids)))
        if where.video_id is not None:
            must.append(models.FieldCondition(key="video_id", match=models.MatchValue(value=where.video_id)))
        if where.version is not None:
            must.append(models.FieldCondition(key="checkpoint_version", match=models.MatchValue(value=where.version)))
        if where.ids is not None:
            must.append(models.HasIdCondition(has_id=list(where.ids)))
        must_not = (
            [models.FieldCondition(key="checkpoint_version", match=models.MatchValue(value=where.not_version))] if where.not_version else None
        )
        return models.Filter(must=must or None, must_not=must_not) if (must or must_not) else None

    def _payload(self, choice: PayloadChoice) -> Any:
        models = self.models
        return {
            "none": False, "all": True,
            "light": models.PayloadSelectorExclude(exclude=[PATCH_BOXES]),
            "frame": models.PayloadSelectorInclude(include=["video_id", "frame_id"]),
        }[choice]

    def upsert(self, collection, points):
        models = self.models
        self.client.upsert(collection, points=[models.PointStruct(id=p.id, vector=p.vectors, payload=p.payload) for p in points], wait=True)

    def delete(self, collection, where):
        self.client.delete(collection, points_selector=self.models.FilterSelector(filter=self._filter(where)), wait=True)

    def count(self, collection, where=Where()):
        return self.client.count(collection, count_filter=self._filter(where), exact=True).count

    def video_ids(self, collection):
        total = self.count(collection)
        if not total:
            return set()
        # See EdgeBackend.video_ids: a facet on the indexed field, limit = points >= values.
        response = self.client.facet(collection, "video_id", limit=total, exact=False)
        return {int(hit.value) for hit in response.hits if hit.count > 0}

    def query(self, collection, queries: Sequence[VectorQuery]) -> list[list[Hit]]:
        models = self.models
        requests = [
            models.QueryRequest(
                query=q.vector, using=q.using, filter=self._filter(q.where), limit=q.limit,
                with_payload=self._payload(q.payload), params=self._params(q),
            )
            for q in queries
        ]
        responses = self.client.query_batch_points(collection, requests=requests)
        return [[(str(p.id), float(p.score), p.payload or {}) for p in r.points] for r in responses]

    def retrieve(self, collection, ids, payload, vectors=()):
        records = self.client.retrieve(collection, ids=list(ids), with_payload=self._payload(payload), with_vectors=list(vectors) or False)
        return {str(r.id): (r.payload or {}, dict(r.vector) if isinstance(r.vector, dict) else {}) for r in records}  # named vectors only

    def _params(self, q: VectorQuery) -> Any:
        if self._local:
            return None
        models = self.models
        if q.exact:
            return models.SearchParams(exact=True)
        quantization = models.QuantizationSearchParams(rescore=True, oversampling=q.oversampling) if q.oversampling else None
        return models.SearchParams(hnsw_ef=q.hnsw_ef, quantization=quantization)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
