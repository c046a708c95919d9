"""The main job's sample queries: each caption searched by global search and by global search +
MaxSim rerank (at one or more alphas), the top hits side by side, judged by the sample library's
ground truth.

A hit *holds* the object if a world object with the query's caption is drawn on that frame. A
reranked hit's best patch box (``SearchHit.best_patch_box``, ``[x, y, w, h]``) is *on* the
object if the two boxes overlap by at least half of the smaller one (intersection / smaller area
>= 0.5): a small object inside the 224 px window, or the window inside a large object. Frames
without ground truth (videos without a ground_truth.json) are marked ``?`` and not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from resources.vector_index import SearchHit, VectorIndex

Truth = dict[str, list[tuple[str, list[int]]]]  # image_id -> [(caption, [x, y, w, h]), ...]
ON_OBJECT = 0.5  # least overlap (intersection / smaller box) for a best patch to count as on the object


def box_overlap(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> float:
    """Intersection of two ``[x, y, w, h]`` boxes over the smaller one's area (0 to 1)."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / max(1, min(a[2] * a[3], b[2] * b[3]))


@dataclass
class Judged:
    """One hit: ``holds`` is None where the frame has no ground truth; ``on_object`` is None
    where there is no box or the frame does not hold the object."""

    image_id: str
    score: float
    holds: bool | None
    box: list[int] | None = None
    on_object: bool | None = None


def judge(hit: SearchHit, text: str, truth: Truth) -> Judged:
    image_id = str(hit.payload["image_id"])
    objects = truth.get(image_id)
    judged = Judged(image_id, hit.score, None if objects is None else any(c == text for c, _ in objects), hit.best_patch_box)
    if objects is not None and judged.holds and judged.box is not None:
        judged.on_object = any(c == text and box_overlap(judged.box, b) >= ON_OBJECT for c, b in objects)
    return judged


@dataclass
class Tally:
    """Counts over queries: hits holding the object among the top k of each column (out of the
    most possible), and best patches on the object in the last column."""

    hits: dict[str, int] = field(default_factory=dict)  # column label -> hits
    possible: int = 0
    boxes_on: int = 0
    boxes_judged: int = 0
    queries: int = 0


def _mark(value: bool | None) -> str:
    return "?" if value is None else ("✓" if value else "✗")


def _cell(hit: Judged | None) -> str:
    return " " * 16 if hit is None else f"{_mark(hit.holds)} {hit.image_id:<6} {hit.score:.3f}".ljust(16)


def _box(hit: Judged | None) -> str:
    if hit is None or hit.box is None:
        return ""
    return f"{hit.box} {_mark(hit.on_object)}" if hit.on_object is not None else str(hit.box)


def run_query(
    index: VectorIndex, vector: np.ndarray, text: str, truth: Truth, *, top_k: int, alphas: tuple[float, ...], tally: Tally
) -> list[str]:
    """Search ``text`` (its text ``vector``) by global search and by MaxSim rerank at each of
    ``alphas``; return the lines to print (one column per search, the last column's best patch
    boxes), counting into ``tally``."""
    columns = {"global": [judge(h, text, truth) for h in index.search(vector, top_k=top_k)]}
    for alpha in alphas:
        hits = index.search(vector, top_k=top_k, patch_queries=vector[None], alpha=alpha)
        columns[f"rerank alpha {alpha:g}"] = [judge(h, text, truth) for h in hits]
    last = list(columns.values())[-1]
    frames = sorted((i for i, objects in truth.items() if any(c == text for c, _ in objects)), key=_image_order)
    where = f"in {len(frames)} of {len(truth)} frames ({', '.join(frames)})" if truth else "(no ground truth)"
    header = "  ".join(f"{label:<16}" for label in columns)
    lines = [f"[main] {text!r} {where}:", f"    #  {header}  its best patch [x, y, w, h], on the object"]
    for rank in range(max(len(hits) for hits in columns.values())):
        cells = "  ".join(_cell(hits[rank] if rank < len(hits) else None) for hits in columns.values())
        lines.append(f"  {rank + 1:>3}  {cells}  {_box(last[rank] if rank < len(last) else None)}".rstrip())
    if truth:
        possible = min(top_k, len(frames))
        found = {label: sum(bool(h.holds) for h in hits) for label, hits in columns.items()}
        on, judged = sum(bool(h.on_object) for h in last), sum(h.on_object is not None for h in last)
        counts = ", ".join(f"{label} {n}/{possible}" for label, n in found.items())
        lines.append(f"[main] {text!r}: hits@{top_k} {counts}; {list(columns)[-1]}: best patch on the object {on} of {judged}")
        for label, n in found.items():
            tally.hits[label] = tally.hits.get(label, 0) + n
        tally.possible += possible
        tally.boxes_on += on
        tally.boxes_judged += judged
    tally.queries += 1
    return lines


def summary(tally: Tally, top_k: int) -> str:
    counts = ", ".join(f"{label} {n}/{tally.possible}" for label, n in tally.hits.items())
    return (
        f"[main] sample queries ({tally.queries}): hits@{top_k} {counts}; "
        f"{list(tally.hits)[-1]}: best patch on the object {tally.boxes_on} of {tally.boxes_judged}"
    )


def _image_order(image_id: str) -> tuple[int, int]:
    video, frame = image_id.split(":")
    return int(video), int(frame)
