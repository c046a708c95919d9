"""Fusion methods and alphas side by side, over the quality benchmark's checkpoints (numpy only).

    ./dev bench quality --frames 1000 --keep     # first: library, pipeline, checkpoints
    ./dev bench fusion --frames 1000

For every caption of the needle library, every frame's global cosine and best-patch cosine are
computed from its checkpoint; the candidates are what the index would score (the global top
``--pool`` frames and the frames of the top ``--pool`` patches, found exactly here), ranked by each
method of ``resources.vector_index.fusion`` at each alpha, and by the candidate methods of
:data:`EXPERIMENTS` (not in the API). Prints recall@10 small / large per method and alpha: the
tables behind the default in README "The vector index" and "Retrieval quality".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.quality import K, recall_at, text_vectors  # noqa: E402
from resources.checkpoints.format import vectors  # noqa: E402
from resources.embedding.offline import load_encoder_or_offline  # noqa: E402
from resources.settings import encoder_config_from_env  # noqa: E402
from resources.vector_index.fusion import AGREEMENT_SHARE, DEFAULT_ALPHA, FUSIONS, bestview, fuse, standardised, weighted_max  # noqa: E402

ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.0)
SHARES = (0.0, 0.01, 0.05, 0.1, 0.15, 0.2, 0.3)


# Candidates for a default that holds across models, measured here before any reaches the API
# (README "Retrieval quality"). Each takes g and m over every frame, alpha, the two stages'
# frames (global pool, patch-stage frames) and a fixed random reference sample of frames.
EXPERIMENTS = {
    # Each score calibrated on its own stage's frames, then the stronger evidence wins.
    "stagemax": lambda g, m, a, pool, patch, ref: weighted_max(standardised(g, pool), standardised(m, patch), a),
    # Each score standardised against the library's own distribution for this query (a fixed random
    # sample of frames stands for it), then the stronger evidence wins.
    "nullmax": lambda g, m, a, pool, patch, ref: weighted_max(standardised(g, ref), standardised(m, ref), a),
    # Shift-only calibration (cosines keep their scale): each score minus its median over the
    # reference sample, then the stronger evidence wins.
    "shiftmax": lambda g, m, a, pool, patch, ref: weighted_max(g - np.median(g[ref]), m - np.median(m[ref]), a),
}


def ranked(candidates: np.ndarray, fused: np.ndarray) -> list[int]:
    """The candidates (frame indices) ordered by their fused scores, best first."""
    return candidates[np.argsort(-fused, kind="stable")].tolist()


def load_checkpoints(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Image ids, global vectors (frames, dim) and patch vectors (frames, patches, dim); every
    frame of the quality library has the same patch count (one frame size)."""
    ids, globals_, patches = [], [], []
    for path in sorted(folder.glob("video_*.parquet")):
        table = pq.read_table(path)
        dim = len(table.column("global_vector")[0])
        ids += [f"{v}:{f}" for v, f in zip(table.column("video_id").to_pylist(), table.column("frame_id").to_pylist())]
        globals_.append(vectors(table.column("global_vector"), dim))
        flat = vectors(table.column("patch_vectors").combine_chunks().flatten(), dim)
        patches.append(flat.reshape(len(table), -1, dim))
    return ids, np.concatenate(globals_), np.concatenate(patches)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2_000, help="the library size given to bench quality")
    parser.add_argument("--path", type=Path, help="bench quality's working folder (default var/bench/quality-<frames>)")
    parser.add_argument("--pool", type=int, default=100, help="global pool and patch hits (the service's defaults)")
    parser.add_argument("--reference", type=int, default=64, help="frames in the random reference sample of the null-calibrated experiments")
    args = parser.parse_args(argv)
    work = args.path or Path(f"var/bench/quality-{args.frames}")
    if not (work / "checkpoints").is_dir():
        parser.error(f"no checkpoints under {work}: run ./dev bench quality --frames {args.frames} --keep first")
    queries = json.loads((work / "library" / "ground_truth.json").read_text())["queries"]
    ids, globals_, patches = load_checkpoints(work / "checkpoints")
    position = {image_id: i for i, image_id in enumerate(ids)}
    encoder, _ = load_encoder_or_offline(encoder_config_from_env())
    texts = text_vectors(encoder, [q["caption"] for q in queries])
    reference = np.random.default_rng(0).choice(len(ids), size=min(args.reference, len(ids)), replace=False)
    recall: dict[tuple[str, str, float], list[float]] = {}
    for query, text in zip(queries, texts):
        g = globals_ @ text
        per_patch = np.einsum("fpd,d->fp", patches, text)
        m = per_patch.max(axis=1)
        pool, patch = np.argsort(-g)[: args.pool], np.unique(np.argsort(-per_patch.ravel())[: args.pool] // patches.shape[1])
        candidates = np.unique(np.concatenate([pool, patch]))
        relevant = [position[r] for r in query["relevant"]]
        for name, method_fn in EXPERIMENTS.items():
            for alpha in ALPHAS:
                recall.setdefault((query["size"], name, alpha), []).append(recall_at(ranked(candidates, method_fn(g, m, alpha, pool, patch, reference)[candidates]), relevant))
        for share in SHARES:  # bestview at the default alpha, by the weight of the views' agreement
            recall.setdefault((query["size"], "share", share), []).append(recall_at(ranked(candidates, bestview(g[candidates], m[candidates], DEFAULT_ALPHA, share=share)), relevant))
        for method in FUSIONS:
            for alpha in ALPHAS:
                recall.setdefault((query["size"], method, alpha), []).append(recall_at(ranked(candidates, fuse(g[candidates], m[candidates], alpha, method)), relevant))
    print(f"{len(ids):,} frames, {len(queries)} captions; recall@{K} small / large, candidates = global top {args.pool} + frames of the top {args.pool} patches")
    print(f"{'fusion':10s}" + "".join(f"{'alpha ' + str(a):>14s}" for a in ALPHAS))
    for method in (*FUSIONS, *EXPERIMENTS):
        cells = "".join(f"{np.mean(recall[('small', method, a)]):>8.2f} /{np.mean(recall[('large', method, a)]):>4.2f}" for a in ALPHAS)
        print(f"{method:10s}{cells}")
    print(f"bestview at alpha {DEFAULT_ALPHA} by the agreement share (the product: {AGREEMENT_SHARE}):")
    print("  ".join(f"{share}: {np.mean(recall[('small', 'share', share)]):.2f} /{np.mean(recall[('large', 'share', share)]):.2f}" for share in SHARES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
