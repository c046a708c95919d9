"""What the vector index stores, independent of the Qdrant backend: the collection schema, point
ids, payloads, filters and the rerank score. Pure logic; ``resources.vector_index`` does the I/O.

Collection ``QDRANT_COLLECTION`` (``frames_v1``) has two named vectors: ``global`` (cosine, HNSW)
and ``patches`` (cosine, multivector compared by MaxSim, no HNSW: patch vectors are only read
to rerank candidates the global index found). One point per frame.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

GLOBAL_VECTOR = "global"
PATCH_VECTOR = "patches"
# Qdrant caps one multivector at rows x dim < 1,048,576 values (2,047 patches of 512-d).
MAX_MULTIVECTOR_VALUES = 1_048_576
# uuid5 namespace for point ids: fixed forever, or every stored id changes.
POINT_NAMESPACE = uuid.UUID("6f1c1d4e-5b0e-4d7e-9a53-3f1f0c6a8e21")
# Payload fields search results leave out: one frame's boxes are ~150 lists of 4 ints, read only
# for the one best patch of a reranked hit (SearchHit.best_patch_box).
PATCH_BOXES = "patch_boxes"
# Video and frame ids are stored as Qdrant integers (i64); point ids are UUIDs.
MAX_ID = 2**63 - 1


class SchemaMismatchError(RuntimeError):
    """An existing collection's schema differs from the one this code writes; nothing was written."""


class InvalidPointError(ValueError):
    """A point's vectors cannot be stored (wrong dimension, non-finite, too many patches)."""


@dataclass(frozen=True)
class IndexSchema:
    """The collection layout; two schemas are compatible when these fields are equal."""

    collection: str = "frames_v1"
    dim: int = 512


# The one written form of an image id, as :func:`image_id` writes it: ASCII digits without leading
# zeros. Other spellings of the same numbers ("02:01", Arabic-Indic digits) are refused rather
# than read: a reader that accepted them would not recognise the frame it names as the same frame.
IMAGE_ID_PATTERN = r"^(0|[1-9][0-9]{0,18}):(0|[1-9][0-9]{0,18})$"


def image_id(video_id: int, frame_id: int) -> str:
    """The seed's frame identifier, ``"<video_id>:<frame_id>"``."""
    return f"{video_id}:{frame_id}"


def point_id(video_id: int, frame_id: int) -> str:
    """Deterministic UUID of a frame's point (Qdrant accepts only unsigned ints and UUIDs)."""
    return str(uuid.uuid5(POINT_NAMESPACE, image_id(video_id, frame_id)))


def check_id(value: object, what: str = "video id") -> int:
    """``value`` if it is an integer Qdrant can store as an id (0..2**63-1), else ValueError
    naming it: the backends would raise OverflowError/TypeError - or accept it - instead."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= MAX_ID:
        raise ValueError(f"{what} {value!r} is not an integer in 0..2**63-1")
    return int(value)


def check_point_id(value: object) -> str:
    """``value`` if it is a point id (a UUID string, see :func:`point_id`), else ValueError."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"point id {value!r} is not a UUID") from None


@dataclass
class IndexPoint:
    """One frame ready to store: ``global_vector`` (dim,), ``patch_vectors`` (patches, dim)."""

    video_id: int
    frame_id: int
    global_vector: np.ndarray
    patch_vectors: np.ndarray
    payload: dict[str, object] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return point_id(self.video_id, self.frame_id)


def validate_point(point: IndexPoint, dim: int) -> None:
    """Raise :class:`InvalidPointError` unless the point's vectors fit the schema."""
    check_id(point.video_id)
    check_id(point.frame_id, "frame id")
    where = f"frame {image_id(point.video_id, point.frame_id)}"
    if point.global_vector.shape != (dim,):
        raise InvalidPointError(f"{where}: global vector has shape {point.global_vector.shape}, expected ({dim},)")
    patches = point.patch_vectors
    if patches.ndim != 2 or patches.shape[1] != dim or len(patches) == 0:
        raise InvalidPointError(f"{where}: patch vectors have shape {patches.shape}, expected (1+, {dim})")
    if patches.size >= MAX_MULTIVECTOR_VALUES:
        raise InvalidPointError(
            f"{where}: {len(patches)} patches x {dim} = {patches.size:,} values, over Qdrant's multivector "
            f"limit of {MAX_MULTIVECTOR_VALUES:,}; lower MAX_PATCHES_PER_IMAGE below {MAX_MULTIVECTOR_VALUES // dim}"
        )
    if not (np.isfinite(point.global_vector).all() and np.isfinite(patches).all()):
        raise InvalidPointError(f"{where}: vectors contain NaN or infinity")


@dataclass(frozen=True)
class SearchFilters:
    """Restrictions on which frames may match; all given conditions must hold."""

    video_ids: tuple[int, ...] | None = None  # any of these videos
    frame_id_min: int | None = None  # inclusive bounds
    frame_id_max: int | None = None
    timestamp_min_ms: int | None = None
    timestamp_max_ms: int | None = None
    point_ids: tuple[str, ...] | None = None  # only these points (to score known candidates)

    def check(self) -> None:
        """Raise ValueError naming a video id outside 0..2**63-1 or a point id that is no UUID.
        Range bounds may be any integers: they are compared, never stored."""
        for video_id in self.video_ids or ():
            check_id(video_id)
        for pid in self.point_ids or ():
            check_point_id(pid)

    def ranges(self) -> dict[str, tuple[int | None, int | None]]:
        """Payload field -> (gte, lte) for each range that has a bound."""
        out = {}
        for name, low, high in (
            ("frame_id", self.frame_id_min, self.frame_id_max),
            ("timestamp_ms", self.timestamp_min_ms, self.timestamp_max_ms),
        ):
            if low is not None or high is not None:
                out[name] = (low, high)
        return out


@dataclass
class SearchHit:
    """One result: ``score`` is what the results are ordered by."""

    point_id: str
    score: float
    global_score: float
    maxsim_score: float | None  # mean over query vectors of the best patch cosine; None: no rerank
    payload: dict[str, object]
    best_patch: int | None = None  # index of the best-matching patch in the frame's patch list
    # x, y, w, h of that patch (reranked hits): payloads leave out "patch_boxes" (PATCH_BOXES)
    best_patch_box: list[int] | None = None


def rerank_pool(top_k: int, pool: int | None = None) -> int:
    """Candidates the global index hands to the MaxSim rerank: max(100, 3 x top_k) unless set."""
    return max(top_k, pool) if pool else max(100, 3 * top_k)


def points_from_checkpoint(table: pa.Table, dim: int, checkpoint_version: str) -> list[IndexPoint]:
    """Index points for every row of a checkpoint table (see ``resources.checkpoints.format``)."""
    from resources.checkpoints.format import META_KEY, vectors

    globals_ = vectors(table.column("global_vector"), dim)  # (frames, dim)
    patch_lists = table.column("patch_vectors").combine_chunks()
    offsets = patch_lists.offsets.to_numpy()
    offsets = offsets - offsets[0]  # a sliced list array's offsets need not start at 0
    patch_values = vectors(patch_lists.flatten(), dim)  # (all patches, dim)
    rows = table.select(
        ["video_id", "frame_id", "timestamp_ms", "url", "width", "height", "patch_boxes", "model_id"]
    ).to_pylist()
    # A kept frame that absorbed dropped near-duplicates stands for [timestamp_ms, span_end_ms):
    # the checkpoint's footer lists those spans, and moments read them from the payload.
    footer = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    spans = {int(k): int(v) for k, v in dict(footer.get("span_end_ms") or {}).items()}
    points = []
    for i, row in enumerate(rows):
        payload = {
            "image_id": image_id(row["video_id"], row["frame_id"]),
            **row,
            "checkpoint_version": checkpoint_version,
        }
        if row["frame_id"] in spans:
            payload["span_end_ms"] = spans[row["frame_id"]]
        points.append(
            IndexPoint(row["video_id"], row["frame_id"], globals_[i], patch_values[offsets[i] : offsets[i + 1]], payload)
        )
    return points
