"""Issue 21: ingest batches are compacted, so many small ingests into one video do not make every
listing read every batch ever written. Local folders and S3 (moto over HTTP), with real threads
ingesting while the compaction runs."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from resources.frame_sources import FrameRef, FrameSource, LocalFolderSource, S3FrameSource
from resources.frame_sources.base import INGEST_DIR
from resources.frame_sources.batches import new_batch_name, settled_batches


def _local(tmp_path: Path) -> tuple[FrameSource, str]:
    (tmp_path / "lib" / "4").mkdir(parents=True)
    (tmp_path / "lib" / "4" / "frame_0.png").write_bytes(b"x")
    return LocalFolderSource(tmp_path / "lib", fps=10.0), (tmp_path / "frames").as_uri()


def _s3(s3_client: Any) -> tuple[FrameSource, str]:
    bucket = f"compact-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_object(Bucket=bucket, Key="lib/4/frame_0.png", Body=b"x")
    return S3FrameSource(s3_client, f"s3://{bucket}/lib/", fps=10.0, endpoint_url=s3_client.meta.endpoint_url), f"s3://{bucket}/frames"


@pytest.fixture(params=["local", "s3"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[FrameSource, str]:
    return _local(tmp_path) if request.param == "local" else _s3(request.getfixturevalue("s3_client"))


def test_settled_batches_are_the_old_prefix_of_generated_names() -> None:
    old = [f"{t:020d}-{'a' * 16}.jsonl" for t in (10, 20, 30)]
    assert settled_batches(old[::-1], before_ns=25) == old[:2]
    assert settled_batches([*old, "zz-by-hand.jsonl"], before_ns=100) == old  # a hand-placed name ends the run
    assert settled_batches(["00-by-hand.jsonl", *old], before_ns=100) == []  # and keeps its place first
    assert settled_batches([new_batch_name()], before_ns=time.time_ns() - 60 * 10**9) == []


def test_compaction_keeps_the_manifest_and_leaves_one_batch(source: tuple[FrameSource, str]) -> None:
    frames, base = source
    for i in range(30):  # 30 single-frame ingests, every 10th re-sends frame 1 with a new url
        frame_id = 1 if i % 10 == 0 else 100 + i
        frames.record_frames(4, [FrameRef(frame_id, i, f"{base}/{i}.png")])
    before = frames.manifest(4)
    names = frames._batch_names(4)
    assert len(names) == 30 and [r.url for r in before if r.frame_id == 1] == [f"{base}/20.png"]

    assert frames.compact_batches(4) == 0  # all younger than a minute: left alone
    assert frames.compact_batches(4, settle_s=0) == 29
    assert frames._batch_names(4) == [names[-1]]  # the newest name holds the merge: same place in the order
    assert frames.manifest(4) == before
    assert frames.compact_batches(4, settle_s=0) == 0  # nothing more to do

    frames.record_frames(4, [FrameRef(1, 0, f"{base}/again.png")])  # a later ingest still wins
    assert [r.url for r in frames.manifest(4) if r.frame_id == 1] == [f"{base}/again.png"]


def test_ingests_and_listings_during_compaction_lose_nothing(source: tuple[FrameSource, str]) -> None:
    """Four writers ingest 25 frames each (every call also lists the video) while another thread
    compacts without a settling time: no call fails, every frame is there at the end."""
    frames, base = source
    errors: list[BaseException] = []
    writing = threading.Event()
    writing.set()

    def write(writer: int) -> None:
        try:
            for i in range(25):
                frame_id = 1000 * writer + i
                listed = frames.record_frames(4, [FrameRef(frame_id, i, f"{base}/{frame_id}.png")])
                assert frame_id in {r.frame_id for r in listed}
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def compact() -> None:
        try:
            while writing.is_set():
                frames.compact_batches(4, settle_s=0)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    compactor = threading.Thread(target=compact)
    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    compactor.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    writing.clear()
    compactor.join()
    assert not errors, errors
    expected = {0} | {1000 * w + i for w in range(4) for i in range(25)}
    assert {r.frame_id for r in frames.manifest(4)} == expected
    frames.compact_batches(4, settle_s=0)
    assert {r.frame_id for r in frames.manifest(4)} == expected and len(frames._batch_names(4)) == 1


def test_a_local_batch_file_that_vanished_since_the_listing_is_skipped(tmp_path: Path) -> None:
    frames, base = _local(tmp_path)
    frames.record_frames(4, [FrameRef(5, 0, f"{base}/5.png")])
    [name] = frames._batch_names(4)
    assert frames._read_batch(4, name) == [FrameRef(5, 0, f"{base}/5.png")]
    (tmp_path / "lib" / "4" / INGEST_DIR / name).unlink()
    assert frames._read_batch(4, name) is None
