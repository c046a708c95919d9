"""The pipeline on Celery workers: videos/min of one backfill with 1 and with 2 workers, side by side.

    ./dev bench celery [--videos 48] [--frames 3]

Each worker count gets a stack of its own (benchmarks/celery_stack.py: PostgreSQL, Redis, moto S3,
dagster-webserver, dagster-daemon, a checkpoint follower, N Celery workers, deploy/dagster-celery.yaml)
and the same backfill of ``--videos`` videos (``--frames`` random 320x180 PNG frames each, the tiny
random-weight model: the figures measure orchestration and scheduling, not the model), launched
through GraphQL as the UI does, timed from launch to the backfill's completion. Also checks that
every video ended in the index with each of its frames. Figures go to var/bench/celery.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.celery_stack import celery_stack  # noqa: E402
from benchmarks.common import write_results  # noqa: E402
from resources.embedding.model_files import save_random_weights  # noqa: E402
from resources.embedding.weights import TINY_MODEL  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--out", type=Path, default=Path("var/bench/celery.json"))
    args = parser.parse_args(argv)
    weights = save_random_weights(Path("var/bench/models") / f"{TINY_MODEL}-random.safetensors", TINY_MODEL)
    ids = list(range(1, args.videos + 1))
    results: dict[str, object] = {"videos": args.videos, "frames_per_video": args.frames, "cpu_count": os.cpu_count()}
    for workers in (int(w) for w in args.workers.split(",")):
        with celery_stack(args.videos, args.frames, workers, weights) as stack:
            stack.register(ids)
            started = time.monotonic()
            backfill = stack.launch_backfill(ids)
            while (status := stack.backfill_status(backfill)) not in ("COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
                time.sleep(1)
            seconds = time.monotonic() - started
            frames = stack.indexed_frames(ids)
            complete = sum(1 for n in frames.values() if n == args.frames)
            row = {"status": status, "seconds": round(seconds, 1), "videos_per_min": round(args.videos / seconds * 60, 1), "videos_indexed_whole": complete}
            results[f"workers_{workers}"] = row
            print(f"{workers} worker(s): {status} in {seconds:.0f} s = {row['videos_per_min']} videos/min; "
                  f"{complete}/{args.videos} videos indexed with every frame", flush=True)
    rows = [r for k, r in results.items() if k.startswith("workers_")]
    if len(rows) == 2:
        print(f"2 workers / 1 worker: x{rows[1]['videos_per_min'] / rows[0]['videos_per_min']:.2f}")  # type: ignore[index]
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
