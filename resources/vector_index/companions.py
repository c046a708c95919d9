"""Which companion (patch) points a video's frames need: one per window, or - with temporal dedup -
one per run of frames in which the same window stays the same.

Sampled frames of a video share most of their windows (a static background, a slow pan). With a
``threshold``, window ``j`` of a frame whose vector has a cosine of at least ``threshold`` with
window ``j`` of the run's first frame (same box: frames of another size are never merged) joins
that run instead of becoming a new point: the run's point keeps the first frame's vector and id
and stands for its frames up to the last one (``frame_id_end``, ``timestamp_end_ms`` in its
payload). Comparing with the run's first frame, not the previous one, keeps a slow drift from
chaining unlike windows together. A window that changes - a small object that appears in one
frame of a static scene - breaks the run, so it always gets its own point.

The frames' own multivectors (MaxSim, exact scores) are untouched: dedup only thins the graph that
proposes candidates. Pure logic; :meth:`resources.vector_index.index.VectorIndex.sync_video`
writes the points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from resources.vector_index.schema import PATCH_BOXES, IndexPoint


@dataclass(frozen=True)
class CompanionRuns:
    """The video's companion points, one row each: ``first``/``last`` index into the frames (in
    frame order) of the run the point stands for, ``window`` the patch index in the first frame."""

    first: np.ndarray  # (points,) int
    window: np.ndarray  # (points,) int
    last: np.ndarray  # (points,) int

    def __len__(self) -> int:
        return len(self.first)


def companion_runs(points: Sequence[IndexPoint], threshold: float | None) -> CompanionRuns:
    """The companion points of a video's ``points`` (sorted by frame_id): every window of every
    frame when ``threshold`` is None, else runs of near-identical windows (see the module)."""
    if threshold is None:
        counts = np.array([len(p.patch_vectors) for p in points], dtype=np.int64)
        first = np.repeat(np.arange(len(points)), counts)
        window = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
        return CompanionRuns(first, window, first.copy())
    firsts: list[int] = []
    windows: list[int] = []
    lasts: list[int] = []
    open_first: dict[tuple[int, tuple[int, ...] | None], int] = {}  # (window, box) -> first frame of its open run
    open_last: dict[tuple[int, tuple[int, ...] | None], int] = {}
    for i, point in enumerate(points):
        boxes = point.payload.get(PATCH_BOXES)
        keys = [(j, tuple(boxes[j]) if isinstance(boxes, list) and j < len(boxes) else None) for j in range(len(point.patch_vectors))]
        open_here = [k for k in keys if k in open_first]
        if open_here:
            reps = np.stack([points[open_first[k]].patch_vectors[k[0]] for k in open_here])  # (m, dim)
            mine = point.patch_vectors[[k[0] for k in open_here]]
            similar = (np.einsum("md,md->m", reps.astype(np.float32), mine.astype(np.float32)) >= threshold).tolist()
        else:
            similar = []
        joined = {k for k, same in zip(open_here, similar) if same}
        for key in keys:
            if key in joined:
                open_last[key] = i
                continue
            if key in open_first:  # the window changed: its run ends at the previous frame
                firsts.append(open_first[key])
                windows.append(key[0])
                lasts.append(open_last[key])
            open_first[key], open_last[key] = i, i
        # Windows this frame does not have (another size) end their runs: a run covers consecutive frames.
        for key in [k for k in open_first if k not in set(keys)]:
            firsts.append(open_first.pop(key))
            windows.append(key[0])
            lasts.append(open_last.pop(key))
    for key, start in open_first.items():
        firsts.append(start)
        windows.append(key[0])
        lasts.append(open_last[key])
    order = np.lexsort((np.array(windows), np.array(firsts))) if firsts else np.zeros(0, np.int64)
    return CompanionRuns(np.array(firsts, np.int64)[order], np.array(windows, np.int64)[order], np.array(lasts, np.int64)[order])
