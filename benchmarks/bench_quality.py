"""Retrieval quality on the synthetic shapes world, through the real pipeline and service.

    ./dev bench quality                    # 2,000 frames
    ./dev bench quality --frames 10000 --keep

Builds a needle library (benchmarks/quality.py: for each of 12 small-object captions, 3 frames
hold a small target among distractors; 6 large-object captions, 3 frames each; every other frame
holds only unqueried classes), runs it through the project's Dagster assets into Parquet
checkpoints and an embedded Qdrant index, starts the real app under uvicorn and sends each
caption over HTTP: global search, rerank at the API's default alpha and at alpha 0, hybrid (the
caption + an image of the target alone, rerank on). The exhaustive ceiling scores every frame's
stored patches against the caption's text vector (from the checkpoints). Prints recall@10 and
MRR@10 per set and mode, query latency p50/p99, the funnel (benchmarks/funnel.py: where each
caption's needles are lost, stage by stage, from the exhaustive ceiling to the API's first page)
and - as its last line - one JSON object.

The model is the configured one (OPENCLIP_MODEL / OPENCLIP_PRETRAINED), or the offline model
(models/framesearch-world, OFFLINE_MODEL_DIR) when its weights are not here, or --model-dir.
RERANK_POOL_SIZE, PATCH_* and the other encoder settings are read from the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no weights are fetched here: configured ones are cached or absent

from benchmarks.common import write_results  # noqa: E402
from benchmarks.funnel import needle_funnel, print_funnel  # noqa: E402
from benchmarks.needle_library import LibrarySpec, build_library  # noqa: E402
from benchmarks.quality import (  # noqa: E402
    COLLECTION,
    MODES,
    K,
    embed_library,
    exhaustive_rankings,
    latency,
    query_service,
    scores,
    serving,
    text_vectors,
)
from resources.embedding.offline import load_encoder_or_offline, offline_config  # noqa: E402
from resources.settings import encoder_config_from_env, index_settings_from_env  # noqa: E402
from resources.vector_index import DEFAULT_ALPHA, VectorIndex  # noqa: E402
from resources.vector_index.schema import IndexSchema  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=LibrarySpec.frames)
    parser.add_argument("--frames-per-video", type=int, default=LibrarySpec.frames_per_video)
    parser.add_argument("--seed", type=int, default=LibrarySpec.seed)
    parser.add_argument("--format", choices=("jpg", "png"), default=LibrarySpec.image_format)
    parser.add_argument("--pan-frames", type=int, default=LibrarySpec.pan_frames,
                        help="frames per panning shot (1: independent frames); a needle shows in one frame of its shot")
    parser.add_argument("--pan-px", type=int, default=LibrarySpec.pan_px, help="camera movement per frame in a shot")
    parser.add_argument("--model-dir", type=Path, help="an open_clip local-dir model folder to use instead of the configured model")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes drawing the library")
    parser.add_argument("--path", type=Path, help="working folder (default var/bench/quality-<frames>)")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) library, checkpoints and index")
    parser.add_argument("--out", type=Path, default=Path("var/bench/quality.json"))
    args = parser.parse_args(argv)

    spec = LibrarySpec(
        frames=args.frames, frames_per_video=args.frames_per_video, seed=args.seed, image_format=args.format,
        pan_frames=args.pan_frames, pan_px=args.pan_px,
    )
    work = args.path or Path(f"var/bench/quality-{args.frames}")
    stamp = work / "spec.json"
    if stamp.is_file() and stamp.read_text() != json.dumps(spec.as_dict()):
        shutil.rmtree(work)  # another spec's library, checkpoints and index: never mixed
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(spec.as_dict()))

    library = build_library(work / "library", spec, workers=args.workers)
    small = [q for q in library.queries if q.size == "small"]
    large = [q for q in library.queries if q.size == "large"]
    videos = len(library.video_ids)
    built = f"built in {library.build_seconds:.0f} s" if library.build_seconds else "reused"
    print(f"[quality] library: {spec.frames:,} frames ({videos} videos of <= {spec.frames_per_video}, {spec.width}x{spec.height} "
          f"{spec.image_format}), {len(small)} small + {len(large)} large captions x {spec.needles} needle frames; {built}", flush=True)

    config = encoder_config_from_env()
    if args.model_dir:
        config = offline_config(config, args.model_dir.resolve())
    encoder, fallback = load_encoder_or_offline(config)
    info = encoder.info
    print(f"[quality] model {info.model_id} on {info.device} ({info.precision}), weights {info.provenance.kind}: {info.provenance.description}"
          + (" (configured weights unavailable: offline model)" if fallback else ""), flush=True)

    pipeline = embed_library(library, work, encoder.config.model, encoder.config.pretrained)
    rate = pipeline.embedded / pipeline.seconds if pipeline.embedded else 0.0
    print(f"[quality] pipeline: {pipeline.frames:,} frames, {pipeline.patches:,} patches ({pipeline.patches / pipeline.frames:.0f}/frame) "
          f"in {pipeline.seconds:.0f} s, {pipeline.runs} runs; {pipeline.embedded:,} frames embedded"
          + (f" at {rate:.2f} frames/s end to end" if rate else " (checkpoints up to date)"), flush=True)

    started = time.perf_counter()
    text = text_vectors(encoder, [q.caption for q in library.queries])
    ceiling = exhaustive_rankings(work / "checkpoints", text)
    exhaustive_s = time.perf_counter() - started

    pool = index_settings_from_env().rerank_pool
    started = time.perf_counter()
    with serving(work, encoder, library.queries, rerank_pool=pool) as base:
        runs = query_service(base, library.queries)
    query_s = time.perf_counter() - started

    started = time.perf_counter()
    funnel = needle_funnel(work, COLLECTION, library.queries, text, runs["rerank"].rankings, pool, DEFAULT_ALPHA)
    funnel_s = time.perf_counter() - started
    with VectorIndex.open(IndexSchema(COLLECTION, text.shape[1]), path=work / "qdrant") as index:
        companion_points = index.count_patches()
    print(f"[quality] companion points: {companion_points:,} = {companion_points / max(1, pipeline.patches):.2f} of the planned patches "
          f"(COMPANION_DEDUP={index_settings_from_env().companion_dedup or 'off'})", flush=True)

    rankings = {**{mode: run.rankings for mode, run in runs.items()}, "exhaustive": ceiling}
    table = {size: {mode: scores(r, library.queries, size) for mode, r in rankings.items()} for size in ("small", "large")}
    chance = K / pipeline.frames
    print(f"\n{pipeline.frames:,} frames, {info.model_id} ({info.precision}), rerank pool {pool or 'max(100, 3 x top_k)'}; "
          f"recall@{K} by chance {chance:.3f}")
    print(f"{'set':6s} {'mode':14s} {'recall@10':>9s} {'MRR@10':>7s} {'p50 ms':>7s} {'p99 ms':>7s}")
    for size in ("small", "large"):
        for mode, figures in table[size].items():
            lat = latency(runs[mode].latencies_ms) if mode in runs else None
            times = f"{lat['p50_ms']:7.1f} {lat['p99_ms']:7.1f}" if lat else f"{'-':>7s} {'-':>7s}"
            print(f"{size:6s} {mode:14s} {figures['recall_at_10']:9.3f} {figures['mrr']:7.3f} {times}")
    print_funnel(funnel)

    results = {
        "frames": pipeline.frames,
        "recall_at_10": {mode: round(f["recall_at_10"], 4) for mode, f in table["small"].items()},
        "mrr": {mode: round(f["mrr"], 4) for mode, f in table["small"].items()},
        "large": {
            "recall_at_10": {mode: round(f["recall_at_10"], 4) for mode, f in table["large"].items()},
            "mrr": {mode: round(f["mrr"], 4) for mode, f in table["large"].items()},
        },
        "chance_recall_at_10": round(chance, 4),
        "latency_ms": {mode: latency(run.latencies_ms) for mode, run in runs.items()},
        "queries": {"small": len(small), "large": len(large), "needles_per_caption": spec.needles},
        "modes": {mode: {"path": path, **extra} for mode, (path, extra) in MODES.items()},
        "rerank_pool": pool,
        "model": info.model_id,
        "weights_kind": info.provenance.kind,
        "precision": info.precision,
        "patches": pipeline.patches,
        "seconds": {
            "library": round(library.build_seconds, 1), "pipeline": round(pipeline.seconds, 1),
            "exhaustive": round(exhaustive_s, 1), "service": round(query_s, 1), "funnel": round(funnel_s, 1),
        },
        "frames_per_s": round(rate, 3),
        "funnel": funnel,
        "spec": spec.as_dict(),
        "companion_dedup": index_settings_from_env().companion_dedup,
        "companion_points": companion_points,
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    write_results(args.out, results)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
