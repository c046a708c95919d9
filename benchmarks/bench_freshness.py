"""Freshness: how long a video added to a large S3 library takes to be searchable.

    ./dev bench freshness                         # 100,000 videos in the bucket, 5 drops
    ./dev bench freshness --videos 2000 --drops 3

Everything as deployed, each in its own process: PostgreSQL 15 with ``deploy/dagster.yaml``
(queued runs, ``FRAMESEARCH_MAX_CONCURRENT_RUNS``), a moto server serving S3 and SQS over HTTP
with the bucket's event notifications going to the queue, ``dagster-daemon`` with
``video_event_sensor`` started (``FRAMES_EVENTS_QUEUE_URL``), and ``python -m search_service``
owning the embedded index and following the checkpoints. The bucket holds ``--videos`` video
folders, all registered as partitions. A drop puts three frames of a new video over HTTP; the
clock stops when ``/search/text`` filtered to that video returns it. Drops are sequential.

Prints each drop's seconds, p50 and the maximum; results go to ``var/bench/freshness.json``.
The run's start-up (a new process that imports torch and loads the code location and the
model) is part of every figure: that is what a user waits for.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore")

import boto3  # noqa: E402
import dagster as dg  # noqa: E402
import httpx  # noqa: E402

from benchmarks.bench_scale import fill_bucket, png, timed  # noqa: E402
from benchmarks.common import stop_processes, write_results  # noqa: E402
from tests.pipelines.ticks import send_events_to_queue  # noqa: E402
from tests.postgres.pg import running_postgres, write_dagster_home  # noqa: E402
from tests.servers import free_port, wait_http_ok  # noqa: E402


def searchable(base: str, video_id: int) -> bool:
    try:
        answer = httpx.post(f"{base}/search/text", json={"query": "a red circle", "video_ids": [video_id], "top_k": 1}, timeout=10)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200 and bool(answer.json()["results"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--drops", type=int, default=5)
    parser.add_argument("--timeout-s", type=float, default=300.0, help="give up on a drop after this long")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "freshness.json")
    args = parser.parse_args(argv)

    from moto.server import ThreadedMotoServer

    from assets.videos import VIDEOS_PARTITIONS
    from pipelines.event_sensor import video_event_sensor

    results: dict[str, object] = {"videos": args.videos, "cpu_count": os.cpu_count(),
                                  "sensor_interval_s": video_event_sensor.minimum_interval_seconds}
    work = Path(tempfile.mkdtemp(prefix="bench-freshness-"))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint, bucket = f"http://{host}:{port}", "bench-freshness"
    _, results["fill_s"] = timed(fill_bucket, bucket, args.videos, 0)
    credentials = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    s3, sqs = boto3.client("s3", **credentials), boto3.client("sqs", **credentials)
    queue = sqs.create_queue(QueueName="frames-events")["QueueUrl"]
    send_events_to_queue(s3, sqs, bucket, queue)
    service_port = free_port()
    base = f"http://127.0.0.1:{service_port}"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
        "S3_ENDPOINT_URL": endpoint, "FRAMES_ROOT": f"s3://{bucket}/videos/", "FRAMES_EVENTS_QUEUE_URL": queue,
        "CHECKPOINT_DIR": str(work / "checkpoints"), "QDRANT_PATH": str(work / "qdrant"), "QDRANT_COLLECTION": "frames_fresh",
        "FRAMESEARCH_MAX_CONCURRENT_RUNS": "2", "HF_HUB_OFFLINE": "1",
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
                _, results["register_s"] = timed(instance.add_dynamic_partitions, VIDEOS_PARTITIONS, [str(v) for v in range(1, args.videos + 1)])
            started = subprocess.run([str(bin_dir / "dagster"), "sensor", "start", "video_event_sensor", "-w", "workspace.yaml"],
                                     cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
            assert started.returncode == 0, started.stdout + started.stderr
            processes.append(subprocess.Popen([sys.executable, "-m", "search_service", "--port", str(service_port)],
                                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            wait_http_ok(f"{base}/healthz", timeout_s=300, alive=lambda: processes[0].poll() is None)
            processes.append(subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            time.sleep(20)  # the daemon loads the code location and takes the queue's test event
            drops = []
            for i in range(args.drops):
                video_id = args.videos + 1 + i
                for f in range(3):
                    s3.put_object(Bucket=bucket, Key=f"videos/{video_id}/frame_{f:03d}.png", Body=png(1000 * video_id + f))
                t0 = time.monotonic()
                while not searchable(base, video_id):
                    if time.monotonic() - t0 > args.timeout_s:
                        break
                    time.sleep(0.5)
                seconds = round(time.monotonic() - t0, 1)
                drops.append(seconds if seconds <= args.timeout_s else None)
                print(f"drop {i + 1}: video {video_id} searchable after {seconds} s", flush=True)
            done = [d for d in drops if d is not None]
            results.update({"drops_s": drops, "p50_s": statistics.median(done) if done else None, "max_s": max(done) if done else None,
                            "all_found": len(done) == len(drops)})
    finally:
        stop_processes(reversed(processes))
        log.close()
        moto.stop()
    print(results)
    write_results(args.out, results)
    print(f"process log: {work / 'processes.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
