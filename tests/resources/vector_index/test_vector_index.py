"""The vector index on both backends - Qdrant Edge in a temp dir and qdrant-client ``:memory:`` -
checked against a numpy reference and against each other."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from resources.vector_index import IndexBusyError, IndexUnavailableError, SearchTrace, VectorIndex, fuse, index_layout
from resources.vector_index.backend import Where
from resources.vector_index.schema import (
    MAX_MULTIVECTOR_VALUES,
    IndexPoint,
    IndexSchema,
    InvalidPointError,
    SchemaMismatchError,
    SearchFilters,
    point_id,
)

DIM = 16
BACKENDS = ["embedded", "memory"]


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def make_points(video_id: int, frames: int, seed: int, first_frame: int = 0) -> list[IndexPoint]:
    rng = np.random.default_rng(seed)
    points = []
    for f in range(first_frame, first_frame + frames):
        patches = unit(rng.normal(size=(int(rng.integers(1, 7)), DIM)))
        payload = {"video_id": video_id, "frame_id": f, "timestamp_ms": f * 40, "url": f"s3://b/{video_id}/{f}.jpg"}
        points.append(IndexPoint(video_id, f, unit(rng.normal(size=DIM)), patches, payload))
    return points


@pytest.fixture(params=BACKENDS)
def open_index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator:
    """A function opening the index of this test's backend; reopening sees the same data."""
    client = QdrantClient(":memory:") if request.param == "memory" else None
    opened: list[VectorIndex] = []

    def _open(schema: IndexSchema = IndexSchema("frames_test", DIM)) -> VectorIndex:
        if client is not None:
            index = VectorIndex.open(schema, client=client)
        else:
            index = VectorIndex.open(schema, path=tmp_path / "qdrant")
        opened.append(index)
        return index

    yield _open
    for index in opened:
        try:
            index.close()
        except Exception:  # noqa: BLE001 - already closed by the test
            pass


@pytest.fixture
def library(open_index) -> tuple[VectorIndex, list[IndexPoint]]:
    index = open_index()
    points = []
    for video_id in (1, 2, 3):
        video = make_points(video_id, 12, seed=video_id)
        index.sync_video(video_id, video, version=f"v{video_id}")
        points += video
    return index, points


# -- schema --------------------------------------------------------------------------------


def test_creation_is_idempotent_and_keeps_data(open_index) -> None:
    index = open_index()
    index.sync_video(5, make_points(5, 3, seed=0), "a")
    index.close()
    again = open_index()
    assert again.count() == 3


def test_different_dimension_is_refused(open_index) -> None:
    open_index().close()
    with pytest.raises(SchemaMismatchError, match="nothing was written"):
        open_index(IndexSchema("frames_test", DIM * 2))


def test_point_ids_are_deterministic_uuids() -> None:
    assert point_id(1, 2) == point_id(1, 2) != point_id(2, 1)
    assert len(point_id(1, 2)) == 36


# -- sync ----------------------------------------------------------------------------------


def test_sync_resync_and_shrink(open_index) -> None:
    index = open_index()
    first = index.sync_video(7, make_points(7, 10, seed=1), "v1")
    assert (first.upserted, first.deleted, first.skipped, index.count(7)) == (10, 0, False, 10)
    again = index.sync_video(7, make_points(7, 10, seed=1), "v1")
    assert again.skipped and again.upserted == 0 and index.count(7) == 10
    shrunk = index.sync_video(7, make_points(7, 6, seed=2), "v2")
    assert (shrunk.upserted, shrunk.deleted, index.count(7), index.count(7, "v2")) == (6, 4, 6, 6)
    index.sync_video(8, make_points(8, 4, seed=3), "v1")
    emptied = index.sync_video(7, [], "v3")
    assert emptied.deleted == 6 and index.count(7) == 0 and index.count(8) == 4


def test_interrupted_sync_is_repaired_by_the_next(open_index) -> None:
    index = open_index()
    points = make_points(4, 8, seed=5)
    index.sync_video(4, points[:3], "v1")  # as if a crash left only part of the video
    result = index.sync_video(4, points, "v1")
    patches = sum(len(p.patch_vectors) for p in points)
    assert not result.skipped and index.count(4) == 8 == index.count(4, "v1")
    assert result.patches_indexed == patches == index.count_patches(4) == index.count_patches(4, "v1")


_SYNC_THEN_HANG = """
import sys, time
sys.path.insert(0, {repo!r})
from resources.vector_index.schema import IndexSchema
from resources.vector_index import VectorIndex
from tests.resources.vector_index.test_vector_index import DIM, make_points
index = VectorIndex.open(IndexSchema("frames_test", DIM), path={path!r})
index.sync_video(4, make_points(4, 30, seed=5), "v1")
index.sync_video(5, make_points(5, 10, seed=6), "v1")
index.delete_video(5)
print("synced", flush=True)
time.sleep(600)  # killed here: never closed, never flushed by a close
"""


def test_a_sync_is_durable_when_it_returns_even_if_the_process_is_killed(tmp_path: Path) -> None:
    """The embedded index keeps no write-ahead log (Edge's held up to 64 MB per collection, and
    everything during a load that nothing flushed), so each sync and delete flushes before returning. A process SIGKILLed right after them
    leaves an index that holds exactly what they reported, in both collections."""
    import subprocess
    import sys

    path = tmp_path / "qdrant"
    repo = str(Path(__file__).resolve().parents[3])
    child = subprocess.Popen([sys.executable, "-c", _SYNC_THEN_HANG.format(repo=repo, path=str(path))], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "synced"
    finally:
        child.kill()
        child.wait(30)
    assert not (path / "frames_test" / "wal").exists() and not (path / "frames_test_patches" / "wal").exists()
    points = make_points(4, 30, seed=5)
    with VectorIndex.open(IndexSchema("frames_test", DIM), path=path) as index:
        assert index.count(4, "v1") == 30 and index.count_patches(4, "v1") == sum(len(p.patch_vectors) for p in points)
        assert index.count(5) == 0 == index.count_patches(5)
        assert index.sync_video(4, points, "v1").skipped


def test_companion_patch_points_follow_every_sync(open_index) -> None:
    """One patch point per stored patch vector, whatever the sync did: first sync, re-sync,
    shrink, another version, a companion left behind by a crash between the two collections."""
    index = open_index()
    first = make_points(7, 10, seed=1)
    n = lambda pts: sum(len(p.patch_vectors) for p in pts)  # noqa: E731
    result = index.sync_video(7, first, "v1")
    assert (result.patch_points, result.patches_indexed, index.count_patches(7)) == (n(first), n(first), n(first))
    assert index.sync_video(7, first, "v1").skipped
    shrunk = make_points(7, 4, seed=2)
    index.sync_video(7, shrunk, "v2")
    assert index.count_patches(7) == n(shrunk) == index.count_patches(7, "v2")
    # A crash after the frames were written but before their patches: the counts differ, so the
    # next sync of the same version is not skipped and repairs the companion collection.
    index._backend.delete(index.layout.patches.name, Where(video_id=7))
    repaired = index.sync_video(7, shrunk, "v2")
    assert not repaired.skipped and index.count_patches(7) == n(shrunk)
    index.delete_video(7)
    assert index.count(7) == 0 == index.count_patches(7) == index.count_patches()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_mismatch_in_the_companion_collection_is_refused(backend: str, tmp_path: Path) -> None:
    """An index written with other patch datatypes, or by a framesearch without the companion
    collection, is refused naming the collection; nothing is created or written."""
    client = QdrantClient(":memory:") if backend == "memory" else None
    where = {"client": client} if client else {"path": tmp_path}

    def open_(name: str, **layout: str) -> VectorIndex:
        schema = IndexSchema(name, DIM)
        return VectorIndex.open(schema, layout=index_layout(schema, **layout) if layout else None, **where)

    open_("frames_other", patch_datatype="turbo8").close()
    with pytest.raises(SchemaMismatchError, match="frames_other_patches"):
        open_("frames_other")
    open_("frames_old").close()
    if client:  # as an older framesearch left it: the frames collection alone
        client.delete_collection("frames_old_patches")
    else:
        import shutil

        shutil.rmtree(tmp_path / "frames_old_patches")
    with pytest.raises(SchemaMismatchError, match="no such collection"):
        open_("frames_old")
    assert (not client.collection_exists("frames_old_patches")) if client else not (tmp_path / "frames_old_patches").exists()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: setattr(p, "global_vector", np.ones(DIM + 1, np.float32)), "global vector"),
        (lambda p: setattr(p, "patch_vectors", np.ones((3, DIM - 1), np.float32)), "patch vectors"),
        (lambda p: setattr(p, "patch_vectors", np.zeros((0, DIM), np.float32)), "patch vectors"),
        (lambda p: p.global_vector.__setitem__(0, np.nan), "NaN"),
        (lambda p: setattr(p, "patch_vectors", np.ones((MAX_MULTIVECTOR_VALUES // DIM, DIM), np.float32)), "MAX_PATCHES_PER_IMAGE"),
    ],
)
def test_invalid_points_are_refused_before_any_write(open_index, mutate, message: str) -> None:
    index = open_index()
    points = make_points(9, 4, seed=9)
    mutate(points[2])
    with pytest.raises(InvalidPointError, match=message):
        index.sync_video(9, points, "v1")
    assert index.count(9) == 0


def test_sync_rejects_points_of_another_video_and_duplicates(open_index) -> None:
    index = open_index()
    with pytest.raises(ValueError, match="does not belong"):
        index.sync_video(1, make_points(2, 2, seed=0), "v")
    points = make_points(1, 2, seed=0)
    with pytest.raises(ValueError, match="duplicate"):
        index.sync_video(1, points + points[:1], "v")


# -- search --------------------------------------------------------------------------------

FILTER_CASES = [
    SearchFilters(video_ids=videos, frame_id_min=fmin, frame_id_max=fmax, timestamp_min_ms=tmin, timestamp_max_ms=tmax)
    for videos, (fmin, fmax), (tmin, tmax) in itertools.product(
        [None, (2,), (1, 3)], [(None, None), (3, None), (None, 8), (2, 9)], [(None, None), (80, None), (None, 300), (40, 200)]
    )
]


def matches(p: IndexPoint, f: SearchFilters) -> bool:
    def within(value: int, low: int | None, high: int | None) -> bool:
        return (low is None or value >= low) and (high is None or value <= high)

    return (
        (f.video_ids is None or p.video_id in f.video_ids)
        and within(p.frame_id, f.frame_id_min, f.frame_id_max)
        and within(p.payload["timestamp_ms"], f.timestamp_min_ms, f.timestamp_max_ms)  # type: ignore[arg-type]
    )


def reference(points: list[IndexPoint], query: np.ndarray, f: SearchFilters, k: int, patches: np.ndarray | None = None, alpha: float = 0.5) -> list[tuple[str, float]]:
    """numpy brute force over every matching frame (at this size the candidates are all of them):
    the global cosine, or the fusion of it with MaxSim (mean over rows of the best patch cosine)."""
    chosen = [p for p in points if matches(p, f)]
    g = np.array([float(p.global_vector @ query) for p in chosen])
    if patches is None:
        scores = g
    else:
        m = np.array([float((patches @ p.patch_vectors.T).max(axis=1).mean()) for p in chosen])
        scores = fuse(g, m, alpha)
    return sorted(zip([p.id for p in chosen], scores.tolist()), key=lambda item: -item[1])[:k]


def tolerance(index: VectorIndex) -> float:
    """Score tolerance: the embedded index stores patch multivectors as turbo8 (8-bit TurboQuant,
    cosine error ~1e-3 at 512-d, more at this test's 16-d); ":memory:" mode computes in float32."""
    return 0.03 if index.mode == "embedded" else 1e-5


@pytest.mark.parametrize("filters", FILTER_CASES, ids=lambda f: repr(f)[14:-1] or "none")
def test_global_search_with_every_filter_combination(library, filters: SearchFilters) -> None:
    index, points = library
    query = unit(np.random.default_rng(42).normal(size=DIM))
    hits = index.search(query, top_k=100, filters=filters)
    want = reference(points, query, filters, 100)
    assert [h.point_id for h in hits] == [pid for pid, _ in want]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in want], atol=1e-5)
    assert all(h.maxsim_score is None and h.global_score == h.score for h in hits)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("rows", [1, 4])
def test_rerank_matches_numpy(library, alpha: float, rows: int) -> None:
    index, points = library
    rng = np.random.default_rng(rows)
    query, patches = unit(rng.normal(size=DIM)), unit(rng.normal(size=(rows, DIM)))
    filters = SearchFilters(video_ids=(1, 3), frame_id_min=2)
    hits = index.search(query, top_k=10, filters=filters, patch_queries=patches, alpha=alpha)
    want = reference(points, query, filters, 10, patches, alpha)
    tol = tolerance(index)
    by_id = {p.id: p for p in points}
    for hit in hits:
        p = by_id[hit.point_id]
        assert hit.global_score == pytest.approx(float(p.global_vector @ query), abs=1e-5)
        assert hit.maxsim_score == pytest.approx(float((patches @ p.patch_vectors.T).max(axis=1).mean()), abs=tol)
        assert hit.payload["video_id"] in (1, 3) and hit.payload["frame_id"] >= 2
    if index.mode == "embedded":  # quantized MaxSim: near-equal frames may swap; most of the page agrees
        assert len({h.point_id for h in hits} & {pid for pid, _ in want}) >= 8
        return
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in want], atol=1e-5)
    if alpha < 1.0:  # at alpha = 1 equal global scores could tie differently; scores suffice
        assert [h.point_id for h in hits] == [pid for pid, _ in want]


def _planted_library(index: VectorIndex, frames: int, needle_frames: int) -> tuple[np.ndarray, list[IndexPoint]]:
    """``frames`` frames of 4 patches; ``needle_frames`` of them, drawn among those whose global
    vectors are far from a target, hold one patch close to it: a small object the global vector
    does not see. Returns (target, needles)."""
    rng = np.random.default_rng(21)
    target = unit(rng.normal(size=DIM))
    # Frames of one library look alike overall: global vectors around a common direction, spread
    # like a real model's (cosines to a caption vary by ~0.1, not the 0.25 of random 16-d vectors).
    common = unit(rng.normal(size=DIM))
    globals_ = unit(common + 0.5 * unit(rng.normal(size=(frames, DIM))))
    far = np.argsort(-(globals_ @ target))[frames // 3 :]  # well outside any global pool
    needles = set(rng.choice(far, needle_frames, replace=False).tolist())
    points, planted = [], []
    for f in range(frames):
        patches = unit(rng.normal(size=(4, DIM)))
        if f in needles:
            patches[int(rng.integers(4))] = unit(target + 0.05 * rng.normal(size=DIM))
        point = IndexPoint(f // 500, f % 500, globals_[f], patches, {"video_id": f // 500, "frame_id": f % 500, "timestamp_ms": 0})
        points.append(point)
        if f in needles:
            planted.append(point)
    for video in range(0, frames // 500):
        index.sync_video(video, points[video * 500 : (video + 1) * 500], "v1")
    index.optimize()
    return target, planted


def test_a_planted_small_object_outside_the_global_pool_is_found_through_its_patches(open_index) -> None:
    """The frames holding the target are not in the global pool (their global vectors are random),
    yet their patches bring them into the candidates and the patch score ranks them first."""
    index = open_index()
    target, planted = _planted_library(index, 3000, 3)
    global_pool = {h.point_id for h in index.search(target, top_k=100)}
    assert not global_pool & {p.id for p in planted}
    hits = index.search(target, top_k=10, patch_queries=target[None], alpha=0.0)  # a text query: one row
    assert {h.point_id for h in hits[:3]} == {p.id for p in planted}
    default = index.search(target, top_k=10, patch_queries=target[None])  # the default fusion keeps them
    assert {p.id for p in planted} <= {h.point_id for h in default}
    assert all(h.maxsim_score > 0.9 for h in hits[:3])  # cos(target, target + noise) ~ 0.98
    by_id = {p.id: p for p in planted}
    for hit in hits[:3]:  # the box shown is the planted patch (found in the companion collection)
        assert hit.best_patch == int((by_id[hit.point_id].patch_vectors @ target).argmax())
    filtered = index.search(target, top_k=10, patch_queries=target[None], alpha=0.0, filters=SearchFilters(video_ids=(planted[0].video_id,)))
    assert filtered[0].point_id in {p.id for p in planted if p.video_id == planted[0].video_id}
    assert all(h.payload["video_id"] == planted[0].video_id for h in filtered)


def test_a_trace_says_which_stage_brought_each_candidate(open_index) -> None:
    """The planted needles reach the candidates through the patch stage, not the global pool; the
    trace's candidates are the union of the two stages, its scores are the hits' own, and tracing
    changes nothing in the results."""
    index = open_index()
    target, planted = _planted_library(index, 3000, 3)
    needles = {p.id for p in planted}
    trace = SearchTrace()
    hits = index.search(target, top_k=10, patch_queries=target[None], trace=trace)
    assert [h.point_id for h in hits] == trace.ranked == [h.point_id for h in index.search(target, top_k=10, patch_queries=target[None])]
    assert len(trace.global_pool) == 100 and not needles & set(trace.global_pool)
    assert needles <= set(trace.patch_frames)
    assert trace.candidates == list(dict.fromkeys(trace.global_pool + trace.patch_frames))
    assert set(trace.scored) <= set(trace.candidates) and len(trace.scored) == len(trace.fused) == len(trace.maxsim_scores)
    scored = dict(zip(trace.scored, zip(trace.global_scores, trace.maxsim_scores, trace.fused)))
    for hit in hits:
        assert scored[hit.point_id] == pytest.approx((hit.global_score, hit.maxsim_score, hit.score))
    alone = SearchTrace()
    index.search(target, top_k=10, patch_queries=target[None], patch_pool=0, trace=alone)
    assert alone.patch_frames == [] and alone.candidates == alone.global_pool


def test_search_validates_inputs(library) -> None:
    index, _ = library
    query = np.ones(DIM, np.float32)
    with pytest.raises(ValueError, match="top_k"):
        index.search(query, top_k=0)
    with pytest.raises(ValueError, match="alpha"):
        index.search(query, alpha=1.5, patch_queries=query[None])
    with pytest.raises(ValueError, match="shape"):
        index.search(np.ones(DIM + 1, np.float32))
    with pytest.raises(ValueError, match="finite"):
        index.search(np.full(DIM, np.nan, np.float32))


def test_empty_results(library) -> None:
    index, _ = library
    query = np.ones(DIM, np.float32)
    assert index.search(query, filters=SearchFilters(video_ids=(99,))) == []
    assert index.search(query, filters=SearchFilters(video_ids=(99,)), patch_queries=query[None]) == []


def test_both_backends_give_the_same_results(tmp_path: Path) -> None:
    """The same hits in the same order; scores equal but for the embedded index's quantized
    patch multivectors (turbo8)."""
    schema = IndexSchema("frames_same", DIM)
    results = []
    with VectorIndex.open(schema, path=tmp_path) as edge, VectorIndex.open(schema, url=":memory:") as memory:
        for index in (edge, memory):
            for video_id in (1, 2):
                index.sync_video(video_id, make_points(video_id, 15, seed=video_id), "v")
            rng = np.random.default_rng(7)
            query, patches = unit(rng.normal(size=DIM)), unit(rng.normal(size=(3, DIM)))
            results.append((index.search(query, top_k=8), index.search(query, top_k=8, patch_queries=patches, alpha=0.4)))
    (edge_global, edge_rerank), (memory_global, memory_rerank) = results
    assert [(h.point_id, round(h.score, 5)) for h in edge_global] == [(h.point_id, round(h.score, 5)) for h in memory_global]
    assert len({h.point_id for h in edge_rerank} & {h.point_id for h in memory_rerank}) >= 7
    by_id = {h.point_id: h for h in memory_rerank}
    for hit in edge_rerank:
        if hit.point_id in by_id:
            assert hit.global_score == pytest.approx(by_id[hit.point_id].global_score, abs=1e-5)
            assert hit.maxsim_score == pytest.approx(by_id[hit.point_id].maxsim_score, abs=0.03)


def test_embedded_shard_is_owned_by_one_opener(tmp_path: Path) -> None:
    schema = IndexSchema("frames_lock", DIM)
    with VectorIndex.open(schema, path=tmp_path):
        with pytest.raises(IndexBusyError, match="another process"):
            VectorIndex.open(schema, path=tmp_path)
    with VectorIndex.open(schema, path=tmp_path) as index:  # released on close
        assert index.count() == 0


class _FakeQdrantRoot(http.server.BaseHTTPRequestHandler):
    """Answers GET / like a Qdrant server of version ``self.server.version`` (and nothing else)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"title": "qdrant - vector search engine", "version": self.server.version}).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_server_too_old_for_multivectors_is_refused_by_version() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeQdrantRoot)
    server.version = "1.9.2"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(IndexUnavailableError, match=r"version 1\.9\.2.*>= 1\.20"):
            VectorIndex.open(IndexSchema("frames_test", DIM), url=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()


def test_unreachable_server_is_reported() -> None:
    with pytest.raises(IndexUnavailableError, match="cannot reach Qdrant"):
        VectorIndex.open(IndexSchema("frames_test", DIM), url="http://127.0.0.1:9")


def test_corrupt_embedded_shard_is_reported_and_released(tmp_path: Path) -> None:
    schema = IndexSchema("frames_bad", DIM)
    shard = tmp_path / "frames_bad"
    shard.mkdir()
    (shard / "edge_config.json").write_text("{not json")
    with pytest.raises(IndexUnavailableError, match="cannot open the embedded index"):
        VectorIndex.open(schema, path=tmp_path)
    with pytest.raises(IndexUnavailableError):  # the lock was released: a second try gets as far
        VectorIndex.open(schema, path=tmp_path)


def test_search_restricted_to_point_ids(library) -> None:
    index, points = library
    chosen = (points[3].id, points[17].id, points[30].id)
    query = unit(np.random.default_rng(3).normal(size=DIM))
    hits = index.search(query, top_k=10, filters=SearchFilters(point_ids=chosen))
    assert {h.point_id for h in hits} == set(chosen)
    reranked = index.search(query, top_k=10, filters=SearchFilters(point_ids=chosen), patch_queries=query[None])
    assert {h.point_id for h in reranked} == set(chosen)


# -- listing videos --------------------------------------------------------------------------


def test_video_ids_lists_exactly_the_videos_with_points(open_index) -> None:
    index = open_index()
    assert index.video_ids() == set()
    for video_id in (1, 2, 3, 2**63 - 1):
        index.sync_video(video_id, make_points(video_id, 4, seed=video_id), "v1")
    index.optimize()  # the listing must see deletions in optimized segments as well
    index.delete_video(2)
    index.sync_video(3, [], "v2")  # emptied by a sync
    index.sync_video(1, make_points(1, 2, seed=9), "v2")  # shrunk in place
    assert index.video_ids() == {1, 2**63 - 1}


# -- ids are Qdrant integers -------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 2**63, 2**64 + 5])
def test_ids_outside_i64_are_refused_with_a_value_error_naming_them(library, bad: int) -> None:
    index, _ = library
    query = np.ones(DIM, np.float32)
    calls = [
        lambda: index.sync_video(bad, [], "v"),
        lambda: index.sync_video(bad, make_points(bad, 1, seed=0), "v"),
        lambda: index.sync_video(4, [IndexPoint(4, bad, query, query[None], {"video_id": 4, "frame_id": bad})], "v"),
        lambda: index.delete_video(bad),
        lambda: index.count(bad),
        lambda: index.search(query, filters=SearchFilters(video_ids=(1, bad))),
        lambda: index.search(query, filters=SearchFilters(video_ids=(bad,)), patch_queries=query[None]),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=str(bad)):
            call()
    assert index.count() == 36 and index.video_ids() == {1, 2, 3}


def test_point_id_filters_must_be_uuids(library) -> None:
    index, _ = library
    with pytest.raises(ValueError, match="'frame-7'"):
        index.search(np.ones(DIM, np.float32), filters=SearchFilters(point_ids=("frame-7",)))


# -- the best patch of reranked hits -----------------------------------------------------------

PATCHES_1080P = 144  # a 1920x1080 frame's windows at the default patch settings


def _patchy_library(index: VectorIndex, frames: int) -> list[IndexPoint]:
    """Frames with 144 patches each and their boxes in the payload, as the pipeline writes them."""
    rng = np.random.default_rng(11)
    boxes = [[(i % 16) * 120, (i // 16) * 120, 224, 224] for i in range(PATCHES_1080P)]
    points = [
        IndexPoint(1, f, unit(rng.normal(size=DIM)), unit(rng.normal(size=(PATCHES_1080P, DIM))),
                   {"video_id": 1, "frame_id": f, "timestamp_ms": f * 40, "patch_boxes": boxes})
        for f in range(frames)
    ]
    index.sync_video(1, points, "v1")
    index.optimize()
    return points


def _peak_bytes(call) -> tuple[int, object]:  # noqa: ANN001 - any callable
    import tracemalloc

    tracemalloc.start()
    try:
        result = call()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_rerank_best_patch_is_exact_and_its_memory_does_not_grow_with_top_k(open_index) -> None:
    """top_k=100 with rerank used to pull every hit's patch vectors at once (as Python lists in
    qdrant-client: ~2.4 MB per 1080p frame at 512-d) and return every patch box in payloads."""
    index = open_index()
    points = _patchy_library(index, 150)
    by_id = {p.id: p for p in points}
    rng = np.random.default_rng(5)
    query, rows = unit(rng.normal(size=DIM)), unit(rng.normal(size=(6, DIM)))
    search = lambda k: index.search(query, top_k=k, patch_queries=rows, pool=150)  # noqa: E731 - same pool
    search(100)  # warm up: first-call allocations are not the search's
    small, _ = _peak_bytes(lambda: search(8))
    large, hits = _peak_bytes(lambda: search(100))
    assert len(hits) == 100
    for hit in hits:
        p = by_id[hit.point_id]
        exact = (p.patch_vectors @ rows.T).max(axis=1)  # each patch's best match with a row
        # The patch that matched best (on the embedded index: within turbo8's error of the best).
        assert exact[hit.best_patch] >= exact.max() - (0 if index.mode != "embedded" else 0.03)
        assert hit.best_patch_box == p.payload["patch_boxes"][hit.best_patch]
        assert "patch_boxes" not in hit.payload and hit.payload["frame_id"] == p.frame_id
    # Reading all 100 hits' patch vectors at once costs ~7 MB here (144 x 16 floats as Python
    # lists per frame); what may grow with top_k is the candidate list (ids and two ints each).
    assert large - small < 2_500_000, f"peak {large:,} B at top_k=100 vs {small:,} B at top_k=8"
    plain = index.search(query, top_k=5)
    assert all("patch_boxes" not in h.payload and h.best_patch_box is None for h in plain)
