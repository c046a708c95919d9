"""The main job's sample queries: each caption searched twice - global search and global + MaxSim
rerank - with the top hits side by side, judged by the sample library's ground truth.

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
    if judged.holds and judged.box is not None:
        judged.on_object = any(c == text and box_overlap(judged.box, b) >= ON_OBJECT for c, b in objects)
    return judged


@dataclass
class Tally:
    """Counts over queries: hits holding the object among the top k (out of the most possible)."""

    global_hits: int = 0
    rerank_hits: int = 0
    possible: int = 0
    boxes_on: int = 0
    queries: list[str] = field(default_factory=list)


def _mark(value: bool | None) -> str:
    return "?" if value is None else ("✓" if value else "✗")


def _cell(hit: Judged | None) -> str:
    return " " * 16 if hit is None else f"{_mark(hit.holds)} {hit.image_id:<6} {hit.score:.3f}".ljust(16)


def _box(hit: Judged | None) -> str:
    if hit is None or hit.box is None:
        return ""
    on = "" if hit.on_object is None else (" on the object ✓" if hit.on_object else " off the object ✗")
    return f"{hit.box}{on}"


def run_query(index: VectorIndex, vector: np.ndarray, text: str, truth: Truth, *, top_k: int, alpha: float, tally: Tally) -> list[str]:
    """Search ``text`` (its text ``vector``) both ways; return the lines to print, counting into ``tally``."""
    plain = [judge(h, text, truth) for h in index.search(vector, top_k=top_k)]
    reranked = [judge(h, text, truth) for h in index.search(vector, top_k=top_k, patch_queries=vector[None], alpha=alpha)]
    frames = sorted((i for i, objects in truth.items() if any(c == text for c, _ in objects)), key=_image_order)
    where = f"in {len(frames)} of {len(truth)} frames ({', '.join(frames)})" if truth else "(no ground truth)"
    rerank = f"rerank (alpha {alpha:g})"
    lines = [f"[main] {text!r} {where}:", f"    #  {'global':<16}  {rerank:<18}  best patch [x, y, w, h]"]
    for rank in range(max(len(plain), len(reranked))):
        left = plain[rank] if rank < len(plain) else None
        right = reranked[rank] if rank < len(reranked) else None
        lines.append(f"  {rank + 1:>3}  {_cell(left)}  {_cell(right):<18}  {_box(right)}".rstrip())
    if truth:
        possible = min(top_k, len(frames))
        found_plain = sum(bool(h.holds) for h in plain)
        found_rerank = sum(bool(h.holds) for h in reranked)
        on = sum(bool(h.on_object) for h in reranked)
        lines.append(
            f"[main] {text!r}: hits@{top_k} global {found_plain}/{possible}, rerank {found_rerank}/{possible}; "
            f"best patch on the object {on} of {found_rerank}"
        )
        tally.global_hits += found_plain
        tally.rerank_hits += found_rerank
        tally.possible += possible
        tally.boxes_on += on
    tally.queries.append(text)
    return lines


def summary(tally: Tally, top_k: int) -> str:
    return (
        f"[main] sample queries ({len(tally.queries)}): hits@{top_k} global {tally.global_hits}/{tally.possible}, "
        f"rerank {tally.rerank_hits}/{tally.possible}; best patch on the object {tally.boxes_on} of {tally.rerank_hits}"
    )


def _image_order(image_id: str) -> tuple[int, int]:
    video, frame = image_id.split(":")
    return int(video), int(frame)
