"""What many small HTTP ingests into one video cost a listing, with and without compaction.

    ./dev bench ingest [--ingests 1000] [--every 10] [--s3]

Two videos receive the same ``--ingests`` single-frame ingests (``FrameSource.record_frames``, as
``/ingest/frames`` calls it). One is never compacted; the other is compacted (``compact_batches``,
no settling time) after every ``--every`` ingests, as a pipeline run of the video would. Prints, at
a few points, the median time of one ``manifest()`` of each, the batch files it reads, and the
time per frame listed. ``--s3`` does it on S3 (moto's server over HTTP, in this process), where
each batch is one GET; there the uncompacted video's batches are PUT directly (its ingests' own
listings would take minutes) and only the compacted video ingests through ``record_frames``.
Figures go to ``var/bench/ingest[-s3].json``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_results  # noqa: E402
from resources.frame_sources import FrameRef, FrameSource, LocalFolderSource, S3FrameSource  # noqa: E402
from resources.frame_sources.base import INGEST_DIR  # noqa: E402
from resources.frame_sources.batches import batch_bytes, new_batch_name  # noqa: E402

PLAIN, COMPACTED = 1, 2


def manifest_ms(source: FrameSource, video_id: int, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        source.manifest(video_id)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


@contextlib.contextmanager
def local_source() -> Iterator[tuple[FrameSource, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "lib").mkdir()
        source = LocalFolderSource(Path(tmp) / "lib")

        def ingest_plain(ref: FrameRef) -> None:
            source.record_frames(PLAIN, [ref])

        yield source, ingest_plain


@contextlib.contextmanager
def s3_source() -> Iterator[tuple[FrameSource, object]]:
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        client.create_bucket(Bucket="bench")
        source = S3FrameSource(client, "s3://bench/lib/", endpoint_url=endpoint)

        def ingest_plain(ref: FrameRef) -> None:  # the ingest's PUT, without its listing
            client.put_object(Bucket="bench", Key=f"lib/{PLAIN}/{INGEST_DIR}/{new_batch_name()}", Body=batch_bytes([ref]))

        yield source, ingest_plain
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ingests", type=int, default=1000)
    parser.add_argument("--every", type=int, default=10, help="compact after this many ingests (a pipeline run)")
    parser.add_argument("--s3", action="store_true", help="on S3 (moto over HTTP) instead of a local folder")
    args = parser.parse_args()
    points = sorted({p for p in (1, 10, 100, 250, 500, 1000, args.ingests) if p <= args.ingests})
    rows = []
    where = "s3" if args.s3 else "local"
    with (s3_source() if args.s3 else local_source()) as (source, ingest_plain):
        for n in range(1, args.ingests + 1):
            ref = FrameRef(n, n * 1000, f"s3://bench/frames/{n}.png" if args.s3 else f"file:///frames/{n}.png")
            ingest_plain(ref)  # type: ignore[operator]
            source.record_frames(COMPACTED, [ref])
            if n % args.every == 0:
                source.compact_batches(COMPACTED, settle_s=0)
            if n in points:
                frames = len(source.manifest(PLAIN))
                assert source.manifest(COMPACTED) == source.manifest(PLAIN)
                row = {"ingests": n, "frames": frames}
                for name, video_id in (("plain", PLAIN), ("compacted", COMPACTED)):
                    row[f"batches_{name}"] = len(source._batch_names(video_id))
                    row[f"manifest_ms_{name}"] = round(manifest_ms(source, video_id), 3)
                    row[f"us_per_frame_{name}"] = round(1000 * row[f"manifest_ms_{name}"] / frames, 1)
                rows.append(row)
                print(
                    f"{where} {n:>5} ingests | uncompacted: {row['batches_plain']:>5} batches, manifest {row['manifest_ms_plain']:9.2f} ms"
                    f" ({row['us_per_frame_plain']:6.1f} us/frame) | compacted every {args.every}: {row['batches_compacted']:>2} batches,"
                    f" manifest {row['manifest_ms_compacted']:7.2f} ms ({row['us_per_frame_compacted']:5.1f} us/frame)",
                    flush=True,
                )
    write_results(Path(f"var/bench/ingest{'-s3' if args.s3 else ''}.json"), {"args": vars(args), "cpu": platform.processor() or platform.machine(), "rows": rows})


if __name__ == "__main__":
    main()
