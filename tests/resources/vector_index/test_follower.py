"""The index follows the checkpoint folder; in embedded mode one process owns the shard while
another keeps publishing checkpoints."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from resources.checkpoints.format import FrameRecord, published_path, records_to_table, write_table_atomic
from resources.embedding.encoder import FrameEmbedding
from resources.embedding.patches import PatchConfig, plan_patches
from resources.vector_index import IndexBusyError, VectorIndex
from resources.vector_index.follower import CheckpointFollower, SyncSession, sync_checkpoint, sync_or_defer
from resources.vector_index.schema import IndexSchema, point_id

DIM = 16
SCHEMA = IndexSchema("frames_follow", DIM)
PATCHES = PatchConfig(window=64, stride=64)


def publish(root: Path, video_id: int, frames: int, seed: int) -> str:
    """Write a checkpoint with random unit vectors, as the pipeline would."""
    rng = np.random.default_rng(seed)
    plan = plan_patches(200, 100, PATCHES)
    records = []
    for f in range(frames):
        g = rng.normal(size=DIM).astype(np.float32)
        p = rng.normal(size=(len(plan), DIM)).astype(np.float32)
        emb = FrameEmbedding(g / np.linalg.norm(g), p / np.linalg.norm(p, axis=1, keepdims=True), plan)
        records.append(FrameRecord(video_id, f, f * 100, f"file:///v{video_id}/{f}.png", 200, 100, emb))
    return write_table_atomic(records_to_table(records, "test-model", DIM), published_path(root, video_id))


def test_follower_applies_changes_and_removals(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    with VectorIndex.open(SCHEMA, path=tmp_path / "qdrant") as index:
        follower = CheckpointFollower(index, root)
        assert follower.poll() == []  # no folder yet: nothing to do, nothing deleted
        v1 = publish(root, 1, 5, seed=1)
        publish(root, 2, 3, seed=2)
        results = follower.poll()
        assert {(r.video_id, r.points, r.skipped) for r in results} == {(1, 5, False), (2, 3, False)}
        assert index.count(1, v1) == 5 and follower.poll() == []  # unchanged files are not re-read
        publish(root, 1, 2, seed=3)  # video 1 shrinks
        [result] = follower.poll()
        assert (result.video_id, result.deleted, index.count(1)) == (1, 3, 2)
        published_path(root, 2).unlink()
        follower.poll()
        assert index.count(2) == 0 and index.count(1) == 2


@pytest.fixture(params=["embedded", "memory"])
def open_index(request: pytest.FixtureRequest, tmp_path: Path):
    """Opens this test's index; reopening (a restart) sees the same data on either backend."""
    client = QdrantClient(":memory:") if request.param == "memory" else None
    return lambda cls=VectorIndex: cls.open(SCHEMA, client=client) if client else cls.open(SCHEMA, path=tmp_path / "qdrant")


def test_a_restart_drops_a_video_whose_checkpoint_vanished(tmp_path: Path, open_index) -> None:
    root = tmp_path / "checkpoints"
    for video_id in (1, 2, 3):
        publish(root, video_id, 3, seed=video_id)
    with open_index() as index:
        CheckpointFollower(index, root).poll()
        assert index.video_ids() == {1, 2, 3}
    published_path(root, 1).unlink()  # while the service is down
    with open_index() as index:
        follower = CheckpointFollower(index, root)
        follower.poll()
        assert index.video_ids() == {2, 3} and index.count(1) == 0 and index.count(2) == 3
        publish(root, 1, 2, seed=4)  # published again later: applied as usual
        follower.poll()
        assert index.count(1) == 2


def test_a_missing_or_empty_checkpoint_folder_never_empties_the_index(tmp_path: Path, open_index) -> None:
    """An unmounted volume shows as a missing folder or an empty mount point: neither may delete."""
    root = tmp_path / "checkpoints"
    publish(root, 1, 3, seed=1)
    publish(root, 2, 2, seed=2)
    with open_index() as index:
        follower = CheckpointFollower(index, root)
        follower.poll()
        for path in published_path(root, 1), published_path(root, 2):
            path.unlink()  # the folder now looks like an empty mount point
        follower.poll()
        assert index.video_ids() == {1, 2}
        root.rmdir()
        follower.poll()
        assert index.video_ids() == {1, 2}
    for folder_exists in (False, True):  # the same at start, before the first listing
        if folder_exists:
            root.mkdir()
        with open_index() as index:
            CheckpointFollower(index, root).poll()
            assert index.count() == 5
    publish(root, 2, 2, seed=2)  # mounted again: video 1's checkpoint is really gone
    with open_index() as index:
        CheckpointFollower(index, root).poll()
        assert index.video_ids() == {2}


def test_reconcile_keeps_a_video_published_while_it_listed_the_index(tmp_path: Path, open_index) -> None:
    """The pipeline (server mode) publishes video 3's checkpoint and syncs it between the
    follower's listing of the folder and its listing of the index."""
    root = tmp_path / "checkpoints"
    publish(root, 1, 2, seed=1)

    class PipelineRacesTheListing(VectorIndex):
        def video_ids(self) -> set[int]:
            path = published_path(root, 3)
            if not path.exists():
                publish(root, 3, 4, seed=3)
                sync_checkpoint(self, 3, path)
            return super().video_ids()

    with open_index(PipelineRacesTheListing) as index:
        CheckpointFollower(index, root).poll()
        assert index.video_ids() == {1, 3} and index.count(3) == 4


def test_reconcile_repairs_a_video_published_while_it_deleted(tmp_path: Path, open_index) -> None:
    """Video 3 had stale points; its checkpoint reappears (and is synced) just before the
    follower deletes it: the next poll applies the checkpoint again."""
    root = tmp_path / "checkpoints"
    publish(root, 1, 2, seed=1)
    publish(root, 3, 4, seed=3)
    with open_index() as index:
        CheckpointFollower(index, root).poll()
    published_path(root, 3).unlink()

    class PipelineRacesTheDelete(VectorIndex):
        def delete_video(self, video_id: int) -> None:
            if video_id == 3 and not published_path(root, 3).exists():
                publish(root, 3, 4, seed=5)
                sync_checkpoint(self, 3, published_path(root, 3))
            super().delete_video(video_id)

    with open_index(PipelineRacesTheDelete) as index:
        follower = CheckpointFollower(index, root)
        follower.poll()
        follower.poll()
        assert index.video_ids() == {1, 3} and index.count(3) == 4


def test_a_failed_reconcile_does_not_stop_syncing_and_is_retried(tmp_path: Path, open_index) -> None:
    root = tmp_path / "checkpoints"
    publish(root, 1, 2, seed=1)
    publish(root, 2, 2, seed=2)
    with open_index() as index:
        CheckpointFollower(index, root).poll()
    published_path(root, 2).unlink()
    publish(root, 3, 1, seed=3)

    class ListingFailsOnce(VectorIndex):
        failed = False

        def video_ids(self) -> set[int]:
            if not self.failed:
                self.failed = True
                raise ConnectionError("index unreachable")
            return super().video_ids()

    with open_index(ListingFailsOnce) as index:
        follower = CheckpointFollower(index, root)
        follower.poll()
        assert not follower.reconciled and index.count(3) == 1 and index.count(2) == 2
        follower.poll()
        assert follower.reconciled and index.video_ids() == {1, 3}


def test_a_bad_checkpoint_does_not_block_the_others(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    root.mkdir()
    published_path(root, 3).write_bytes(b"not parquet")
    publish(root, 4, 2, seed=4)
    with VectorIndex.open(SCHEMA, path=tmp_path / "qdrant") as index:
        follower = CheckpointFollower(index, root)
        follower.poll()
        assert index.count(4) == 2 and 3 in follower.errors
        publish(root, 3, 1, seed=5)  # repaired: applied on the next poll, error cleared
        follower.poll()
        assert index.count(3) == 1 and follower.errors == {}


def test_sync_or_defer(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    publish(root, 5, 4, seed=6)

    def open_index() -> VectorIndex:
        return VectorIndex.open(SCHEMA, path=tmp_path / "qdrant")

    with open_index():
        assert sync_or_defer(open_index, 5, published_path(root, 5)) is None  # held elsewhere
    result = sync_or_defer(open_index, 5, published_path(root, 5))
    assert result is not None and result.points == 4
    with open_index() as index:
        assert index.count(5) == 4


def test_a_sync_session_opens_the_index_once_and_lets_it_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's videos sync through one opening of the index; an embedded shard is released after
    ``hold_s`` (another process may take it; the session reopens it at its next sync), and a shard
    held elsewhere defers the sync."""
    root = tmp_path / "checkpoints"
    for video_id in (1, 2, 3, 4):
        publish(root, video_id, 2, seed=video_id)

    def open_index() -> VectorIndex:
        return VectorIndex.open(SCHEMA, path=tmp_path / "qdrant")

    with SyncSession(open_index, hold_s=None) as session:
        assert [session.sync_or_defer(v, published_path(root, v)).points for v in (1, 2, 3)] == [2, 2, 2]  # type: ignore[union-attr]
        assert session.opened == 1
        with pytest.raises(IndexBusyError):
            open_index()  # held for the session
    with open_index() as index:  # released, optimized, closed
        assert [index.count(v) for v in (1, 2, 3)] == [2, 2, 2]

    clock = [0.0]
    monkeypatch.setattr("resources.vector_index.follower.time.monotonic", lambda: clock[0])
    session = SyncSession(open_index, hold_s=30.0)
    assert session.sync_or_defer(1, published_path(root, 1)) is not None
    clock[0] = 31.0  # held past hold_s: released before the next sync, which reopens it
    assert session.sync_or_defer(2, published_path(root, 2)) is not None and session.opened == 2
    session.close()
    with open_index():
        assert SyncSession(open_index).sync_or_defer(4, published_path(root, 4)) is None  # held elsewhere: deferred
    with open_index() as index:
        assert index.count(4) == 0


def _serve(qdrant: str, root: str, out: str, stop_file: str) -> None:
    """The shard owner (as the search service is): follows checkpoints, answers queries."""
    index = VectorIndex.open(SCHEMA, path=qdrant, lock_timeout_s=30)
    stop = threading.Event()
    follower = threading.Thread(target=CheckpointFollower(index, Path(root)).run, args=(stop, 0.5), daemon=True)
    follower.start()
    probe = np.ones(DIM, np.float32)
    with open(out, "a") as handle:
        while not Path(stop_file).exists():
            hits = index.search(probe, top_k=100)
            handle.write(json.dumps({"t": time.time(), "ids": [h.point_id for h in hits]}) + "\n")
            handle.flush()
            time.sleep(0.05)
    stop.set()
    follower.join()
    index.close()


@pytest.mark.slow
def test_owner_keeps_answering_while_another_process_publishes(tmp_path: Path) -> None:
    root, qdrant, out, stop_file = tmp_path / "ckpt", tmp_path / "qdrant", tmp_path / "answers.jsonl", tmp_path / "stop"
    publish(root, 1, 3, seed=1)
    context = multiprocessing.get_context("spawn")
    owner = context.Process(target=_serve, args=(str(qdrant), str(root), str(out), str(stop_file)))
    owner.start()
    try:

        def answers() -> list[dict]:
            return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

        def wait_for(frame_id: str, deadline_s: float) -> float:
            start = time.monotonic()
            while time.monotonic() - start < deadline_s:
                found = answers()
                if found and frame_id in found[-1]["ids"]:
                    return time.monotonic() - start
                assert owner.is_alive(), "the index owner died"
                time.sleep(0.1)
            raise AssertionError(f"{frame_id} not searchable after {deadline_s} s")

        wait_for(point_id(1, 0), 60)
        # This process plays the pipeline: it publishes video 2, cannot take the shard, and
        # leaves the sync to the owner - neither side crashes.
        publish(root, 2, 4, seed=2)
        published_at = time.time()
        assert sync_or_defer(lambda: VectorIndex.open(SCHEMA, path=qdrant), 2, published_path(root, 2)) is None
        seconds = wait_for(point_id(2, 3), 60)
        assert seconds < 60
        times = [a["t"] for a in answers() if a["t"] >= published_at - 1]
        assert len(times) > 3 and max(np.diff(times)) < 2.0, "queries stalled while the owner synced"
    finally:
        stop_file.touch()
        owner.join(30)
        if owner.is_alive():
            owner.kill()
    assert owner.exitcode == 0


def test_on_a_server_the_removing_follower_deletes_what_lost_its_checkpoint(tmp_path: Path) -> None:
    """Issue 21: with QDRANT_URL the pipeline syncs each video itself and no follower applied
    anything, so a deleted checkpoint left its points searchable for ever. The service's follower
    with ``apply=False`` removes them (at start-up and while it runs) and never syncs itself."""
    root = tmp_path / "checkpoints"
    index = VectorIndex.open(SCHEMA, client=QdrantClient(":memory:"))
    for video_id in (1, 2, 3):
        publish(root, video_id, 3, seed=video_id)
        sync_checkpoint(index, video_id, published_path(root, video_id))  # the pipeline's syncs
    published_path(root, 3).unlink()  # removed before the service started
    follower = CheckpointFollower(index, root, apply=False)
    assert follower.poll() == [] and index.video_ids() == {1, 2}
    published_path(root, 2).unlink()  # removed while it runs
    follower.poll()
    assert index.video_ids() == {1} and index.count(1) == 3
    publish(root, 4, 2, seed=4)  # published, not yet synced by its run: this follower leaves it to the run
    follower.poll()
    assert index.video_ids() == {1}


def test_a_video_published_again_while_it_was_being_removed_stays(tmp_path: Path, open_index) -> None:
    """The delete and a re-run's publish + sync may interleave: whichever order, the re-run's
    checkpoint ends in the index (the follower syncs it again when it finds it after deleting)."""
    root = tmp_path / "checkpoints"
    with open_index() as index:
        for apply in (True, False):
            publish(root, 5, 3, seed=5)
            sync_checkpoint(index, 5, published_path(root, 5))  # the re-run published and synced...
            CheckpointFollower(index, root, apply=apply)._remove(5, "test")  # ...just before this delete landed
            assert index.count(5) == 3
