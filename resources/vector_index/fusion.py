"""How a candidate's two scores become one: pure numpy over the candidate set of one query.

``g`` is the global cosine, ``m`` the MaxSim score (mean over query rows of the best patch
cosine). ``alpha`` keeps its seed meaning everywhere: 1 ranks by ``g`` alone, 0 by ``m`` alone.

The product fuses with ``linear``, ``alpha * g + (1 - alpha) * m`` (the seed's formula: a score
on the cosine scale that a person can read beside its two parts), at the service's default
``rerank_alpha`` 0.3. What changed is not the formula but which frames it sees - candidates now
come from the patches too - and the default weight: across frames the global cosine varies as
much as the best patch's but says nothing about a small object, so at 0.5 it ranks by background.
Measured through the index on the synthetic world's needle library (1,000 frames, the committed
model; README "Retrieval quality"), recall@10 small / large objects:

    alpha                  0          0.2        0.3        0.4        0.5        1
    linear (product)       0.36/0.33  0.36/0.67  0.33/0.78  0.25/0.83  0.22/0.83  0.03/0.83
    zscore                 0.36/0.33  0.39/0.56  0.25/0.67  0.22/0.72  0.22/0.83  0.03/0.83
    evidence               0.36/0.33  0.36/0.50  0.33/0.61  0.28/0.72  0.22/0.89  0.03/0.83

The alternatives stay here for ``./dev bench fusion`` to measure (over the checkpoints of
``./dev bench quality --keep``), not for the API:

- ``zscore``: the same sum over per-query standardised scores (each minus its median over the
  candidates, divided by its robust spread).
- ``rrf``: reciprocal rank fusion, ``alpha / (k + rank_g) + (1 - alpha) / (k + rank_m)``.
- ``evidence``: standardised, then ``max(alpha * zg, (1 - alpha) * zm)`` plus a small share of
  their sum: a frame ranked by its strongest evidence. Best on large objects at 0.5, but the
  standardisation over a candidate set that mixes the global pool with patch-found frames
  does not calibrate the two parts well enough to beat the plain sum on small ones.
"""

from __future__ import annotations

import numpy as np

FUSIONS = ("linear", "zscore", "rrf", "evidence")
DEFAULT_FUSION = "linear"
# The service's default rerank_alpha: small objects keep >= 0.9 of their patch-only recall while
# large ones keep most of the global vector's (see the table above).
DEFAULT_ALPHA = 0.3
RRF_K = 60.0  # the usual constant of reciprocal rank fusion
TIE_SHARE = 0.01  # evidence: weight of the linear sum of standardised scores, to order equals


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
    if method == "rrf":
        return alpha / (RRF_K + _ranks(g)) + (1 - alpha) / (RRF_K + _ranks(m))
    zg, zm = standardised(g), standardised(m)
    if method == "zscore":
        return alpha * zg + (1 - alpha) * zm
    if method == "evidence":
        if alpha in (0.0, 1.0):  # one part alone: exactly its order (max() would flatten the rest)
            return zg if alpha == 1.0 else zm
        return np.maximum(alpha * zg, (1 - alpha) * zm) + TIE_SHARE * (alpha * zg + (1 - alpha) * zm)
    raise ValueError(f"unknown fusion {method!r}; choose one of {', '.join(FUSIONS)}")
