"""How a candidate's two scores become one: pure numpy over the candidate set of one query.

``g`` is the global cosine (the whole frame as the model sees it), ``m`` the MaxSim score (mean
over query rows of the best patch cosine; for a text query, the best window's cosine). ``alpha``
keeps its seed meaning everywhere: 1 ranks by ``g`` alone, 0 by ``m`` alone.

The product fuses with ``bestview``: ``2 * max(alpha * g, (1 - alpha) * m)`` plus 10% of the
weighted sum ``alpha * g + (1 - alpha) * m``. At the default alpha 0.5 that is ``max(g, m) +
0.05 * (g + m)``: the whole frame is one more view beside its windows, every view is matched on
the same cosine scale, and a frame scores by its best view, a little more when its views agree.
A small object wins through the one window that holds it; a frame-filling object, whose windows
each see only a part of it, wins through the whole frame. The seed's ``alpha * g + (1 - alpha) * m`` cannot do both: across frames
the global cosine varies as much as the best window's, so any weight on it buries small objects
under background, and any weight off it loses large ones. Measured over the quality benchmark's
checkpoints (``./dev bench fusion``, exact candidates, README "Retrieval quality"), recall@10
small / large objects on the two world models (ceilings 0.92 and 0.94, global search 1.00 on
large objects):

    alpha                            0          0.2        0.4        0.5        0.6        1
    framesearch-world, 10,000 frames
      linear (seed)                  0.92/0.22  0.28/0.78  0.14/1.00  0.00/1.00  0.00/1.00  0.00/1.00
      bestview (product)             0.92/0.22  0.89/0.28  0.86/0.28  0.86/1.00  0.31/1.00  0.00/1.00
    framesearch-world-rn, 2,000 frames
      linear (seed)                  0.94/0.50  0.50/0.94  0.17/1.00  0.11/1.00  0.11/1.00  0.00/1.00
      bestview (product)             0.94/0.50  0.92/0.61  0.89/0.67  0.89/1.00  0.33/1.00  0.00/1.00

Weights away from 0.5 scale cosines, so they move the balance quickly: 0.5 is not a tuned
constant but the unweighted best view. The agreement share was chosen on both models at once,
at 10,000 frames: 0.05 is the one share that holds both targets on both (0.1 lost small objects
on framesearch-world-rn, 0.69 against a ceiling of 0.86; 0.01 lost large objects).

The alternatives stay here for ``./dev bench fusion`` to measure, not for the API:

- ``linear``: the seed's weighted sum.
- ``zscore``: the same sum over per-query standardised scores (each minus its median over the
  candidates, divided by its robust spread).
- ``rrf``: reciprocal rank fusion, ``alpha / (k + rank_g) + (1 - alpha) / (k + rank_m)``.
- ``evidence``: standardised, then ``max(alpha * zg, (1 - alpha) * zm)`` plus a small share of
  their sum. Standardising divides by each score's spread over the candidates; the global
  cosine's spread is small, so ordinary background differences become large "evidence".
"""

from __future__ import annotations

import numpy as np

FUSIONS = ("bestview", "linear", "zscore", "rrf", "evidence")
DEFAULT_FUSION = "bestview"
# The service's default rerank_alpha (the seed's default too): bestview's unweighted best view.
DEFAULT_ALPHA = 0.5
RRF_K = 60.0  # the usual constant of reciprocal rank fusion
TIE_SHARE = 0.01  # evidence: weight of the weighted sum, to order equal best views
# bestview: weight of the weighted sum beside the best view. A frame whose whole view and best
# window both match is surer than one that only one view matches (a large object's frame against
# a window that holds a look-alike). Chosen on both world models together at 10,000 frames (README
# "Retrieval quality": 0.05 keeps both targets on both; 0.1 lost small objects on the second
# model, 0.01 large ones on the first).
AGREEMENT_SHARE = 0.05


def standardised(x: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """``(x - median) / spread`` with median and spread taken over ``x[reference]`` (an index or
    mask; all of ``x`` by default, i.e. the candidates); spread is the robust standard deviation
    (1.4826 x the median absolute deviation), or the standard deviation where that is 0, or 1."""
    x = np.asarray(x, np.float64)
    sample = x if reference is None else x[reference]
    if len(sample) == 0:
        return x
    centre = float(np.median(sample))
    spread = 1.4826 * float(np.median(np.abs(sample - centre)))
    if spread <= 1e-12:
        spread = float(np.std(sample)) or 1.0
    return (x - centre) / spread


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based rank of each value, best (largest) first; ties share the better rank."""
    order = np.argsort(-x, kind="stable")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    return ranks


def fuse(g: np.ndarray, m: np.ndarray, alpha: float, method: str = DEFAULT_FUSION) -> np.ndarray:
    """The fused score of each candidate (larger is better) by ``method`` (see the module doc).

    alpha 1 orders exactly as ``g`` and alpha 0 exactly as ``m``, whatever the method."""
    g, m = np.asarray(g, np.float64), np.asarray(m, np.float64)
    if g.shape != m.shape:
        raise ValueError(f"score arrays differ in shape: {g.shape} vs {m.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if method == "linear":
        return alpha * g + (1 - alpha) * m
    if method == "bestview":
        return bestview(g, m, alpha)
    if method == "rrf":
        return alpha / (RRF_K + _ranks(g)) + (1 - alpha) / (RRF_K + _ranks(m))
    zg, zm = standardised(g), standardised(m)
    if method == "zscore":
        return alpha * zg + (1 - alpha) * zm
    if method == "evidence":
        return weighted_max(zg, zm, alpha)
    raise ValueError(f"unknown fusion {method!r}; choose one of {', '.join(FUSIONS)}")


def bestview(g: np.ndarray, m: np.ndarray, alpha: float, share: float = AGREEMENT_SHARE) -> np.ndarray:
    """The product's fusion: ``2 * max(alpha * g, (1 - alpha) * m)`` plus ``share`` of the
    weighted sum (``./dev bench fusion`` varies ``share``; the API uses AGREEMENT_SHARE)."""
    return weighted_max(g, m, alpha, scale=2.0, share=share)


def weighted_max(g: np.ndarray, m: np.ndarray, alpha: float, scale: float = 1.0, share: float = TIE_SHARE) -> np.ndarray:
    """``scale * max(alpha * g, (1 - alpha) * m)`` plus ``share`` of the weighted sum; at alpha
    0 or 1 exactly the one part (max() with a zero weight would flatten negative scores)."""
    if alpha in (0.0, 1.0):
        return g if alpha == 1.0 else m
    return scale * np.maximum(alpha * g, (1 - alpha) * m) + share * (alpha * g + (1 - alpha) * m)
