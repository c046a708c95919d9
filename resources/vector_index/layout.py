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
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from resources.index_schema import (
    GLOBAL_VECTOR,
    INDEXED_INTEGER_FIELDS,
    INDEXED_KEYWORD_FIELDS,
    PATCH_VECTOR,
    POINT_NAMESPACE,
    IndexPoint,
    IndexSchema,
)

PATCH_POINT_VECTOR = "patch"
PATCH_COLLECTION_SUFFIX = "_patches"
# Fields of a companion point: the frame it belongs to, what filters test, and the sync version.
PATCH_PAYLOAD_FIELDS = ("video_id", "frame_id", "timestamp_ms")


@dataclass(frozen=True)
class VectorLayout:
    """One named vector of a collection. ``hnsw_m`` 0 means no graph (scored only by id)."""

    name: str
    datatype: str  # "float32", "float16", "turbo8", "turbo4" (Qdrant's vector storage datatypes)
    multivector: bool = False  # a MaxSim multivector
    hnsw_m: int = 16
    ef_construct: int = 100
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
    integer_fields: tuple[str, ...] = INDEXED_INTEGER_FIELDS
    keyword_fields: tuple[str, ...] = INDEXED_KEYWORD_FIELDS

    def describe(self, dim: int) -> dict[str, dict[str, object]]:
        return {v.name: v.describe(dim) for v in self.vectors}


@dataclass(frozen=True)
class IndexLayout:
    """The two collections of one index."""

    frames: CollectionLayout
    patches: CollectionLayout

    @property
    def collections(self) -> tuple[CollectionLayout, CollectionLayout]:
        return (self.frames, self.patches)


def index_layout(schema: IndexSchema, patch_datatype: str = "turbo4", multivector_datatype: str = "turbo8") -> IndexLayout:
    """The layout framesearch writes for ``schema``. The datatypes are parameters only so that
    ``./dev bench index`` can measure the alternatives side by side; the product uses the defaults."""
    frames = CollectionLayout(
        schema.collection,
        (
            VectorLayout(GLOBAL_VECTOR, "float32"),
            VectorLayout(PATCH_VECTOR, multivector_datatype, multivector=True, hnsw_m=0),
        ),
    )
    patches = CollectionLayout(
        schema.collection + PATCH_COLLECTION_SUFFIX,
        # ef_construct 64: the graph only proposes candidates, which are rescored exactly; building
        # it is the bulk of an optimize, and 64 halves that against 128 (measured, bench index).
        (VectorLayout(PATCH_POINT_VECTOR, patch_datatype, ef_construct=64, full_scan_threshold=10_000),),
    )
    return IndexLayout(frames, patches)


def patch_point_id(video_id: int, frame_id: int, patch: int) -> str:
    """Deterministic UUID of patch ``patch`` of a frame's point in the companion collection."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{video_id}:{frame_id}:{patch}"))


def patch_payload(point: IndexPoint, patch: int) -> dict[str, object]:
    """The companion point's payload: the frame's filterable fields, its version, the patch index."""
    payload = {name: point.payload[name] for name in PATCH_PAYLOAD_FIELDS if point.payload.get(name) is not None}
    payload.update(video_id=point.video_id, frame_id=point.frame_id, patch=patch)
    if "checkpoint_version" in point.payload:
        payload["checkpoint_version"] = point.payload["checkpoint_version"]
    return payload
