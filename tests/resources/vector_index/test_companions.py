"""Issue 20: temporal dedup of the patch graph. A static scene's windows become one companion point
per run of frames; a small object that appears in one frame keeps its own point; runs cover exactly
the frames they stand for; sync, re-sync and shrink keep the companion equal to the checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient

from resources.settings import SettingsError, index_settings_from_env
from resources.vector_index import VectorIndex
from resources.vector_index.companions import companion_runs
from resources.vector_index.layout import index_layout, patch_point_id
from resources.vector_index.schema import IndexPoint, IndexSchema, point_id

DIM = 32
SCHEMA = IndexSchema("frames_companions", DIM)
WINDOWS = 6
NEEDLE_FRAME, NEEDLE_WINDOW = 4, 2
BOXES = [[x * 100, 0, 100, 100] for x in range(WINDOWS)]


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def static_scene(frames: int = 10, seed: int = 0, noise: float = 0.02) -> tuple[list[IndexPoint], np.ndarray]:
    """A video of a static scene (each window's vector plus a little noise per frame, as decoded
    video gives) with a small object in one window of one frame; and the object's vector."""
    rng = np.random.default_rng(seed)
    scene = _unit(rng.normal(size=(WINDOWS, DIM)))
    needle = _unit(rng.normal(size=DIM))
    points = []
    for f in range(frames):
        patches = _unit(scene + noise * rng.normal(size=scene.shape))
        if f == NEEDLE_FRAME:
            patches[NEEDLE_WINDOW] = _unit(0.5 * scene[NEEDLE_WINDOW] + needle)
        glob = _unit(patches.mean(0))
        payload = {"video_id": 7, "frame_id": 10 * f, "timestamp_ms": 1000 * f, "patch_boxes": BOXES}
        points.append(IndexPoint(7, 10 * f, glob, patches, payload))
    return points, needle


def test_runs_merge_the_static_windows_and_keep_the_needle() -> None:
    points, _ = static_scene()
    assert len(companion_runs(points, None)) == 10 * WINDOWS  # off: a point per window of every frame
    runs = companion_runs(points, 0.95)
    spans = {(int(w), int(a), int(b)) for a, w, b in zip(runs.first, runs.window, runs.last)}
    expected = {(w, 0, 9) for w in range(WINDOWS) if w != NEEDLE_WINDOW}
    # The needle's window: the scene up to frame 3, the needle alone in frame 4, the scene again.
    expected |= {(NEEDLE_WINDOW, 0, NEEDLE_FRAME - 1), (NEEDLE_WINDOW, NEEDLE_FRAME, NEEDLE_FRAME), (NEEDLE_WINDOW, NEEDLE_FRAME + 1, 9)}
    assert spans == expected
    # Every (frame, window) is covered by exactly one run.
    covered = sorted((f, int(w)) for a, w, b in zip(runs.first, runs.window, runs.last) for f in range(int(a), int(b) + 1))
    assert covered == [(f, w) for f in range(10) for w in range(WINDOWS)]


def test_alike_windows_of_one_frame_are_one_point_and_the_needle_stays_apart() -> None:
    """Within-frame redundancy: windows 0-2 show the same flat sky; the needle appears in window 1
    of frame 4. The sky is one run from the first frame on; the needle is a point of its own; every
    window of every frame is represented by a run whose vector is within the threshold of it."""
    rng = np.random.default_rng(5)
    sky, rest, needle = _unit(rng.normal(size=DIM)), _unit(rng.normal(size=(WINDOWS - 3, DIM))), _unit(rng.normal(size=DIM))
    points = []
    for f in range(6):
        patches = _unit(np.concatenate([np.repeat(sky[None], 3, 0), rest]) + 0.02 * rng.normal(size=(WINDOWS, DIM)))
        if f == NEEDLE_FRAME:
            patches[1] = _unit(0.5 * sky + needle)
        points.append(IndexPoint(7, f, _unit(patches.mean(0)), patches, {"video_id": 7, "frame_id": f}))
    runs = companion_runs(points, 0.95)
    spans = sorted((int(w), int(a), int(b)) for a, w, b in zip(runs.first, runs.window, runs.last))
    assert spans == sorted([(0, 0, 5), (1, NEEDLE_FRAME, NEEDLE_FRAME)] + [(w, 0, 5) for w in range(3, WINDOWS)])
    assert len(companion_runs(points, None)) == 6 * WINDOWS
    for f, point in enumerate(points):
        live = [(a, w) for a, w, b in zip(runs.first, runs.window, runs.last) if a <= f <= b]
        vectors = np.stack([points[int(a)].patch_vectors[int(w)] for a, w in live])
        assert (point.patch_vectors @ vectors.T).max(axis=1).min() >= 0.95


def test_a_panning_camera_is_followed_and_a_changing_scene_is_not_merged() -> None:
    """The picture moves one window to the left each frame (a pan): each window is matched with
    the window that showed it a frame before, so the windows that stay in view are one run each."""
    points, _ = static_scene(frames=1)
    rng = np.random.default_rng(3)
    strip = _unit(rng.normal(size=(WINDOWS + 3, DIM)))  # the scene the camera pans across
    for f in range(4):
        payload = {"video_id": 7, "frame_id": 10 * f, "timestamp_ms": 1000 * f, "patch_boxes": BOXES}
        view = _unit(strip[f : f + WINDOWS] + 0.02 * rng.normal(size=(WINDOWS, DIM)))
        points.append(IndexPoint(7, 10 * f, _unit(view.mean(0)), view, payload))
    pan = companion_runs(points[1:], 0.95)
    # Strip column c is seen from frame max(0, c - 5) to min(3, c): one run each, 9 in all (of 24).
    assert len(pan) == WINDOWS + 3
    assert sorted(int(b) - int(a) for a, b in zip(pan.first, pan.last)) == [0, 0, 1, 1, 2, 2, 3, 3, 3]
    noisy, _ = static_scene(frames=4, noise=1.0)  # every window changes every frame
    assert len(companion_runs(noisy, 0.95)) == 4 * WINDOWS


@pytest.fixture(params=["embedded", "memory"])
def index(request: pytest.FixtureRequest, tmp_path):  # noqa: ANN001
    layout = index_layout(SCHEMA, companion_dedup=0.95)
    if request.param == "memory":
        opened = VectorIndex.open(SCHEMA, client=QdrantClient(":memory:"), layout=layout)
    else:
        opened = VectorIndex.open(SCHEMA, path=tmp_path / "qdrant", layout=layout)
    with opened:
        yield opened


def test_sync_resync_and_shrink_keep_the_companion_equal_to_the_checkpoint(index: VectorIndex) -> None:
    points, needle = static_scene()
    first = index.sync_video(7, points, "v1")
    assert (first.indexed, first.patch_points, first.patches_indexed) == (10, 8, 8)  # 60 windows -> 8 points
    assert index.sync_video(7, points, "v1").skipped
    index.optimize()
    # The needle is found through its own companion point, and scored exactly on its frame.
    [hit] = index.search(needle, top_k=1, patch_queries=needle[None], alpha=0.0, pool=1, patch_pool=3)
    assert hit.point_id == point_id(7, 10 * NEEDLE_FRAME)
    spans = {(p["frame_id"], p.get("frame_id_end"), p.get("timestamp_end_ms")) for p in _companion_payloads(index)}
    assert (0, 90, 9000) in spans and (10 * NEEDLE_FRAME, None, None) in spans and (50, 90, 9000) in spans

    shorter = points[:6]  # the video shrinks to frames 0..50: runs end at frame 50
    again = index.sync_video(7, shorter, "v2")
    assert (again.indexed, again.patches_indexed, index.count_patches(7, "v2")) == (6, 8, 8)
    assert {p.get("frame_id_end") for p in _companion_payloads(index)} == {30, 50, None}
    index.sync_video(7, [], "v3")
    assert index.count(7) == index.count_patches(7) == 0


def test_changing_the_setting_resyncs_the_same_checkpoint(tmp_path) -> None:  # noqa: ANN001
    """A checkpoint synced without dedup, then with it (and back): the same checkpoint version,
    another companion set - the other setting's points go (they kept the count from matching)."""
    points, _ = static_scene()
    for dedup, expected in ((None, 60), (0.95, 8), (None, 60)):
        with VectorIndex.open(SCHEMA, path=tmp_path / "qdrant", layout=index_layout(SCHEMA, companion_dedup=dedup)) as index:
            result = index.sync_video(7, points, "v1")
            assert not result.skipped and (result.patches_indexed, index.count_patches(7), index.count_patches(7, "v1")) == (expected, expected, expected)
            assert index.sync_video(7, points, "v1").skipped


def _companion_payloads(index: VectorIndex) -> list[dict]:
    """The payloads of the video's companion points (every id a window of a frame could have)."""
    ids = [patch_point_id(7, 10 * f, w) for f in range(10) for w in range(WINDOWS)]
    return [payload for payload, _ in index._backend.retrieve(index.layout.patches.name, ids, "all").values()]


def test_companion_dedup_setting() -> None:
    assert index_settings_from_env({}).companion_dedup is None
    assert index_settings_from_env({"COMPANION_DEDUP": "off"}).companion_dedup is None
    assert index_settings_from_env({"COMPANION_DEDUP": "0.97"}).companion_dedup == 0.97
    for bad in ("2", "0.1", "yes"):
        with pytest.raises(SettingsError, match="COMPANION_DEDUP"):
            index_settings_from_env({"COMPANION_DEDUP": bad})
