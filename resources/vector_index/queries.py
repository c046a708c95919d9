"""The read side of the index: which frames a reranked search scores, their exact scores, and
the patch each result's box shows. Functions over a backend and the layout, used by
:meth:`resources.vector_index.index.VectorIndex.search`; see that module for the design."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from resources.vector_index.backend import Backend, VectorQuery, Where
from resources.vector_index.layout import PATCH_POINT_VECTOR, QUANTIZED_OVERSAMPLING, IndexLayout
from resources.vector_index.schema import GLOBAL_VECTOR, PATCH_BOXES, PATCH_VECTOR, SearchFilters, point_id

# Reranked hits whose patch vectors are read at once to find each one's best patch. Both clients
# hand vectors over as Python lists (~2.4 MB per 144 x 512-d frame), so reading all top_k=100 at
# once cost ~240 MB per request; in batches of 8 it is ~20 MB whatever top_k is.
BEST_PATCH_BATCH = 8
# The patch graph's beam for each row of a many-row (image) query. One text row decides alone
# which patches become candidates, so it searches with the layout's deep beam (512); an image's
# 24 rows each bring their own, and 24 deep searches cost 189 ms at 2.4 million patch points.
MANY_ROWS_EF = 128


def patch_rows_limit(rows: int, top_k: int, patch_pool: int) -> int:
    """Nearest patches asked for per query row: ``patch_pool`` for one row (a text query); for
    ``rows`` rows (an image's patches) about twice ``patch_pool`` in all, at least ``2 * top_k``
    per row, so each row's best matches are in however many rows there are."""
    if rows == 1:
        return patch_pool
    return max(2 * top_k, math.ceil(2 * patch_pool / rows))


@dataclass
class SearchTrace:
    """What one reranked search did, stage by stage, for benchmarks that ask where a frame was lost
    (``VectorIndex.search(..., trace=SearchTrace())`` fills it; searches without one pay nothing).

    ``global_pool``: frames of the global search (best first); ``patch_frames``: frames of the
    query rows' nearest patches in the companion collection, in the order first reached;
    ``candidates``: their union as scored; ``scored``/``global_scores``/``maxsim_scores``/``fused``:
    every candidate that both exact queries returned, with its scores; ``ranked``: the result order.
    """

    global_pool: list[str] = field(default_factory=list)
    patch_frames: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    scored: list[str] = field(default_factory=list)
    global_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    maxsim_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fused: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ranked: list[str] = field(default_factory=list)


def candidates(
    backend: Backend, layout: IndexLayout, vector: np.ndarray, queries: np.ndarray, filters: SearchFilters, top_k: int, pool: int, patch_pool: int,
    trace: SearchTrace | None = None,
) -> list[str]:
    """Frame point ids to score: the global pool, then the frames of each row's nearest
    patches (companion collection), in that order, without repeats. With ``filters.point_ids``
    the candidates are exactly those points (the caller knows what it wants scored)."""
    if filters.point_ids is not None:
        return list(dict.fromkeys(filters.point_ids))
    global_ef, patch_ef = layout.frames.vector(GLOBAL_VECTOR).search_ef, layout.patches.vector(PATCH_POINT_VECTOR).search_ef
    patch_ef = patch_ef if len(queries) == 1 else min(patch_ef, MANY_ROWS_EF)
    oversampling = QUANTIZED_OVERSAMPLING if layout.patches.vector(PATCH_POINT_VECTOR).quantization else None
    [global_hits] = backend.query(layout.frames.name, [VectorQuery(GLOBAL_VECTOR, vector.tolist(), Where(filters), pool, hnsw_ef=global_ef)])
    global_ids = [pid for pid, _, _ in global_hits]
    patch_ids: list[str] = []
    if patch_pool > 0:  # 0: the global pool alone (how search worked before the companion collection)
        per_row = patch_rows_limit(len(queries), top_k, patch_pool)
        patch_hits = backend.query(
            layout.patches.name,
            [VectorQuery(PATCH_POINT_VECTOR, row, Where(filters), per_row, "frame", hnsw_ef=patch_ef, oversampling=oversampling) for row in queries.tolist()],
        )
        patch_ids = list(dict.fromkeys(point_id(int(payload["video_id"]), int(payload["frame_id"])) for hits in patch_hits for _, _, payload in hits))
    if trace is not None:
        trace.global_pool, trace.patch_frames = global_ids, patch_ids
    return list(dict.fromkeys(global_ids + patch_ids))


def exact_scores(backend: Backend, layout: IndexLayout, vector: np.ndarray, queries: np.ndarray, filters: SearchFilters, candidates: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The global cosine and maxsim (mean over rows) of each candidate, both computed in
    Qdrant over exactly these points; candidates missing from either answer are dropped."""
    where = Where(filters, ids=candidates)
    n = len(candidates)
    by_global, by_patches = backend.query(
        layout.frames.name,
        [
            VectorQuery(GLOBAL_VECTOR, vector.tolist(), where, n, exact=True),
            VectorQuery(PATCH_VECTOR, queries.tolist(), where, n, exact=True),
        ],
    )
    g = {pid: score for pid, score, _ in by_global}
    m = {pid: score / len(queries) for pid, score, _ in by_patches}  # Qdrant's MaxSim is a sum over rows
    ids = [pid for pid in candidates if pid in g and pid in m]
    return ids, np.array([g[p] for p in ids], np.float64), np.array([m[p] for p in ids], np.float64)


def best_patches(backend: Backend, layout: IndexLayout, ids: list[str], queries: np.ndarray) -> dict[str, tuple[dict, int, list[int] | None]]:
    """``{id: (payload, index, box)}`` of the ranked hits that still exist: each one's payload
    without its patch boxes, and the patch that matched a query row best with that patch's box.
    One read per BEST_PATCH_BATCH frames brings payload, boxes and the stored patch vectors (turbo8,
    the same ones MaxSim scored), so a request's memory does not grow with top_k. (The companion
    collection's 4-bit vectors were tried for text queries - no vectors read - but picked a
    neighbouring window too often: on the sample library the box lay on the object for 6 of 9
    hits instead of 7.)"""
    out = {}
    for start in range(0, len(ids), BEST_PATCH_BATCH):  # boxes (~150 lists a frame) and vectors in small batches
        for pid, (payload, stored) in backend.retrieve(layout.frames.name, ids[start : start + BEST_PATCH_BATCH], "all", [PATCH_VECTOR]).items():
            patches = np.asarray(stored[PATCH_VECTOR], np.float32)
            i = int((patches @ queries.T).max(axis=1).argmax())  # (patches, rows) -> best patch
            frame_boxes = payload.pop(PATCH_BOXES, None)
            box = frame_boxes[i] if isinstance(frame_boxes, list) and i < len(frame_boxes) else None
            out[pid] = (payload, i, None if box is None else [int(v) for v in box])
    return out
