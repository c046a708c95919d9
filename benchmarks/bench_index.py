"""Vector index at scale: candidates from patches against today's global prefetch, beside numpy.

    ./dev bench index                    # 100,000 frames x 24 patches x 512-d, embedded Qdrant Edge
    ./dev bench index --frames 20000     # smaller
    ./dev bench index --shot-frames 10 --companion-dedup off,0.95   # video-like shots, both layouts side by side
    ./dev bench index --frames 20000 --memory qdrant,cached,cold    # INDEX_MEMORY tiers side by side

Loads synthetic unit vectors through the real per-video sync (videos of 100 frames; frames
clustered by video, patches around their frame, as in footage) into both collections, then
optimizes (builds the HNSW graphs). ``--needles`` targets are each planted as ONE patch of
``--needle-frames`` frames whose global vectors know nothing of them: a small object.

Queries, top 10, each through the product's search in two ways side by side - ``patch
candidates`` (the global pool plus the frames of the nearest patches; the product) and ``global
prefetch`` (the global pool only; the product before the companion collection):

- *needle, text*: one query vector, the target (a caption names the object); alpha 0 and the
  default fusion. Needle recall@10: the share of the planted frames in the top 10, against the
  share in the exhaustive numpy MaxSim top 10 (every frame's 24 patches scored in float32).
- *image*: 24 query vectors, noisy copies of a stored frame's patches; alpha 0. Top-10 overlap
  with the exhaustive numpy MaxSim ranking (this measures candidates and the turbo8 storage of
  patch multivectors together).

``--shot-frames N`` makes the footage video-like (shots of N frames sharing their windows, a share
``--change`` of them drawn anew every frame; see :class:`Footage`), and ``--companion-dedup
off,0.95`` builds each COMPANION_DEDUP setting in its own process, side by side in one run, and
ends with a table of both: companion points per frame, peak RAM, disk per frame, load rate,
optimize time, needle recall, text and image p50. ``--memory qdrant,cached,cold`` does the same for
INDEX_MEMORY tiers (and with both lists, every pair), and each layout is also opened afresh in a
process of its own that runs text queries, its files first evicted from the page cache: the RAM
a service needs to serve it, and how a restart's first query fares.

Also: load rate, optimize time, disk per patch (allocated blocks, per collection) and the
process's peak RSS and RSS growth. Patch vectors are regenerated from per-frame seeds for the reference, so
the benchmark's own memory stays ~200 MB for 100k frames.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_results  # noqa: E402
from resources.vector_index import VectorIndex, index_layout  # noqa: E402
from resources.vector_index.layout import DEFAULT_PATCH_SEARCH_EF  # noqa: E402
from resources.vector_index.schema import IndexPoint, IndexSchema, SearchFilters, point_id  # noqa: E402

DIM, PATCHES, FRAMES_PER_VIDEO = 512, 24, 100


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class Footage:
    """How the synthetic frames relate in time. ``shot_frames`` 1: every frame drawn on its own
    around its video's direction (the layout's worst case for temporal dedup). N > 1: shots of N
    frames that share their windows - each frame's window is the shot's plus a little noise (cosine
    ~0.99, as decoded video gives), except ``change`` of them, drawn anew every frame (things that
    move)."""

    shot_frames: int = 1
    change: float = 0.25

    def frame_vectors(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic global (dim,) and patch (PATCHES, dim) unit vectors of frame ``index``.

        Like real footage, frames of one video are near their video's direction and patches near
        their frame's: uniformly random 512-d vectors would make every neighbour equally far, and
        recall meaningless."""
        video = index // FRAMES_PER_VIDEO
        centre = np.random.default_rng(10_000_000 + video).normal(size=DIM).astype(np.float32)
        if self.shot_frames == 1:
            rng = np.random.default_rng(index)
            frame = unit(centre + 0.7 * rng.normal(size=DIM).astype(np.float32))
            # Unit noise: a patch's cosine is ~0.64 with its frame and ~0.41 with the frame's other
            # patches, as CLIP patches go. (Until 2026-11-30 the noise was not normalized: cosine
            # 0.05 with the frame and 0.003 between patches - uniformly random 512-d patch vectors,
            # the worst case for a graph index, which every figure before that date measured.)
            noise = rng.normal(size=(PATCHES, DIM)).astype(np.float32)
            return frame, unit(frame + 1.2 * unit(noise))
        shot_rng = np.random.default_rng([20_000_000, video, (index % FRAMES_PER_VIDEO) // self.shot_frames])
        shot = unit(centre + 0.7 * shot_rng.normal(size=DIM).astype(np.float32))
        windows = unit(shot + 1.2 * unit(shot_rng.normal(size=(PATCHES, DIM)).astype(np.float32)))
        rng = np.random.default_rng(index)
        patches = unit(windows + 0.1 * unit(rng.normal(size=(PATCHES, DIM)).astype(np.float32)))
        moving = rng.random(PATCHES) < self.change
        patches[moving] = unit(shot + 1.2 * unit(rng.normal(size=(int(moving.sum()), DIM)).astype(np.float32)))
        return unit(shot + 0.1 * unit(rng.normal(size=DIM).astype(np.float32))), patches


class Needles:
    """``count`` target vectors, each planted as one patch of ``per_target`` random frames."""

    def __init__(self, frames: int, count: int, per_target: int, footage: Footage = Footage(), seed: int = 777) -> None:
        rng = np.random.default_rng(seed)
        self.footage = footage
        self.targets = unit(rng.normal(size=(count, DIM)))
        chosen = rng.choice(frames, count * per_target, replace=False)
        self.frames = chosen.reshape(count, per_target)  # (targets, frames holding each)
        self.planted = {int(f): (t, int(rng.integers(PATCHES))) for t, row in enumerate(self.frames) for f in row}
        self.noise = {int(f): unit(self.targets[t] + 0.5 * unit(rng.normal(size=DIM))) for f, (t, _) in self.planted.items()}

    def patches(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        g, p = self.footage.frame_vectors(frame)
        if frame in self.planted:  # cosine ~0.89 with its target: an object a patch sees well
            p = p.copy()
            p[self.planted[frame][1]] = self.noise[frame]
        return g, p


def load(index: VectorIndex, videos: int, needles: Needles, globals_: np.ndarray) -> tuple[float, float]:
    """Sync every video through the real path; returns (seconds generating, seconds syncing)."""
    gen_s = sync_s = 0.0
    for video in range(videos):
        started = time.perf_counter()
        points = []
        for f in range(FRAMES_PER_VIDEO):
            i = video * FRAMES_PER_VIDEO + f
            g, p = needles.patches(i)
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
        if video % 100 == 99:
            print(f"  loaded {(video + 1) * FRAMES_PER_VIDEO:,} frames, {sync_s:.0f} s", flush=True)
    return gen_s, sync_s


def exhaustive_maxsim(frames: int, needles: Needles, query_rows: list[np.ndarray]) -> np.ndarray:
    """(queries, frames) MaxSim (mean over rows of the best patch cosine), float32, every frame."""
    stacked = np.concatenate(query_rows)  # (all rows, dim)
    bounds = np.cumsum([0] + [len(q) for q in query_rows])
    out = np.empty((len(query_rows), frames), np.float32)
    for i in range(frames):
        best = (needles.patches(i)[1] @ stacked.T).max(axis=0)  # (all rows,)
        out[:, i] = np.add.reduceat(best, bounds[:-1]) / np.diff(bounds)
    return out


def allocated_bytes(path: Path) -> int:
    return int(subprocess.check_output(["du", "-s", "--block-size=1", str(path)]).split()[0])


def rss_bytes(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(f"{field}:"))


class MemoryPeaks:
    """Peak anonymous and file-backed resident memory of this process, sampled every 0.2 s.

    The split matters: Edge memory-maps its segments, and mapped file pages count in RSS although
    the kernel can drop them under pressure (page cache). Anonymous memory - heaps, the graph being
    built - is what a machine must really hold."""

    def __init__(self) -> None:
        self.anon = self.file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.anon = max(self.anon, rss_bytes("RssAnon"))
            self.file = max(self.file, rss_bytes("RssFile"))

    def __enter__(self) -> MemoryPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 99))


SCHEMA = IndexSchema("frames_bench", DIM)


def evict_from_page_cache(path: Path) -> None:
    """Drop the clean cached pages of every file under ``path`` (``POSIX_FADV_DONTNEED``), so that
    the next open reads from disk as after a reboot: no root needed, other files untouched."""
    for file in path.rglob("*"):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)  # dirty pages are not dropped
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def serve_probe(path: Path, quantization: str | None, queries: int = 60) -> dict[str, float]:
    """Open the index at ``path`` in this (fresh) process, its files evicted from the page cache
    first, and run text queries: the resident memory a search service holds for it, anonymous
    (heap) apart from mapped files (page cache), after opening and after the queries; the open's
    seconds, the first query's and the rest's p50; and a second open's seconds, its pages cached."""
    rng = np.random.default_rng(4321)
    evict_from_page_cache(path)
    base = rss_bytes("RssAnon")
    started = time.perf_counter()
    with VectorIndex.open(SCHEMA, path=path, layout=index_layout(SCHEMA, patch_quantization=quantization)) as index:
        open_s = time.perf_counter() - started
        opened_anon, opened_file = rss_bytes("RssAnon") - base, rss_bytes("RssFile")
        times = []
        for _ in range(queries):
            q = unit(rng.normal(size=DIM))
            started = time.perf_counter()
            index.search(q, top_k=10, patch_queries=q[None], alpha=0.0)
            times.append((time.perf_counter() - started) * 1000)
        served = {
            "open_s": open_s, "open_anon_bytes": opened_anon, "open_file_bytes": opened_file,
            "served_anon_bytes": rss_bytes("RssAnon") - base, "served_file_bytes": rss_bytes("RssFile"),
            "first_query_ms": times[0], "text_p50_ms": percentiles(times[1:])[0],
        }
    # Reopening with the pages still cached, as a run's sync session does every EMBEDDED_HOLD_S.
    started = time.perf_counter()
    VectorIndex.open(SCHEMA, path=path).close()
    served["reopen_s"] = time.perf_counter() - started
    return served


def run_layout(args: argparse.Namespace, dedup: float | None, memory: str | None = None, quantization: str | None = None) -> dict[str, object]:
    """Build, load, optimize and query one layout in this process; its figures."""
    shutil.rmtree(args.path, ignore_errors=True)
    schema = SCHEMA
    layout = index_layout(schema, patch_search_ef=args.patch_ef, companion_dedup=dedup, memory=memory, patch_quantization=quantization)
    videos = args.frames // FRAMES_PER_VIDEO
    frames = videos * FRAMES_PER_VIDEO
    footage = Footage(args.shot_frames, args.change)
    needles = Needles(frames, args.needles, args.needle_frames, footage)
    globals_ = np.empty((frames, DIM), np.float32)
    results: dict[str, object] = {
        "frames": frames, "patches_per_frame": PATCHES, "dim": DIM, "cpu": os.cpu_count(), "patch_search_ef": args.patch_ef,
        "shot_frames": args.shot_frames, "change": args.change, "companion_dedup": dedup, "index_memory": memory or "qdrant",
        "patch_quantization": quantization or "off",
    }
    print(f"{frames:,} frames x {PATCHES} patches x {DIM}-d ({frames * PATCHES:,} patch vectors), {videos} videos, "
          f"{args.needles} targets planted in {args.needle_frames} frames each; "
          + (f"shots of {args.shot_frames} frames ({args.change:.0%} of windows moving); " if args.shot_frames > 1 else "frames drawn independently; ")
          + f"COMPANION_DEDUP={dedup or 'off'}, INDEX_MEMORY={memory or 'qdrant'}, patch graph quantization {quantization or 'off'}; embedded Qdrant Edge, patch graph beam {args.patch_ef}", flush=True)

    rss_before = rss_bytes()
    with MemoryPeaks() as peaks, VectorIndex.open(schema, path=args.path, layout=layout) as index:
        gen_s, sync_s = load(index, videos, needles, globals_)
        started = time.perf_counter()
        index.optimize()
        optimize_s = time.perf_counter() - started
        print(f"\nload: {frames / sync_s:,.0f} frames/s = {frames * PATCHES / sync_s:,.0f} patch points/s ({sync_s:.0f} s sync; "
              f"{gen_s:.0f} s generating); optimize (HNSW graphs): {optimize_s:.0f} s", flush=True)
        results.update(load_frames_per_s=frames / sync_s, sync_s=sync_s, optimize_s=optimize_s)

        rng = np.random.default_rng(12345)
        text_rows = [t[None] for t in needles.targets]
        picks = rng.integers(0, frames, args.image_queries)
        image_rows = [unit(needles.patches(int(i))[1] + 0.05 * unit(rng.normal(size=(PATCHES, DIM)))) for i in picks]
        image_globals = [unit(globals_[i] + 0.8 * unit(rng.normal(size=DIM))) for i in picks]
        started = time.perf_counter()
        reference = exhaustive_maxsim(frames, needles, text_rows + image_rows)
        print(f"numpy exhaustive MaxSim over every frame's patches: {time.perf_counter() - started:.0f} s for "
              f"{len(text_rows) + len(image_rows)} queries", flush=True)
        to_id = [point_id(i // FRAMES_PER_VIDEO, i % FRAMES_PER_VIDEO) for i in range(frames)]

        def run(kind: str, patch_pool: int | None, alpha: float) -> dict[str, float]:
            times, recall, ceiling, overlap, storage = [], [], [], [], []
            cases = (
                [(t, rows, needles.frames[n]) for n, (t, rows) in enumerate(zip(needles.targets, text_rows))]
                if kind == "text" else [(g, rows, None) for g, rows in zip(image_globals, image_rows)]
            )
            offset = 0 if kind == "text" else len(text_rows)
            for n, (vector, rows, planted) in enumerate(cases):
                started = time.perf_counter()
                hits = index.search(vector, top_k=10, patch_queries=rows, alpha=alpha, patch_pool=patch_pool)
                times.append((time.perf_counter() - started) * 1000)
                got = {h.point_id for h in hits}
                ranked = np.argsort(-reference[offset + n])
                exact = ranked[:10]
                overlap.append(len(got & {to_id[i] for i in exact}) / 10)
                if patch_pool is None:  # storage alone: the exhaustive top 100 as the candidates
                    pinned = SearchFilters(point_ids=tuple(to_id[i] for i in ranked[:100]))
                    scored = index.search(vector, top_k=10, patch_queries=rows, alpha=0.0, filters=pinned)
                    storage.append(len({h.point_id for h in scored} & {to_id[i] for i in exact}) / 10)
                if planted is not None:
                    recall.append(len(got & {to_id[i] for i in planted}) / len(planted))
                    ceiling.append(len(set(exact.tolist()) & set(planted.tolist())) / len(planted))
            p50, p99 = percentiles(times)
            row = {"p50_ms": p50, "p99_ms": p99, "overlap_with_exhaustive_top10": float(np.mean(overlap))}
            if storage:  # top 10 of the same 100 candidates: turbo8 multivectors vs float32 numpy
                row["storage_overlap_top10"] = float(np.mean(storage))
            if recall:
                row.update(needle_recall_at_10=float(np.mean(recall)), exhaustive_needle_recall_at_10=float(np.mean(ceiling)))
            return row

        for rows in text_rows[:10] + image_rows[:10]:  # untimed: the first queries page the new segments in
            index.search(rows[0], top_k=10, patch_queries=rows, alpha=0.0)
        print(f"\n{'query, top 10':52s} {'p50 ms':>7s} {'p99 ms':>7s} {'overlap':>8s} {'needles':>8s} {'ceiling':>8s}")
        for kind, alpha in (("text", 0.0), ("text", 0.5), ("image", 0.0)):
            for label, patch_pool in (("patch candidates", None), ("global prefetch only", 0)):
                row = run(kind, patch_pool, alpha)
                name = f"{kind} ({'1 vector' if kind == 'text' else '24 vectors'}), alpha {alpha}, {label}"
                needle = f"{row['needle_recall_at_10']:8.3f} {row['exhaustive_needle_recall_at_10']:8.3f}" if "needle_recall_at_10" in row else ""
                stored = f"  (same candidates, turbo8 vs float32: {row['storage_overlap_top10']:.3f})" if "storage_overlap_top10" in row else ""
                print(f"{name:52s} {row['p50_ms']:7.1f} {row['p99_ms']:7.1f} {row['overlap_with_exhaustive_top10']:8.3f} {needle}{stored}", flush=True)
                results[name] = row
        results["rss_growth_bytes"] = rss_bytes() - rss_before
        results["companion_points"] = index.count_patches()

    # Peak, not final: the graph build's high-water mark is what a machine must hold.
    results["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    results.update(peak_anon_bytes=peaks.anon, peak_file_bytes=peaks.file)
    patches = frames * PATCHES
    sizes = {c.name: allocated_bytes(args.path / c.name) for c in index.layout.collections}
    total = allocated_bytes(args.path)
    points = int(results["companion_points"])  # type: ignore[call-overload]
    print(f"\ncompanion points: {points:,} = {points / frames:.1f} a frame ({points / patches:.2f} of the planned patches)")
    print(f"disk (allocated): {total / 1e9:.2f} GB = {total / frames:,.0f} B per frame, {total / patches:,.0f} B per planned patch "
          + ", ".join(f"{name} {size / patches:,.0f} B" for name, size in sizes.items())
          + f"; RAM: peak {results['peak_rss_bytes'] / 1e9:.2f} GB = anonymous {peaks.anon / 1e9:.2f} GB + mapped files up to "
          f"{peaks.file / 1e9:.2f} GB (page cache), growth {results['rss_growth_bytes'] / 1e9:.2f} GB (include 0.2 GB of the benchmark's own arrays)", flush=True)
    results.update(disk_bytes=total, disk_bytes_per_frame=total / frames, disk_bytes_per_patch=total / patches, collections_bytes=sizes)
    # Serving: a fresh process, so that none of the build's heap or pages are counted.
    probe = subprocess.run([sys.executable, __file__, "--serve-probe", str(args.path), "--patch-quantization", quantization or "off"], check=True, capture_output=True, text=True)
    serving = json.loads(probe.stdout.strip().splitlines()[-1])
    results["serving"] = serving
    print(f"serving (a fresh process opening the index, its files out of the page cache, then 60 text queries): open {serving['open_s']:.1f} s, "
          f"anonymous {serving['open_anon_bytes'] / 1e6:,.0f} MB "
          f"after opening, {serving['served_anon_bytes'] / 1e6:,.0f} MB after the queries; mapped files {serving['served_file_bytes'] / 1e6:,.0f} MB; "
          f"first query {serving['first_query_ms']:.0f} ms, then p50 {serving['text_p50_ms']:.1f} ms; reopening it then: {serving['reopen_s']:.2f} s", flush=True)
    if not args.keep:
        shutil.rmtree(args.path, ignore_errors=True)
    return results


def settings(values: str, none: str) -> list[str | None]:
    """A comma-separated option's settings, lower case; ``none`` (e.g. "off") becomes None."""
    return [None if v == none else v for v in (v.strip().lower() for v in values.split(","))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--needles", type=int, default=50, help="planted targets (text queries)")
    parser.add_argument("--needle-frames", type=int, default=3, help="frames holding each target")
    parser.add_argument("--image-queries", type=int, default=50)
    parser.add_argument("--shot-frames", type=int, default=1, help="frames per shot sharing their windows (1: independent frames)")
    parser.add_argument("--change", type=float, default=0.25, help="share of a shot's windows drawn anew every frame")
    parser.add_argument("--companion-dedup", default="off",
                        help="comma-separated COMPANION_DEDUP settings, each built and measured side by side in its own process (e.g. off,0.95)")
    parser.add_argument("--memory", default="cached",
                        help="comma-separated INDEX_MEMORY tiers (qdrant, cached, cold), each built and measured side by side in its own process")
    parser.add_argument("--patch-quantization", default="off",
                        help="comma-separated quantizations of the patch graph (off, binary1, binary2; searched with rescoring), side by side")
    parser.add_argument("--serve-probe", type=Path, help=argparse.SUPPRESS)  # internal: the serving measurement's fresh process
    parser.add_argument("--path", type=Path, default=Path("var/bench/index"))
    parser.add_argument("--keep", action="store_true", help="keep the index on disk afterwards")
    parser.add_argument("--patch-ef", type=int, default=DEFAULT_PATCH_SEARCH_EF, help="search beam of the patch graph for text queries (PATCH_SEARCH_EF)")
    parser.add_argument("--out", type=Path, default=Path("var/bench/index.json"))
    args = parser.parse_args(argv)

    dedups = [None if v is None else float(v) for v in settings(args.companion_dedup, "off")]
    tiers = settings(args.memory, "qdrant")
    quantizations = settings(args.patch_quantization, "off")
    if args.serve_probe is not None:
        print(json.dumps(serve_probe(args.serve_probe, quantizations[0])))
        return 0
    if len(dedups) == 1 and len(tiers) == 1 and len(quantizations) == 1:
        write_results(args.out, run_layout(args, dedups[0], tiers[0], quantizations[0]))
        return 0
    # One process per layout: each peak RSS is that layout's own, and no layout runs warm on another's pages.
    results: dict[str, object] = {}
    for dedup, tier, quantization in itertools.product(dedups, tiers, quantizations):
        with tempfile.TemporaryDirectory() as tmp:
            child_out = Path(tmp) / "layout.json"
            command = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--companion-dedup", str(dedup or "off"),
                       "--memory", tier or "qdrant", "--patch-quantization", quantization or "off", "--out", str(child_out)]
            subprocess.run(command, check=True)
            name = f"dedup_{dedup or 'off'}/{tier or 'qdrant'}" + (f"/{quantization}" if quantization else "")
            results[name] = json.loads(child_out.read_text())
    print(f"\n{'layout':30s} {'points/frame':>12s} {'build peak anon GB':>18s} {'serve anon MB':>13s} {'disk B/frame':>12s} {'load fr/s':>9s} "
          f"{'optimize s':>10s} {'needles':>8s} {'text p50':>8s} {'image p50':>9s} {'open s':>6s} {'1st q ms':>8s} {'fresh p50':>9s}")
    for name, row in results.items():
        text = row["text (1 vector), alpha 0.0, patch candidates"]  # type: ignore[index]
        image = row["image (24 vectors), alpha 0.0, patch candidates"]  # type: ignore[index]
        serving = row["serving"]  # type: ignore[index]
        print(f"{name:30s} {row['companion_points'] / row['frames']:12.1f} {row['peak_anon_bytes'] / 1e9:18.2f} "  # type: ignore[index]
              f"{serving['served_anon_bytes'] / 1e6:13,.0f} "
              f"{row['disk_bytes_per_frame']:12,.0f} {row['load_frames_per_s']:9,.0f} {row['optimize_s']:10.0f} "  # type: ignore[index]
              f"{text['needle_recall_at_10']:8.3f} {text['p50_ms']:8.1f} {image['p50_ms']:9.1f} {serving['open_s']:6.1f} {serving['first_query_ms']:8.0f} {serving['text_p50_ms']:9.1f}")
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
