"""Dagster at 100,000 videos on PostgreSQL: registration, sensor ticks, partition status, backfill.

    ./dev bench scale                                   # 100,000 videos, 1,000-video backfill, 4 min of runs
    ./dev bench scale --videos 20000 --backfill 200 --run-minutes 2
    ./dev bench scale --run-minutes 0                   # no backfill: listing, sensor, registration, GraphQL

Starts a throwaway PostgreSQL 15 (tests/postgres/pg.py) and a moto S3 server, and lays out the
instance of ``deploy/dagster.yaml`` unchanged. Then, timing each step:

1. **listing**: ``--videos`` video folders in moto's S3 (one small object each; the first
   ``--backfill`` get two real PNG frames);
2. **sensor ticks**: ``video_sensor`` over the whole listing through moto's HTTP API, first tick
   (every video new) and a second, unchanged tick (after registration);
3. **registration**: the first tick's ``build_add_request`` applied to the instance (one call),
   and the same on a SQLite instance for comparison; SQLite's variable limit is probed;
4. **partition status**: ``dagster-webserver`` on the instance; the asset's ``partitionStats`` and
   ``assetPartitionStatuses`` through GraphQL, as the UI asks (cold, then warm);
5. **backfill**: ``launchPartitionBackfill`` of the first ``--backfill`` videos through GraphQL;
   ``dagster-daemon`` queues runs (BackfillPolicy: VIDEOS_PER_RUN videos a run) under the run queue's
   ``max_concurrent_runs`` (``--concurrent-runs``); runs queued and finished are sampled for
   ``--run-minutes`` and reported as runs/min and videos/min (tiny random-weights model: the figures
   are Dagster's overhead, not the model's).

Results go to ``var/bench/scale.json``.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore")

import dagster as dg  # noqa: E402

from benchmarks.common import stop_processes, write_results  # noqa: E402
from tests.postgres.pg import running_postgres, write_dagster_home  # noqa: E402
from tests.servers import free_port, wait_http_ok  # noqa: E402

ASSET_KEYS = ("frame_manifest", "frame_embeddings", "index_sync")
STATUS_QUERY = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  partitionStats { numMaterialized numPartitions numFailed numMaterializing }
  assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions failedPartitions materializingPartitions } } } } }"""
BACKFILL_MUTATION = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } ... on InvalidSubsetError { message } } }"""


def timed(fn, *args, **kwargs):  # noqa: ANN001, ANN201 - any callable
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, round(time.perf_counter() - started, 3)


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def fill_bucket(bucket: str, videos: int, real: int) -> None:
    """Objects straight into moto's in-process backend (the HTTP server serves the same state)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    backend.create_bucket(bucket, "us-east-1")
    frames = [png(0), png(1)]
    for video_id in range(1, videos + 1):
        if video_id <= real:
            for f, data in enumerate(frames):
                backend.put_object(bucket, f"videos/{video_id}/frame_{f:03d}.png", data)
        else:
            backend.put_object(bucket, f"videos/{video_id}/frame_000.png", b"placeholder")


def sqlite_variable_limit() -> int:
    """The most ``?`` variables one statement may hold in this Python's SQLite (bisected)."""
    import sqlite3

    connection = sqlite3.connect(":memory:")

    def fits(n: int) -> bool:
        try:
            connection.execute(f"select 1 where 1 in ({','.join('?' * n)})", [1] * n)
            return True
        except sqlite3.OperationalError:
            return False

    low, high = 1, 1_000_000  # fits(low); not fits(high) on every build seen
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def graphql(base: str, query: str, variables: dict) -> dict:
    response = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=600)
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


def run_counts(instance: dg.DagsterInstance) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in instance.get_runs():
        counts[run.status.value] = counts.get(run.status.value, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--backfill", type=int, default=1_000)
    parser.add_argument("--concurrent-runs", type=int, default=2)
    parser.add_argument("--run-minutes", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "scale.json")
    args = parser.parse_args(argv)
    results: dict[str, object] = {"videos": args.videos, "backfill_videos": args.backfill, "cpu_count": os.cpu_count()}

    import logging

    from moto.server import ThreadedMotoServer

    from assets.videos import BACKFILL, VIDEOS_PARTITIONS
    from pipelines.automation import video_sensor
    from resources.dagster_resources import CheckpointStoreResource, FrameSourceResource, FramesS3Resource
    from resources.embedding.model_files import save_random_weights
    from resources.embedding.weights import TINY_MODEL

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request otherwise
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bucket = "bench-scale"
    _, results["listing_fill_s"] = timed(fill_bucket, bucket, args.videos, args.backfill)
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
        "S3_ENDPOINT_URL": endpoint, "FRAMES_ROOT": f"s3://{bucket}/videos/",
        "CHECKPOINT_DIR": str(work / "checkpoints"), "QDRANT_PATH": str(work / "qdrant"), "QDRANT_COLLECTION": "frames_scale",
        "OPENCLIP_MODEL": TINY_MODEL, "OPENCLIP_PRETRAINED": str(save_random_weights(work / "tiny.safetensors", TINY_MODEL, seed=0)),
        "OPENCLIP_PRECISION": "fp32", "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9",
        "FRAMESEARCH_MAX_CONCURRENT_RUNS": str(args.concurrent_runs),
    }
    os.environ.update(env)
    frames = FrameSourceResource(root=env["FRAMES_ROOT"], s3=FramesS3Resource(endpoint_url=endpoint, region_name="us-east-1"))
    sensor_resources = {"frames": frames, "store": CheckpointStoreResource(root=env["CHECKPOINT_DIR"])}

    # SQLite for comparison: the same registration on the default storage.
    keys = [str(v) for v in range(1, args.videos + 1)]
    (work / "sqlite_home").mkdir()
    with dg.DagsterInstance.local_temp(str(work / "sqlite_home")) as sqlite_instance:
        _, results["sqlite_register_s"] = timed(sqlite_instance.add_dynamic_partitions, VIDEOS_PARTITIONS, keys)
    results["sqlite_max_variables"] = sqlite_variable_limit()  # one add of more keys than this fails

    with running_postgres() as pg:
        os.environ.update(pg.env())
        home = write_dagster_home(work / "dagster_home")
        os.environ["DAGSTER_HOME"] = str(home)
        with dg.DagsterInstance.get() as instance:
            # The listing alone (paginated ListObjectsV2 through moto), to tell it from the sensor's own work.
            listing, results["listing_only_s"] = timed(frames.source().list_videos)
            results["listing_videos"] = len(listing)
            with dg.build_sensor_context(instance=instance, resources=sensor_resources) as context:
                first, results["sensor_first_tick_s"] = timed(video_sensor, context)
            results["sensor_first_tick_run_requests"] = len(first.run_requests)
            results["sensor_cursor_bytes"] = len(first.cursor or "")
            [add] = first.dynamic_partitions_requests
            _, results["postgres_register_s"] = timed(instance.add_dynamic_partitions, VIDEOS_PARTITIONS, list(add.partition_keys))
            _, results["postgres_list_partitions_s"] = timed(instance.get_dynamic_partitions, VIDEOS_PARTITIONS)
            with dg.build_sensor_context(instance=instance, resources=sensor_resources, cursor=first.cursor) as context:
                second, results["sensor_unchanged_tick_s"] = timed(video_sensor, context)
            results["sensor_unchanged_tick_run_requests"] = len(second.run_requests)
            print({k: v for k, v in results.items()}, flush=True)

            web_port = free_port()
            base = f"http://127.0.0.1:{web_port}"
            bin_dir = Path(sys.executable).parent
            log = open(work / "servers.log", "w")  # noqa: SIM115 - closed at the end
            web = subprocess.Popen([str(bin_dir / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(web_port)],
                                   cwd=REPO, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            daemon = None
            try:
                wait_http_ok(f"{base}/server_info", timeout_s=300, alive=lambda: web.poll() is None)
                key = {"path": ["frame_embeddings"]}
                deadline = time.monotonic() + 300
                while True:  # the code location loads after the server answers
                    try:
                        status, results["graphql_status_cold_s"] = timed(graphql, base, STATUS_QUERY, {"key": key})
                        if status["assetNodeOrError"].get("partitionStats"):
                            break
                    except (RuntimeError, httpx.HTTPError):
                        pass
                    assert time.monotonic() < deadline, "code location did not load"
                    time.sleep(2)
                warm = [timed(graphql, base, STATUS_QUERY, {"key": key})[1] for _ in range(3)]
                results["graphql_status_warm_s"] = warm
                results["graphql_partition_stats"] = status["assetNodeOrError"]["partitionStats"]

                if args.run_minutes <= 0:
                    return 0 if _finish(results, args.out, moto) else 1
                params = {"partitionNames": keys[: args.backfill], "assetSelection": [{"path": [k]} for k in ASSET_KEYS], "fromFailure": False}
                launched, results["backfill_launch_s"] = timed(graphql, base, BACKFILL_MUTATION, {"params": params})
                results["backfill_launch"] = launched["launchPartitionBackfill"]
                daemon = subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                                          cwd=REPO, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                started, samples = time.monotonic(), []
                while time.monotonic() - started < args.run_minutes * 60:
                    time.sleep(10)
                    samples.append({"t_s": round(time.monotonic() - started, 1), **run_counts(instance)})
                    print(samples[-1], flush=True)
                results["backfill_samples"] = samples
                queued = [s["t_s"] for s in samples if len(s) > 1]
                succeeded = [(s["t_s"], s["SUCCESS"]) for s in samples if s.get("SUCCESS")]
                results["first_run_queued_after_s"] = queued[0] if queued else None
                results["runs_requested_in_window"] = max((sum(v for k, v in s.items() if k != "t_s") for s in samples), default=0)
                results["runs_succeeded"] = succeeded[-1][1] if succeeded else 0
                results["first_run_succeeded_after_s"] = succeeded[0][0] if succeeded else None
                if len(succeeded) > 1 and succeeded[-1][1] > succeeded[0][1]:
                    (t0, n0), (t1, n1) = succeeded[0], succeeded[-1]
                    results["runs_per_min_steady"] = round((n1 - n0) / ((t1 - t0) / 60), 2)
                    per_run = BACKFILL.max_partitions_per_run or 1
                    results["videos_per_min_steady"] = round(per_run * (n1 - n0) / ((t1 - t0) / 60), 1)
                _, results["graphql_status_after_backfill_s"] = timed(graphql, base, STATUS_QUERY, {"key": key})
            finally:
                stop_processes((daemon, web))
                log.close()
    _finish(results, args.out, moto)
    return 0


def _finish(results: dict[str, object], out: Path, moto) -> bool:  # noqa: ANN001 - a ThreadedMotoServer
    moto.stop()
    print(results)
    write_results(out, results)
    return True


if __name__ == "__main__":
    sys.exit(main())
