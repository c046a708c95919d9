"""Where a caption's needles are lost on their way to the first page, stage by stage.

For each caption of the needle library the same text search the service runs (one text row,
the service's pools, the default alpha) is repeated on the index with a
:class:`~resources.vector_index.SearchTrace`, and each needle frame is looked for in:

- ``ceiling``: the exhaustive top 10 by best patch (numpy over every stored patch): what a rerank
  that saw every frame would return;
- ``patches_exact``: the frames of the ``patch_pool`` nearest patches, found exhaustively: what the
  patch stage hands over at this pool size with a perfect graph;
- ``patches_graph``: the frames the companion collection's graph returned at the beam in use;
- ``global_pool``: the frames of the global search;
- ``candidates``: the union the rerank scores;
- ``maxsim_top``: the top 10 of the candidates by MaxSim alone (alpha 0 over the same candidates);
- ``api``: the top 10 the fusion returned (checked against the live API's answer).

A gap between two neighbouring stages names its cause: ``ceiling`` to ``patches_exact`` the pool
size, ``patches_exact`` to ``patches_graph`` the beam, ``candidates`` to ``maxsim_top`` the patch
score itself (near misses outrank the needle), ``maxsim_top`` to ``api`` the fusion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.needle_library import Query
from benchmarks.quality import best_patch_scores, stored_patches
from resources.vector_index import SearchTrace, VectorIndex
from resources.vector_index.schema import IndexSchema, rerank_pool

STAGES = ("ceiling", "patches_exact", "patches_graph", "global_pool", "candidates", "maxsim_top", "api")


@dataclass
class CaptionFunnel:
    caption: str
    size: str  # "small" or "large"
    found: dict[str, int]  # needle frames found at each stage
    needles: int
    candidates: int  # frames the rerank scored
    matches_api: bool  # the traced search's top 10 is the live API's


def needle_funnel(
    work: Path, collection: str, queries: Sequence[Query], text: np.ndarray, api: Sequence[Sequence[str]],
    pool: int | None, alpha: float, top_k: int = 10,
) -> dict[str, object]:
    """The share of needles found at each of :data:`STAGES`, per object size (mean over captions),
    plus per caption the stage counts, the candidates' number and whether the traced search's
    top ``top_k`` equals the API's ``api`` ranking. ``text`` holds the captions' vectors
    ``(captions, dim)``, encoded as the service encodes them; the index at ``work/qdrant`` must not
    be held by a service."""
    ids, flat, owner = stored_patches(work / "checkpoints", text.shape[1])
    best = best_patch_scores(flat, owner, text)  # (frames, captions)
    patch_pool = rerank_pool(top_k, pool)
    per_caption: list[CaptionFunnel] = []
    with VectorIndex.open(IndexSchema(collection, text.shape[1]), path=work / "qdrant") as index:
        for n, (q, vector) in enumerate(zip(queries, text, strict=True)):
            sims = flat @ vector  # (patches,)
            ceiling = {ids[i] for i in np.argsort(-best[:, n], kind="stable")[:top_k]}
            nearest = np.argpartition(-sims, min(patch_pool, len(sims) - 1))[:patch_pool]
            exact = {ids[owner[i]] for i in nearest}
            trace = SearchTrace()
            index.search(vector, top_k=top_k, patch_queries=vector[None], alpha=alpha, pool=pool, trace=trace)
            by_maxsim = [trace.scored[i] for i in np.argsort(-trace.maxsim_scores, kind="stable")[:top_k]]
            # Every stage's frames are candidates: one payload read names them all.
            named = {pid: str(p["image_id"]) for pid, p in index.payloads(trace.candidates).items()}
            ranked = [named[p] for p in trace.ranked[:top_k] if p in named]
            stages = {
                "ceiling": ceiling,
                "patches_exact": exact,
                "patches_graph": {named[p] for p in trace.patch_frames if p in named},
                "global_pool": {named[p] for p in trace.global_pool if p in named},
                "candidates": set(named.values()),
                "maxsim_top": {named[p] for p in by_maxsim if p in named},
                "api": set(ranked),
            }
            per_caption.append(CaptionFunnel(
                q.caption, q.size, {stage: len(stages[stage] & set(q.relevant)) for stage in STAGES},
                len(q.relevant), len(trace.candidates), ranked == list(api[n][:top_k]),
            ))
    shares = {
        size: {stage: round(float(np.mean([c.found[stage] / c.needles for c in per_caption if c.size == size])), 4) for stage in STAGES}
        for size in ("small", "large")
    }
    return {
        "shares": shares,
        "patch_pool": patch_pool,
        "mean_candidates": round(float(np.mean([c.candidates for c in per_caption])), 1),
        "matches_api": sum(c.matches_api for c in per_caption),
        "captions": [asdict(c) for c in per_caption],
    }


def print_funnel(funnel: dict[str, object]) -> None:
    """The funnel as a table: one row per object size, one column per stage."""
    shares: dict[str, dict[str, float]] = funnel["shares"]  # type: ignore[assignment]
    captions: list[dict] = funnel["captions"]  # type: ignore[assignment]
    print(f"\nwhere the needles are (share of needle frames at each stage; patch pool {funnel['patch_pool']}, "
          f"{funnel['mean_candidates']} candidates on average; traced top 10 = API's for {funnel['matches_api']}/{len(captions)} captions)")
    print(f"{'set':6s} " + " ".join(f"{stage:>13s}" for stage in STAGES))
    for size, row in shares.items():
        print(f"{size:6s} " + " ".join(f"{row[stage]:13.3f}" for stage in STAGES))
