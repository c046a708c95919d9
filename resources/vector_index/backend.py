"""What a backend does, in framesearch's own vocabulary: a handful of primitives over named
collections (create, upsert, delete, count, batched nearest-vector queries, retrieve).

Everything else - the two collections, sync, candidates, fusion - is built on these in
:mod:`resources.vector_index.index`, once for both backends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from resources.vector_index.layout import CollectionLayout
from resources.vector_index.schema import SearchFilters


class IndexBusyError(RuntimeError):
    """The embedded index is held by another process (one process at a time may open a shard)."""


class IndexUnavailableError(RuntimeError):
    """The index cannot be reached or opened; the message says why."""


@dataclass(frozen=True)
class Where:
    """Which points an operation applies to; all given conditions must hold."""

    filters: SearchFilters | None = None
    video_id: int | None = None
    version: str | None = None  # checkpoint_version equals this
    not_version: str | None = None  # checkpoint_version differs from this
    ids: Sequence[str] | None = None  # only these point ids


# Which payload a query returns: none, all but the frame's patch boxes, only the frame a companion
# point belongs to (video_id, frame_id), or all.
PayloadChoice = Literal["none", "light", "frame", "all"]


@dataclass(frozen=True)
class VectorQuery:
    """Nearest points by one named vector. ``vector`` is one vector, or several rows for a MaxSim
    multivector (Qdrant then scores the SUM over rows of each row's best match)."""

    using: str
    vector: list[float] | list[list[float]]
    where: Where
    limit: int
    payload: PayloadChoice = "none"
    exact: bool = False  # score every matching point (for a small id set: no graph involved)
    hnsw_ef: int = 128  # the graph search's beam (VectorLayout.search_ef of the vector searched)
    # A quantized vector (VectorLayout.quantization): search the quantized copy for this many
    # times the limit, then rescore those with the stored vectors. None: not quantized.
    oversampling: float | None = None


@dataclass
class StoredPoint:
    """One point as written: ``vectors`` maps a vector name to a list (or list of rows)."""

    id: str
    vectors: dict[str, Any]
    payload: dict[str, object]


Hit = tuple[str, float, dict]  # (point id, score, payload)


class Backend(ABC):
    """The operations the index needs, in each client library's vocabulary."""

    kind: str

    @abstractmethod
    def existing(self, collection: str) -> dict[str, dict[str, object]] | None:
        """``{vector: {"size", "distance", "comparator", "datatype"}}`` of a stored collection,
        None if it does not exist."""

    @abstractmethod
    def create(self, layout: CollectionLayout, dim: int) -> None: ...

    @abstractmethod
    def upsert(self, collection: str, points: Sequence[StoredPoint]) -> None: ...

    @abstractmethod
    def delete(self, collection: str, where: Where) -> None: ...

    @abstractmethod
    def count(self, collection: str, where: Where = Where()) -> int: ...

    @abstractmethod
    def video_ids(self, collection: str) -> set[int]:
        """Every video_id that has at least one point: a facet on the indexed field, not a scan."""

    @abstractmethod
    def query(self, collection: str, queries: Sequence[VectorQuery]) -> list[list[Hit]]:
        """Each query's hits, best first, run as one batch."""

    @abstractmethod
    def retrieve(self, collection: str, ids: Sequence[str], payload: PayloadChoice, vectors: Sequence[str] = ()) -> dict[str, tuple[dict, dict[str, Any]]]:
        """``{id: (payload, {vector name: value})}`` of those of ``ids`` that exist. Vectors arrive
        as Python lists (~2.4 MB for a frame of 144 x 512-d patches): keep ``ids`` short."""

    def optimize(self) -> None:  # building indexes is explicit on Edge, automatic on a server
        return None

    def flush(self) -> None:
        """Make every write so far durable (Edge keeps no write-ahead log; a server has its own)."""
        return None

    @abstractmethod
    def close(self) -> None: ...
