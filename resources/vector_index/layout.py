"""The index's storage layout: two collections, described once for both backends.

``frames`` (``QDRANT_COLLECTION``, default ``frames_v1``), one point per frame:

- ``global``: the frame's global vector, cosine, float32, HNSW. Global search and the global half
  of the rerank score.
- ``patches``: the frame's patch vectors as one multivector compared by MaxSim, stored as
  ``turbo8`` (Qdrant's TurboQuant datatype: a Hadamard rotation, then 8 bits a dimension, ~4x
  smaller than float32; its MaxSim top 10 equals float32's in >= 0.98 of places, measured by
  ``./dev bench index``), no HNSW graph: it is read only to score known candidates.

``<frames>_patches``, one point per patch (the *companion* collection):

- ``patch``: that patch's vector, cosine, ``turbo4`` (4 bits a dimension), with an HNSW graph. A
  query's nearest patches bring their frames into the rerank's candidate set, so a small object
  no global vector sees can still be found in a library of millions of frames. Its payload names
  the frame (``video_id``, ``frame_id``) and carries the fields filters use (``timestamp_ms``)
  and the sync's ``checkpoint_version``; no vectors of it are ever read back (the exact scores
  come from ``patches`` above), so the coarse 4-bit storage only has to rank candidates.

Both backends build exactly these (``VectorLayout.describe`` is what schema checks compare), so
a collection written with another layout is refused instead of being mixed.

Where each structure lives (``INDEX_MEMORY``, :data:`MEMORY_TIERS`) is Qdrant's per-structure
memory tier, given to every structure of both collections that takes one when they are created.
``cached`` (the default) and ``cold`` memory-map them all - vectors, graphs, payload, payload
indexes, the point-id map - so the process holds next to nothing of the index on its heap and the
kernel may drop the pages under pressure; ``cached`` also reads a segment into the page cache when
it is opened, ``cold`` on first use. None leaves Qdrant's own placement (payload indexes and the
point-id map on the heap), what framesearch built before 2026-12-07. Results do not depend on it,
so it is not part of the schema check (``./dev bench index --memory``: README "Memory tiers").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from resources.vector_index.schema import GLOBAL_VECTOR, PATCH_VECTOR, POINT_NAMESPACE, IndexPoint, IndexSchema

PATCH_POINT_VECTOR = "patch"
# The patch graph's search beam for a text query (PATCH_SEARCH_EF): see index_layout.
DEFAULT_PATCH_SEARCH_EF = 512
PATCH_COLLECTION_SUFFIX = "_patches"
# Fields of a companion point: the frame it belongs to and what filters test (plus the sync's
# checkpoint_version). Nothing else: at millions of patch points every byte counts.
PATCH_PAYLOAD_FIELDS = ("video_id", "frame_id", "timestamp_ms")
# Qdrant's memory tiers that every structure of ours accepts (original vectors and payloads cannot
# be "pinned"): memory-mapped, read into the page cache on open ("cached") or on first use ("cold").
MEMORY_TIERS = ("cached", "cold")
DEFAULT_MEMORY = "cached"
# Qdrant's binary quantization at 1 and 2 bits a dimension (the patch graph's alternatives measured
# by ./dev bench index --patch-quantization).
QUANTIZATIONS = ("binary1", "binary2")
# A quantized graph is searched for this many times the candidates asked for, which the stored
# vectors then rescore.
QUANTIZED_OVERSAMPLING = 2.0


@dataclass(frozen=True)
class PayloadIndex:
    """A payload field index. Integer indexes come as a value map (``lookup``: match, facet) and
    a sorted one (``range``); each costs ~28-40 B a point, so a field gets only what is asked of
    it: ``video_id`` is matched and faceted, frame and time ranges are ranges."""

    name: str
    kind: str  # "integer" or "keyword"
    lookup: bool = True
    range: bool = False


VIDEO_ID_INDEX = PayloadIndex("video_id", "integer", lookup=True)
RANGE_INDEXES = (PayloadIndex("frame_id", "integer", lookup=False, range=True), PayloadIndex("timestamp_ms", "integer", lookup=False, range=True))
VERSION_INDEX = PayloadIndex("checkpoint_version", "keyword")


@dataclass(frozen=True)
class VectorLayout:
    """One named vector of a collection. ``hnsw_m`` 0 means no graph (scored only by id)."""

    name: str
    datatype: str  # "float32", "float16", "turbo8", "turbo4" (Qdrant's vector storage datatypes)
    multivector: bool = False  # a MaxSim multivector
    hnsw_m: int = 16
    ef_construct: int = 100
    search_ef: int = 128  # the beam of a search in this graph: larger recalls more, slower
    # A quantized copy the graph is built and searched on, kept on the heap ("pinned"), with the
    # stored vectors as the originals a search rescores its beam with: one of QUANTIZATIONS, or
    # None. Only ./dev bench index sets it (measured there: it saves no RAM, see the README).
    quantization: str | None = None
    # In KB of vectors: filters leaving fewer points are scored exactly (faster and exact where
    # HNSW with a tight filter loses recall): ~10k frames' 512-d float32 global vectors.
    full_scan_threshold: int = 20_000

    def describe(self, dim: int) -> dict[str, object]:
        """What a schema check compares with the stored collection's config."""
        return {
            "size": dim,
            "distance": "cosine",
            "comparator": "max_sim" if self.multivector else None,
            "datatype": self.datatype,
        }


@dataclass(frozen=True)
class CollectionLayout:
    """A collection: its name, named vectors and indexed payload fields."""

    name: str
    vectors: tuple[VectorLayout, ...]
    payload_indexes: tuple[PayloadIndex, ...] = (VIDEO_ID_INDEX, *RANGE_INDEXES, VERSION_INDEX)
    # The memory tier of every structure (vectors, graphs, payload, payload indexes, point-id map):
    # one of MEMORY_TIERS, or None for Qdrant's own placement. Applied when the collection is created.
    memory: str | None = DEFAULT_MEMORY

    def describe(self, dim: int) -> dict[str, dict[str, object]]:
        return {v.name: v.describe(dim) for v in self.vectors}

    def vector(self, name: str) -> VectorLayout:
        return next(v for v in self.vectors if v.name == name)


@dataclass(frozen=True)
class IndexLayout:
    """The two collections of one index. ``companion_dedup``: the cosine at or above which a
    window that stays the same over consecutive frames is one companion point (temporal dedup, see
    :mod:`.companions`); None: a point per window of every frame."""

    frames: CollectionLayout
    patches: CollectionLayout
    companion_dedup: float | None = None

    @property
    def collections(self) -> tuple[CollectionLayout, CollectionLayout]:
        return (self.frames, self.patches)


def index_layout(
    schema: IndexSchema, patch_datatype: str = "turbo4", multivector_datatype: str = "turbo8", patch_search_ef: int = DEFAULT_PATCH_SEARCH_EF,
    companion_dedup: float | None = None, memory: str | None = DEFAULT_MEMORY, patch_quantization: str | None = None,
) -> IndexLayout:
    """The layout framesearch writes for ``schema``. The datatypes exist only so that ``./dev
    bench index`` can measure the alternatives side by side; the product uses the defaults.
    ``patch_search_ef`` (PATCH_SEARCH_EF) is a read setting, ``companion_dedup`` (COMPANION_DEDUP)
    a write setting every writer of one index must share; ``memory`` (INDEX_MEMORY, one of
    :data:`MEMORY_TIERS`, or None for Qdrant's own placement) where both collections keep their
    structures, set at creation. ``patch_quantization`` (one of :data:`QUANTIZATIONS`) exists for
    the benchmark's side-by-side only."""
    if memory is not None and memory not in MEMORY_TIERS:
        raise ValueError(f"memory must be one of {MEMORY_TIERS} or None, got {memory!r}")
    if patch_quantization is not None and patch_quantization not in QUANTIZATIONS:
        raise ValueError(f"patch_quantization must be one of {QUANTIZATIONS} or None, got {patch_quantization!r}")
    frames = CollectionLayout(
        schema.collection,
        (
            VectorLayout(GLOBAL_VECTOR, "float32"),
            VectorLayout(PATCH_VECTOR, multivector_datatype, multivector=True, hnsw_m=0),
        ),
        memory=memory,
    )
    patches = CollectionLayout(
        schema.collection + PATCH_COLLECTION_SUFFIX,
        # ef_construct 64: the graph only proposes candidates, which are rescored exactly; building
        # it is the bulk of an optimize, and 64 halves that against 128 (measured, bench index).
        # search_ef 512: a small object's patch lies far from every other patch, so few graph
        # links lead to it; at 240,000 patch points a beam of 128 found 0.89 of the planted ones,
        # 256 0.94, 512 0.99, for ~1 ms more per query; at 2.4 million 512 finds 0.82 and 0.95
        # takes 2048 (bench index; the frames' graph stays 128).
        (VectorLayout(PATCH_POINT_VECTOR, patch_datatype, ef_construct=64, full_scan_threshold=10_000, search_ef=patch_search_ef,
                      quantization=patch_quantization),),
        # No index on checkpoint_version here: a sync's counts and deletes filter by video_id
        # first (its index narrows to the video's points) and test the version on those.
        (VIDEO_ID_INDEX, *RANGE_INDEXES),
        memory=memory,
    )
    return IndexLayout(frames, patches, companion_dedup)


def patch_point_id(video_id: int, frame_id: int, patch: int) -> str:
    """Deterministic UUID of patch ``patch`` of a frame's point in the companion collection."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{video_id}:{frame_id}:{patch}"))


def patch_payload(point: IndexPoint, last: IndexPoint | None = None) -> dict[str, object]:
    """A companion point's payload: its frame's filterable fields and checkpoint version (the
    same for every patch of the frame); with ``last`` (a run of frames under temporal dedup, see
    :mod:`.companions`), also the run's last frame and time, ``frame_id_end``/``timestamp_end_ms``."""
    payload = {name: point.payload[name] for name in PATCH_PAYLOAD_FIELDS if point.payload.get(name) is not None}
    payload.update(video_id=point.video_id, frame_id=point.frame_id)
    if last is not None and last.frame_id != point.frame_id:
        payload["frame_id_end"] = last.frame_id
        if last.payload.get("timestamp_ms") is not None:
            payload["timestamp_end_ms"] = last.payload["timestamp_ms"]
    if "checkpoint_version" in point.payload:
        payload["checkpoint_version"] = point.payload["checkpoint_version"]
    return payload
