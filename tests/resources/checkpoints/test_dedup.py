"""The near-duplicate filter, its settings and the time credited to kept frames (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest

from resources.checkpoints.dedup import DedupConfig, NearDuplicateFilter, credit_spans, dedup_config_from_env, difference


def thumb(value: int, noise: int = 0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(value + rng.integers(-noise, noise + 1, (32, 32, 3)), 0, 255).astype(np.uint8)


def test_filter_compares_with_the_last_kept_frame() -> None:
    check = NearDuplicateFilter(0.02)
    assert check.keep(thumb(100))
    assert not check.keep(thumb(100, noise=3, seed=1))  # encoder noise of a still scene
    # A slow drift of 2/255 per frame: each frame is close to the one before, but once it has drifted
    # more than the threshold from the frame last kept, a frame is kept again.
    kept = [check.keep(thumb(100 + 2 * step)) for step in range(1, 8)]
    assert kept == [False, False, True, False, False, True, False]
    assert check.keep(thumb(200))
    assert difference(thumb(0), thumb(255)) == 1.0


def test_a_small_object_appearing_in_a_still_scene_is_kept() -> None:
    """Issue 20: a 35 px radius object appears in one frame of a still 1280x720 scene. It changes
    0.3% of the thumbnail, so a whole-frame mean dropped it as a near-duplicate; per region it is
    a large change, and the frame reaches the encoder."""
    from PIL import Image

    from training.world import WorldObject, render_frame

    scene = (WorldObject("blue", "square", (100, 80, 200, 200)), WorldObject("green", "ring", (700, 300, 220, 220)))
    needle = WorldObject("red", "circle", (560, 120, 70, 70))

    def thumbnail(objects: tuple[WorldObject, ...]) -> np.ndarray:  # as iter_frames makes them
        return np.asarray(Image.fromarray(render_frame(1280, 720, objects, seed=5).image).resize((32, 32), Image.Resampling.BOX))

    check = NearDuplicateFilter(0.02)
    assert check.keep(thumbnail(scene))
    assert not check.keep(thumbnail(scene))  # the same still picture again: dropped
    assert check.keep(thumbnail((*scene, needle)))
    assert check.keep(thumbnail(scene))  # and the object gone again is a change too


def test_threshold_zero_keeps_everything() -> None:
    check = NearDuplicateFilter(0.0)
    assert all(check.keep(thumb(100)) for _ in range(3))
    assert not DedupConfig(0.0).enabled and DedupConfig(0.0).fingerprint() == "dedup:off"


def test_spans_run_to_the_end_of_the_last_dropped_frame() -> None:
    frames = [(0, 0), (3, 100), (6, 200), (9, 300), (12, 400)]
    assert credit_spans(frames, {3: 0, 6: 0, 12: 9}, end_ms=500) == {0: 300, 9: 500}
    assert credit_spans(frames, {12: 9}, end_ms=None) == {}  # the end of the last frame is unknown
    assert credit_spans(frames, {}, end_ms=500) == {}


def test_settings_from_the_environment() -> None:
    assert dedup_config_from_env({}) == DedupConfig(0.02, all_frames=False)
    assert dedup_config_from_env({"DEDUP_THRESHOLD": "off"}).enabled is False
    assert dedup_config_from_env({"DEDUP_THRESHOLD": "0.05", "DEDUP_ALL_FRAMES": "1"}) == DedupConfig(0.05, all_frames=True)
    for bad in ("-1", "1.5", "lots"):
        with pytest.raises(ValueError, match="DEDUP_THRESHOLD"):
            dedup_config_from_env({"DEDUP_THRESHOLD": bad})
