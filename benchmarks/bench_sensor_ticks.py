"""Sensor ticks at library scale: the S3 change feed against the full listing, side by side.

    ./dev bench sensor_ticks                          # 100,000 videos, a burst of 1,000
    ./dev bench sensor_ticks --videos 20000 --burst 200 --no-listing
    ./dev bench sensor_ticks --local                  # a local folder library (directory times)

Starts a throwaway PostgreSQL 15 (the storage of ``deploy/dagster.yaml``) and a moto server that
serves S3 and SQS over HTTP. ``--videos`` video folders are laid into the bucket, registered as
partitions, and the bucket's event notifications (``s3:ObjectCreated:*``, ``s3:ObjectRemoved:*``)
are sent to an SQS queue. Then, each tick evaluated as the daemon evaluates it (the sensor
function with a context on the instance, resources over HTTP):

1. ``video_event_sensor`` with **nothing changed** (an empty queue);
2. with **one video added** (two frames put over HTTP: two events);
3. with **``--burst`` videos added** at once (one frame each): ticks until every one is requested,
   each tick's time, and how many ticks it took (a tick lists for at most LISTING_BUDGET_S and
   keeps the rest in its cursor);
4. unless ``--no-listing``: ``video_sensor``, the full listing (the reconcile path), on the same
   library with nothing changed - the figure issue 26 started from.

Results go to ``var/bench/sensor_ticks.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore")

import boto3  # noqa: E402
import dagster as dg  # noqa: E402

from benchmarks.bench_scale import fill_bucket, png, timed  # noqa: E402
from benchmarks.common import write_results  # noqa: E402
from tests.pipelines.ticks import DaemonTicks, send_events_to_queue  # noqa: E402
from tests.postgres.pg import running_postgres, write_dagster_home  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=1_000)
    parser.add_argument("--no-listing", action="store_true", help="skip the full-listing tick (minutes at 100,000 videos on moto)")
    parser.add_argument("--local", action="store_true", help="a local folder library (directory times) instead of S3 + SQS")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "sensor_ticks.json")
    args = parser.parse_args(argv)

    from moto.server import ThreadedMotoServer

    from assets.videos import VIDEOS_PARTITIONS
    from pipelines.event_sensor import LISTING_BUDGET_S, POLL_BUDGET_S, video_event_sensor
    from pipelines.sensor import video_sensor
    from resources.dagster_resources import CheckpointStoreResource, FrameEventsResource, FrameSourceResource, FramesS3Resource

    if args.local:
        return local_ticks(args)
    results: dict[str, object] = {"videos": args.videos, "burst": args.burst, "cpu_count": os.cpu_count(),
                                  "poll_budget_s": POLL_BUDGET_S, "listing_budget_s": LISTING_BUDGET_S}
    work = Path(tempfile.mkdtemp(prefix="bench-ticks-"))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bucket = "bench-ticks"
    _, results["fill_s"] = timed(fill_bucket, bucket, args.videos, 0)
    credentials = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    s3, sqs = boto3.client("s3", **credentials), boto3.client("sqs", **credentials)
    queue = sqs.create_queue(QueueName="frames-events")["QueueUrl"]
    send_events_to_queue(s3, sqs, bucket, queue)
    resources_s3 = FramesS3Resource(**credentials)
    frames = FrameSourceResource(root=f"s3://{bucket}/videos/", s3=resources_s3)
    events = FrameEventsResource(queue_url=queue, s3=resources_s3)
    frame = png(0)

    def put(video_id: int, count: int) -> None:
        for f in range(count):
            s3.put_object(Bucket=bucket, Key=f"videos/{video_id}/frame_{f:03d}.png", Body=frame)

    try:
        with running_postgres() as pg:
            os.environ.update(pg.env())
            os.environ["DAGSTER_HOME"] = str(write_dagster_home(work / "dagster_home"))
            with dg.DagsterInstance.get() as instance:
                keys = [str(v) for v in range(1, args.videos + 1)]
                _, results["register_s"] = timed(instance.add_dynamic_partitions, VIDEOS_PARTITIONS, keys)
                sensor = DaemonTicks(video_event_sensor, instance, {"frames": frames, "frame_events": events})
                event_tick = sensor.tick

                event_tick()  # S3's s3:TestEvent
                quiet, results["event_tick_nothing_changed_s"] = timed(event_tick)
                results["event_tick_nothing_changed_runs"] = len(quiet.run_requests or [])
                put(args.videos + 1, 2)
                one, results["event_tick_one_added_s"] = timed(event_tick)
                results["event_tick_one_added_runs"] = [r.partition_key for r in one.run_requests or []]
                burst = range(args.videos + 2, args.videos + 2 + args.burst)
                with ThreadPoolExecutor(8) as pool:
                    _, results["burst_put_s"] = timed(lambda: list(pool.map(lambda v: put(v, 1), burst)))
                ticks, requested, started, cursor_bytes = [], set(), time.perf_counter(), 0
                while len(requested) < args.burst and len(ticks) < 200:
                    result, seconds = timed(event_tick)
                    ticks.append(seconds)
                    requested |= {r.partition_key for r in result.run_requests or []}
                    cursor_bytes = max(cursor_bytes, len(sensor.cursor or ""))
                    print(f"burst tick {len(ticks)}: {seconds:.2f} s, {len(requested)} of {args.burst} requested", flush=True)
                results["event_ticks_burst_s"] = ticks
                results["event_tick_burst_max_s"] = max(ticks)
                results["event_burst_ticks"] = len(ticks)
                results["event_burst_all_requested"] = len(requested) == args.burst
                results["event_burst_sensor_work_s"] = round(time.perf_counter() - started, 2)
                results["event_cursor_bytes_max"] = cursor_bytes
                print(results, flush=True)

                if not args.no_listing:
                    store = CheckpointStoreResource(root=str(work / "checkpoints"))
                    with dg.build_sensor_context(instance=instance, resources={"frames": frames, "store": store}) as context:
                        first, results["listing_tick_first_s"] = timed(video_sensor, context)
                    with dg.build_sensor_context(instance=instance, cursor=first.cursor, resources={"frames": frames, "store": store}) as context:
                        _, results["listing_tick_nothing_changed_s"] = timed(video_sensor, context)
                    results["listing_cursor_bytes"] = len(first.cursor or "")
    finally:
        moto.stop()
    print(results)
    write_results(args.out, results)
    return 0


def local_ticks(args: argparse.Namespace) -> int:
    """The same ticks over a local folder library: its change feed is the directories' mtimes."""
    from assets.videos import VIDEOS_PARTITIONS
    from pipelines.event_sensor import video_event_sensor
    from pipelines.sensor import video_sensor
    from resources.dagster_resources import CheckpointStoreResource, FrameEventsResource, FrameSourceResource, FramesS3Resource

    work = Path(tempfile.mkdtemp(prefix="bench-ticks-local-"))
    videos, frame = work / "videos", png(0)
    old = time.time_ns() - 3600 * 10**9

    def put(video_id: int, count: int) -> None:
        (videos / str(video_id)).mkdir(parents=True, exist_ok=True)
        for f in range(count):
            (videos / str(video_id) / f"frame_{f:03d}.png").write_bytes(frame)

    def fill() -> None:
        for video_id in range(1, args.videos + 1):
            put(video_id, 1)
            os.utime(videos / str(video_id), ns=(old, old))  # laid in an hour ago

    results: dict[str, object] = {"videos": args.videos, "burst": args.burst, "cpu_count": os.cpu_count(), "source": "local folder"}
    _, results["fill_s"] = timed(fill)
    resources = {"frames": FrameSourceResource(root=str(videos), s3=FramesS3Resource()), "frame_events": FrameEventsResource(s3=FramesS3Resource())}
    with running_postgres() as pg:
        os.environ.update(pg.env())
        os.environ["DAGSTER_HOME"] = str(write_dagster_home(work / "dagster_home"))
        with dg.DagsterInstance.get() as instance:
            _, results["register_s"] = timed(instance.add_dynamic_partitions, VIDEOS_PARTITIONS, [str(v) for v in range(1, args.videos + 1)])
            sensor = DaemonTicks(video_event_sensor, instance, resources)
            tick = sensor.tick

            _, results["event_tick_first_s"] = timed(tick)  # starts from now
            time.sleep(2.5)  # past the look-back slack: the library's folders are old
            quiet, results["event_tick_nothing_changed_s"] = timed(tick)
            results["event_tick_nothing_changed_runs"] = len(quiet.run_requests or [])
            put(args.videos + 1, 2)
            one, results["event_tick_one_added_s"] = timed(tick)
            results["event_tick_one_added_runs"] = [r.partition_key for r in one.run_requests or []]
            for video_id in range(args.videos + 2, args.videos + 2 + args.burst):
                put(video_id, 1)
            ticks, requested = [], set()
            while len(requested) < args.burst and len(ticks) < 200:
                result, seconds = timed(tick)
                ticks.append(seconds)
                requested |= {r.partition_key for r in result.run_requests or []} - {str(args.videos + 1)}
            results["event_ticks_burst_s"], results["event_burst_ticks"] = ticks, len(ticks)
            results["event_burst_all_requested"] = len(requested) == args.burst
            results["event_cursor_bytes"] = len(sensor.cursor or "")
            print(results, flush=True)
            if not args.no_listing:
                store = {"frames": resources["frames"], "store": CheckpointStoreResource(root=str(work / "checkpoints"))}
                with dg.build_sensor_context(instance=instance, resources=store) as context:
                    first, results["listing_tick_first_s"] = timed(video_sensor, context)
                with dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=store) as context:
                    _, results["listing_tick_nothing_changed_s"] = timed(video_sensor, context)
    print(results)
    write_results(args.out.with_name("sensor_ticks_local.json"), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
