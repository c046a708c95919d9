"""The needle library's panning shots (issue 20's video-like library): each frame of a shot is
the scene moved by the pan, a needle shows in its own frame only, and the ground truth stays exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.needle_library import LibrarySpec, _plan, _render, build_library, image_id

SPEC = LibrarySpec(frames=80, frames_per_video=40, small_captions=3, large_captions=1, needles=2, seed=3, pan_frames=10, pan_px=48)


def test_frames_of_a_shot_are_the_scene_moved_by_the_pan_and_the_needle_is_in_one_frame() -> None:
    small, large, kinds = _plan(SPEC)
    queried = frozenset(small) | frozenset(large)
    needle_frames = [i for i, (kind, _) in enumerate(kinds) if kind != "filler"]
    shot = needle_frames[0] // SPEC.pan_frames
    frames = [_render(SPEC, i, *kinds[i], queried) for i in range(shot * SPEC.pan_frames, (shot + 1) * SPEC.pan_frames)]
    d = SPEC.pan_px
    for i, (a, b) in enumerate(zip(frames, frames[1:])):
        index = shot * SPEC.pan_frames + i
        if index in needle_frames or index + 1 in needle_frames:
            continue
        np.testing.assert_array_equal(b.image[:, :-d], a.image[:, d:])  # the camera moved d pixels
    with_needle = {i for i, f in enumerate(frames) if f.classes & queried}
    assert with_needle == {n - shot * SPEC.pan_frames for n in needle_frames if n // SPEC.pan_frames == shot}


def test_panned_library_ground_truth_is_exact(tmp_path: Path) -> None:
    library = build_library(tmp_path / "library", SPEC)  # asserts drawn == planned for every caption
    small, large, kinds = _plan(SPEC)
    for query in library.queries:
        planned = {image_id(SPEC, i) for i, (_, cls) in enumerate(kinds) if cls == (query.colour, query.shape)}
        assert set(query.relevant) == planned and len(planned) == SPEC.needles
    assert build_library(library.root, SPEC).build_seconds == 0.0  # reused


def test_libraries_without_panning_keep_their_stored_spec() -> None:
    assert "pan_frames" not in LibrarySpec().as_dict()
    assert SPEC.as_dict()["pan_frames"] == 10
    with pytest.raises(ValueError, match="pan_frames"):
        LibrarySpec(frames_per_video=250, pan_frames=7)
