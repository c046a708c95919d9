"""Which companion (patch) points a video's frames need: one per window, or - with temporal dedup -
one per run of frames in which the same window stays the same.

Sampled frames of a video share most of their windows (a static background, a slow pan). With a
``threshold``, a window of a frame whose vector has a cosine of at least ``threshold`` with the
vector of an open run - a window of an earlier frame that the frames since all had - joins that
run instead of becoming a new point: the run's point keeps its first frame's vector and id and
stands for its frames up to the last one (``frame_id_end``, ``timestamp_end_ms`` in its payload).
The match is with any window of the open runs, not only the window at the same place: a panning
camera moves the picture across the grid, and what was window 3 is window 2 a moment later (the
same place only: a 96 px/s pan kept 0.91 of its windows at 0.97, anywhere: see the README).
Comparing with the run's first frame, not the previous one, keeps a slow drift from chaining
unlike windows together. A run that no window of a frame joins ends. A window like nothing before
it - a small object that appears in one frame of a static scene - always gets its own point.
Windows of one frame that are alike (overlapping windows over sky, a wall, a letterbox bar) are
alike by the same test: of the new windows of a frame, one that matches an earlier new window of
that frame joins its run, so a flat region is one point from its first frame on.

The frames' own multivectors (MaxSim, exact scores) are untouched: dedup only thins the graph that
proposes candidates. Pure logic; :meth:`resources.vector_index.index.VectorIndex.sync_video`
writes the points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from resources.vector_index.schema import IndexPoint

# Part of the companion points' version: a new grouping rule re-syncs every video under dedup.
# "" was the first rule (runs across frames); "w" adds within-frame grouping.
COMPANION_RUNS_REVISION = "w"


@dataclass(frozen=True)
class CompanionRuns:
    """The video's companion points, one row each: ``first``/``last`` index into the frames (in
    frame order) of the run the point stands for, ``window`` the patch index in the first frame."""

    first: np.ndarray  # (points,) int
    window: np.ndarray  # (points,) int
    last: np.ndarray  # (points,) int

    def __len__(self) -> int:
        return len(self.first)


def companion_runs(points: Sequence[IndexPoint], threshold: float | None, within_frame: bool = True) -> CompanionRuns:
    """The companion points of a video's ``points`` (sorted by frame_id): every window of every
    frame when ``threshold`` is None, else runs of near-identical windows (see the module).
    ``within_frame`` False keeps alike windows of one frame apart (the first rule; for the bench)."""
    if threshold is None:
        counts = np.array([len(p.patch_vectors) for p in points], dtype=np.int64)
        first = np.repeat(np.arange(len(points)), counts)
        window = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
        return CompanionRuns(first, window, first.copy())
    firsts: list[int] = []
    windows: list[int] = []
    lasts: list[int] = []
    # The open runs - those every frame since their first has joined, so each lasts to the frame
    # before this one - as their first frame, window and the first frame's vector.
    open_first: list[int] = []
    open_window: list[int] = []
    open_vectors = np.zeros((0, points[0].patch_vectors.shape[1] if points else 0), np.float32)
    for i, point in enumerate(points):
        patches = np.asarray(point.patch_vectors, np.float32)  # (n, dim)
        joined = np.full(len(patches), -1)
        if len(open_first):
            sims = patches @ open_vectors.T  # (n, open)
            best = sims.argmax(axis=1)
            joined = np.where(sims[np.arange(len(patches)), best] >= threshold, best, -1)
        kept_open = np.zeros(len(open_first), bool)
        kept_open[joined[joined >= 0]] = True
        # Runs no window of this frame joined end at the frame before: a run covers consecutive frames.
        for run in np.flatnonzero(~kept_open):
            firsts.append(open_first[run])
            windows.append(open_window[run])
            lasts.append(i - 1)
        new = np.flatnonzero(joined < 0)  # windows like none of the open runs: points of their own
        if within_frame:
            new = _representatives(patches, new, threshold)
        open_first = [open_first[r] for r in np.flatnonzero(kept_open)] + [i] * len(new)
        open_window = [open_window[r] for r in np.flatnonzero(kept_open)] + new.tolist()
        open_vectors = np.concatenate([open_vectors[kept_open], patches[new]])
    firsts += open_first
    windows += open_window
    lasts += [len(points) - 1] * len(open_first)
    order = np.lexsort((np.array(windows), np.array(firsts))) if firsts else np.zeros(0, np.int64)
    return CompanionRuns(np.array(firsts, np.int64)[order], np.array(windows, np.int64)[order], np.array(lasts, np.int64)[order])


def _representatives(patches: np.ndarray, candidates: np.ndarray, threshold: float) -> np.ndarray:
    """Of the windows ``candidates`` (indices into ``patches``, in order), those not within
    ``threshold`` of an earlier kept one: within-frame redundancy, greedily, first window first."""
    if len(candidates) < 2:
        return candidates
    sims = patches[candidates] @ patches[candidates].T  # (c, c)
    kept: list[int] = []
    for j in range(len(candidates)):
        if not kept or sims[j, kept].max() < threshold:
            kept.append(j)
    return candidates[kept]
