"""Vector index load rate and query latency at scale, beside a numpy brute-force reference.

    ./dev bench index                    # 100,000 frames x 24 patches x 512-d, embedded Qdrant Edge
    ./dev bench index --frames 20000     # smaller

Loads synthetic unit vectors through the real per-video sync (1,000 videos of 100 frames), then
times global top-10 search and global-prefetch + MaxSim-rerank top-10 (24 query patch vectors,
pool 100), unfiltered and filtered, and the same queries in numpy over vectors held in memory.
Also reports recall@10 of the indexed search against the exact numpy answer. Patch vectors are
regenerated from per-frame seeds for the reference, so memory stays ~200 MB for 100k frames.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_results  # noqa: E402

from resources.index_schema import IndexPoint, IndexSchema, SearchFilters  # noqa: E402
from resources.vector_index import VectorIndex  # noqa: E402

DIM, PATCHES, FRAMES_PER_VIDEO = 512, 24, 100


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def frame_vectors(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic global (dim,) and patch (PATCHES, dim) unit vectors of frame ``index``.

    Like real footage, frames of one video are near their video's direction and patches near
    their frame's: uniformly random 512-d vectors would make every neighbour equally far, and
    recall meaningless."""
    video = index // FRAMES_PER_VIDEO
    centre = np.random.default_rng(10_000_000 + video).normal(size=DIM).astype(np.float32)
    rng = np.random.default_rng(index)
    frame = unit(centre + 0.7 * rng.normal(size=DIM).astype(np.float32))
    return frame, unit(frame + 1.2 * rng.normal(size=(PATCHES, DIM)).astype(np.float32))


def load_synthetic_library(index: VectorIndex, videos: int, globals_: np.ndarray) -> tuple[float, float]:
    """Sync ``videos`` x FRAMES_PER_VIDEO synthetic frames through the real per-video path,
    filling ``globals_`` (frames, DIM); returns (seconds generating, seconds syncing)."""
    gen_s, sync_s = 0.0, 0.0
    for video in range(videos):
        started = time.perf_counter()
        points = []
        for f in range(FRAMES_PER_VIDEO):
            i = video * FRAMES_PER_VIDEO + f
            g, p = frame_vectors(i)
            globals_[i] = g
            payload = {
                "image_id": f"{video}:{f}", "video_id": video, "frame_id": f, "timestamp_ms": f * 40,
                "url": f"s3://bench/{video}/{f}.jpg", "width": 1920, "height": 1080,
            }
            points.append(IndexPoint(video, f, g, p, payload))
        gen_s += time.perf_counter() - started
        started = time.perf_counter()
        index.sync_video(video, points, "v1")
        sync_s += time.perf_counter() - started
    return gen_s, sync_s


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 99))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--path", type=Path, default=Path("var/bench/index"))
    parser.add_argument("--keep", action="store_true", help="keep the shard on disk afterwards")
    parser.add_argument("--out", type=Path, default=Path("var/bench/index.json"))
    args = parser.parse_args(argv)

    shutil.rmtree(args.path, ignore_errors=True)
    schema = IndexSchema("frames_bench", DIM)
    videos = args.frames // FRAMES_PER_VIDEO
    globals_ = np.empty((videos * FRAMES_PER_VIDEO, DIM), np.float32)
    results: dict[str, object] = {"frames": len(globals_), "patches_per_frame": PATCHES, "dim": DIM}
    print(f"{len(globals_):,} frames x {PATCHES} patches x {DIM}-d, {videos} videos; embedded Qdrant Edge", flush=True)

    with VectorIndex.open(schema, path=args.path) as index:
        gen_s, sync_s = load_synthetic_library(index, videos, globals_)
        started = time.perf_counter()
        index.optimize()
        optimize_s = time.perf_counter() - started
        load_rate = len(globals_) / sync_s
        print(flush=True)
        print(f"load: {load_rate:,.0f} points/s ({sync_s:.1f} s sync, {optimize_s:.1f} s optimize; {gen_s:.1f} s generating)")
        results.update(load_points_per_s=load_rate, sync_s=sync_s, optimize_s=optimize_s)

        rng = np.random.default_rng(12345)
        picks = rng.integers(0, len(globals_), args.queries)
        queries = [(unit(globals_[i] + 0.8 * unit(rng.normal(size=DIM))), frame_vectors(int(i))[1]) for i in picks]
        # A query is a noisy copy of a stored frame; its nearest neighbours are mostly that
        # frame's video-mates, with small score gaps, as in a real library.
        filters = SearchFilters(video_ids=tuple(range(0, videos, 10)), frame_id_min=10, frame_id_max=80)
        allowed = np.zeros(len(globals_), bool)
        for v in filters.video_ids or ():
            allowed[v * FRAMES_PER_VIDEO + 10 : v * FRAMES_PER_VIDEO + 81] = True

        def qdrant(kind: str, flt: SearchFilters) -> tuple[list[float], list[list[str]]]:
            times, answers = [], []
            for g, p in queries:
                started = time.perf_counter()
                hits = index.search(g, top_k=10, filters=flt, patch_queries=p if kind == "rerank" else None, alpha=0.5)
                times.append((time.perf_counter() - started) * 1000)
                answers.append([h.point_id for h in hits])
            return times, answers

        def numpy_search(kind: str, mask: np.ndarray | None) -> tuple[list[float], list[list[int]]]:
            times, answers = [], []
            for g, p in queries:
                started = time.perf_counter()
                scores = globals_ @ g  # (frames,)
                if mask is not None:
                    scores = np.where(mask, scores, -np.inf)
                if kind == "global":
                    top = np.argpartition(-scores, 10)[:10]
                    top = top[np.argsort(-scores[top])]
                else:
                    pool = np.argpartition(-scores, 100)[:100]
                    maxsim = np.array([(p @ frame_vectors(int(i))[1].T).max(axis=1).mean() for i in pool])
                    fused = 0.5 * scores[pool] + 0.5 * maxsim
                    top = pool[np.argsort(-fused)[:10]]
                times.append((time.perf_counter() - started) * 1000)
                answers.append(top.tolist())
            return times, answers

        from resources.index_schema import point_id

        def recall(got: list[list[str]], want: list[list[int]]) -> float:
            hits = 0
            for g_ids, w_ids in zip(got, want):
                expected = {point_id(i // FRAMES_PER_VIDEO, i % FRAMES_PER_VIDEO) for i in w_ids}
                hits += len(expected & set(g_ids))
            return hits / (10 * len(got))

        print(f"\n{'query (top 10)':34s} {'p50 ms':>8s} {'p99 ms':>8s}   {'numpy p50':>9s} {'numpy p99':>9s}  recall@10")
        for kind in ("global", "rerank"):
            for label, flt, mask in (("", SearchFilters(), None), (" + filter", filters, allowed)):
                q_times, q_ids = qdrant(kind, flt)
                n_times, n_ids = numpy_search(kind, mask)
                (q50, q99), (n50, n99) = percentiles(q_times), percentiles(n_times)
                r = recall(q_ids, n_ids)
                name = ("global search" if kind == "global" else "prefetch 100 + MaxSim rerank") + label
                print(f"{name:34s} {q50:8.2f} {q99:8.2f}   {n50:9.2f} {n99:9.2f}  {r:9.3f}")
                results[name] = {"p50_ms": q50, "p99_ms": q99, "numpy_p50_ms": n50, "numpy_p99_ms": n99, "recall_at_10": r}

    size = sum(f.stat().st_size for f in args.path.rglob("*") if f.is_file())
    results["disk_bytes"] = size
    print(f"\nshard on disk: {size / 1e9:.2f} GB (apparent size)")
    if not args.keep:
        shutil.rmtree(args.path, ignore_errors=True)
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
