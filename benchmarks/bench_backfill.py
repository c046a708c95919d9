"""A backfill launched as the UI launches it, against the same library embedded in one process.

    ./dev bench backfill                                   # 1,000 videos of 10 frames
    ./dev bench backfill --videos 100 --videos-per-run 8   # the old run size, for comparison

Side by side in one run, over one library of world-model videos (frames of the synthetic shapes
world, ``benchmarks/needle_library.py``; the committed world model ``models/framesearch-world``):

1. **in process**: ``python -m pipelines.main --videos <library> --offline-model`` - what
   ``./dev main`` does: one process, one run over every video, the embedded index written inline;
2. **backfill**: PostgreSQL 15 with ``deploy/dagster.yaml`` (queued runs,
   ``--concurrent-runs``), ``dagster-webserver``, ``dagster-daemon`` and ``python -m
   search_service`` owning the embedded index (its follower applies what the runs publish); the
   videos registered as partitions and ``launchPartitionBackfill`` sent over GraphQL. The clock
   runs from the launch until the service's index holds every frame;
3. **re-backfill** of the same, now up-to-date videos: what a run that must be redone (a crash)
   costs for the videos it had already finished.

Prints frames/s of each and their ratio, and per backfill run: videos, wall seconds (from the
launcher starting it to its end: process start-up included), the sum of its videos' stage seconds
(``frame_embeddings``' fetch, decode, dedup, patch_plan, embed, write and ``index_sync``), the
stage-busy share (stage seconds / run wall; above 1 when reading overlaps encoding) and the
encoder-busy share (embed seconds / run wall). Results go to ``var/bench/backfill.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore")

import dagster as dg  # noqa: E402
import httpx  # noqa: E402
import torch  # noqa: E402

from benchmarks.bench_scale import BACKFILL_MUTATION, graphql  # noqa: E402
from benchmarks.common import stop_processes, write_results  # noqa: E402
from benchmarks.needle_library import LibrarySpec, build_library  # noqa: E402
from tests.postgres.pg import running_postgres, write_dagster_home  # noqa: E402
from tests.servers import free_port, wait_http_ok  # noqa: E402

ASSET_KEYS = ("frame_manifest", "frame_embeddings", "index_sync")
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"""
STAGES = ("fetch", "decode", "dedup", "patch_plan", "embed", "write")


def index_points(base: str) -> int:
    """The service's ``framesearch_index_points`` gauge (0 while it cannot say)."""
    try:
        text = httpx.get(f"{base}/metrics", timeout=10).text
    except httpx.HTTPError:
        return 0
    match = re.search(r"^framesearch_index_points(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
    return int(float(match.group(1))) if match else 0


def run_figures(instance: dg.DagsterInstance, backfill_id: str) -> list[dict[str, float]]:
    """Per run of the backfill: videos, wall (launch -> end), stage seconds and busy shares."""
    figures = []
    for run in instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})):
        stats = instance.get_run_stats(run.run_id)
        began = stats.launch_time or stats.start_time
        if began is None or stats.end_time is None:
            continue
        wall = stats.end_time - began
        stage_s = embed_s = 0.0
        videos = 0
        for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
            materialization = record.event_log_entry.asset_materialization
            if materialization is None:
                continue
            meta = materialization.metadata
            if materialization.asset_key == dg.AssetKey("frame_embeddings"):
                videos += 1
                stage_s += sum(float(meta[f"seconds_{s}"].value) for s in STAGES if f"seconds_{s}" in meta)  # type: ignore[arg-type]
                embed_s += float(meta["seconds_embed"].value) if "seconds_embed" in meta else 0.0  # type: ignore[arg-type]
            elif materialization.asset_key == dg.AssetKey("index_sync") and "seconds" in meta:
                stage_s += float(meta["seconds"].value)  # type: ignore[arg-type]
        figures.append({
            "videos": videos, "wall_s": round(wall, 1), "stage_s": round(stage_s, 1),
            "stage_busy": round(stage_s / wall, 2) if wall else 0.0, "encoder_busy": round(embed_s / wall, 2) if wall else 0.0,
            "startup_s": round((stats.start_time or began) - began, 1),
        })
    return figures


def backfill(base: str, service: str, instance: dg.DagsterInstance, keys: list[str], frames: int, timeout_s: float) -> dict[str, object]:
    """Launch a backfill of ``keys`` over the webserver's GraphQL (``base``); wait until it
    completes and the index of the search service (``service``) holds ``frames``."""
    params = {"partitionNames": keys, "assetSelection": [{"path": [k]} for k in ASSET_KEYS], "fromFailure": False}
    started = time.monotonic()
    launched = graphql(base, BACKFILL_MUTATION, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id, status, completed_s = launched["backfillId"], "", None
    while time.monotonic() - started < timeout_s:
        status = graphql(base, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"]
        if status != "REQUESTED" and completed_s is None:
            completed_s = round(time.monotonic() - started, 1)
            if status != "COMPLETED_SUCCESS":
                break
        if completed_s is not None and index_points(service) >= frames:
            break
        time.sleep(1)
    wall = round(time.monotonic() - started, 1)
    runs = run_figures(instance, backfill_id)
    return {"status": status, "backfill_completed_s": completed_s, "indexed_s": wall, "index_points": index_points(service),
            "frames_per_s": round(frames / wall, 2), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=1_000)
    parser.add_argument("--frames-per-video", type=int, default=10)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--videos-per-run", type=int, help="VIDEOS_PER_RUN for the backfill (default: the pipeline's)")
    parser.add_argument("--concurrent-runs", type=int, default=2)
    parser.add_argument("--threads-per-run", type=int, help="OMP_NUM_THREADS of each run (default: the pipeline's, cores / concurrent runs)")
    parser.add_argument("--timeout-s", type=float, default=3600)
    parser.add_argument("--library", type=Path, default=REPO / "var" / "bench" / "backfill-library")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "backfill.json")
    args = parser.parse_args(argv)

    from assets.videos import VIDEOS_PARTITIONS
    from resources.dagster_resources import EncoderResource
    from resources.embedding.offline import offline_config, offline_model_dir
    from resources.settings import run_threads_from_env, videos_per_run_from_env

    spec = LibrarySpec(frames=args.videos * args.frames_per_video, frames_per_video=args.frames_per_video,
                       width=args.width, height=args.height, small_captions=6, large_captions=3, needles=2)
    library = build_library(args.library / spec.digest(), spec, workers=os.cpu_count() or 1)
    frames = spec.frames
    keys = [str(v) for v in library.video_ids]
    model = offline_config(EncoderResource().config(), offline_model_dir())
    per_run = args.videos_per_run or videos_per_run_from_env()
    threads = args.threads_per_run or run_threads_from_env({"FRAMESEARCH_MAX_CONCURRENT_RUNS": str(args.concurrent_runs)}) or torch.get_num_threads()
    results: dict[str, object] = {
        "videos": len(keys), "frames": frames, "frame_size": f"{args.width}x{args.height}", "model": model.model,
        "videos_per_run": per_run, "concurrent_runs": args.concurrent_runs, "threads_per_run": threads, "cpu_count": os.cpu_count(),
    }
    print(results, flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    base_env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    base_env.update({"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "OPENCLIP_MODEL": model.model, "OPENCLIP_PRETRAINED": model.pretrained})

    # 1. In process, as ./dev main.
    started = time.monotonic()
    inline = subprocess.run([sys.executable, "-m", "pipelines.main", "--videos", str(library.videos), "--offline-model",
                             "--var", str(work / "inline"), "--query", "a red circle"],
                            cwd=REPO, env=base_env, capture_output=True, text=True)
    inline_s = time.monotonic() - started
    if inline.returncode != 0:
        print(inline.stdout[-3000:], inline.stderr[-3000:])
        raise SystemExit("the in-process run failed")
    results["in_process"] = {"wall_s": round(inline_s, 1), "frames_per_s": round(frames / inline_s, 2)}
    print({"in_process": results["in_process"]}, flush=True)

    # 2. and 3. The backfill, as the UI launches it.
    service_port, web_port = free_port(), free_port()
    service, web = f"http://127.0.0.1:{service_port}", f"http://127.0.0.1:{web_port}"
    env = {
        **base_env, "FRAMES_ROOT": str(library.videos), "CHECKPOINT_DIR": str(work / "checkpoints"),
        "QDRANT_PATH": str(work / "qdrant"), "QDRANT_COLLECTION": "frames_backfill",
        "FRAMESEARCH_MAX_CONCURRENT_RUNS": str(args.concurrent_runs), "VIDEOS_PER_RUN": str(per_run),
        **({"OMP_NUM_THREADS": str(args.threads_per_run)} if args.threads_per_run else {}),
    }
    processes: list[subprocess.Popen] = []
    log = open(work / "processes.log", "w")  # noqa: SIM115 - closed at the end
    bin_dir = Path(sys.executable).parent
    try:
        with running_postgres() as pg:
            env.update(pg.env())
            env["DAGSTER_HOME"] = str(write_dagster_home(work / "dagster_home"))
            os.environ.update({k: env[k] for k in ("DAGSTER_HOME", *pg.env())})
            with dg.DagsterInstance.get() as instance:
                instance.add_dynamic_partitions(VIDEOS_PARTITIONS, keys)

                def start(command: list[str]) -> subprocess.Popen:
                    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                    processes.append(process)
                    return process

                owner = start([sys.executable, "-m", "search_service", "--port", str(service_port)])
                wait_http_ok(f"{service}/healthz", timeout_s=300, alive=lambda: owner.poll() is None)
                webserver = start([str(bin_dir / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(web_port)])
                wait_http_ok(f"{web}/server_info", timeout_s=300, alive=lambda: webserver.poll() is None)
                start([str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"])
                time.sleep(15)  # the daemon loads the code location
                first = backfill(web, service, instance, keys, frames, args.timeout_s)
                print({"backfill": {k: v for k, v in first.items() if k != "runs"}}, flush=True)
                again = backfill(web, service, instance, keys, frames, args.timeout_s)
    finally:
        stop_processes(reversed(processes))
        log.close()
    for name, figures in (("backfill", first), ("re_backfill_up_to_date", again)):
        runs = figures["runs"]
        assert isinstance(runs, list)
        for n, run in enumerate(runs):
            print(f"{name} run {n + 1}: {run}")
        results[name] = figures
    ratio = round(float(first["frames_per_s"]) / (frames / inline_s), 2)  # type: ignore[arg-type]
    results["backfill_vs_in_process"] = ratio
    again_s = float(again["indexed_s"])  # type: ignore[arg-type]
    results["re_backfill_ms_per_video"] = round(1000 * again_s / len(keys), 1)
    print(f"in process {frames / inline_s:.2f} frames/s; backfill {first['frames_per_s']} frames/s: x{ratio}; "
          f"re-backfill of up-to-date videos {again_s} s ({results['re_backfill_ms_per_video']} ms a video)")
    write_results(args.out, results)
    print(f"process log: {work / 'processes.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
