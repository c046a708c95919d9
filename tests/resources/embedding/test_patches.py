"""Patch planner properties: inside the image, full coverage, documented counts, determinism, cap."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resources.embedding.patches import PatchConfig, axis_starts, plan_patches, uniform_subsample


def covered(width: int, height: int, boxes: np.ndarray) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    for x, y, w, h in boxes.tolist():
        mask[y : y + h, x : x + w] = True
    return mask


configs = st.builds(
    lambda window, stride_frac, pad, scales: PatchConfig(
        window=window, stride=max(1, round(window * stride_frac)), context_pad=pad, scales=scales
    ),
    window=st.integers(8, 300),
    stride_frac=st.floats(0.2, 1.0),
    pad=st.floats(0.0, 0.5),
    scales=st.lists(st.sampled_from([0.5, 0.75, 1.0, 1.5, 2.0]), min_size=1, max_size=3, unique=True).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(width=st.integers(1, 900), height=st.integers(1, 900), config=configs)
def test_boxes_inside_image_and_cover_every_pixel(width: int, height: int, config: PatchConfig) -> None:
    plan = plan_patches(width, height, config)
    assert len(plan) >= 1
    for boxes in (plan.core, plan.padded):
        x, y, w, h = boxes.T
        assert (x >= 0).all() and (y >= 0).all() and (w >= 1).all() and (h >= 1).all()
        assert (x + w <= width).all() and (y + h <= height).all()
    assert covered(width, height, plan.core).all()
    # The padded box always contains its core box.
    cx, cy, cw, ch = plan.core.T
    px, py, pw, ph = plan.padded.T
    assert (px <= cx).all() and (py <= cy).all() and (px + pw >= cx + cw).all() and (py + ph >= cy + ch).all()
    # Planned boxes are never embedded twice.
    assert len({tuple(b) for b in plan.padded.tolist()}) == len(plan)


@settings(max_examples=100, deadline=None)
@given(width=st.integers(1, 900), height=st.integers(1, 900), config=configs)
def test_no_slivers_windows_are_full_size(width: int, height: int, config: PatchConfig) -> None:
    plan = plan_patches(width, height, config)
    for scale in config.scales:
        side = max(1, round(config.window * scale))
        rows = plan.scale == np.float32(scale)
        # Every core window is at least a full window (or the whole image where it is smaller).
        assert (plan.core[rows, 2] >= min(side, width)).all()
        assert (plan.core[rows, 3] >= min(side, height)).all()


@pytest.mark.parametrize(
    "width, height, expected",
    [(1280, 720, 66), (1920, 1080, 144), (3840, 2160, 594)],
)
def test_documented_counts_at_defaults(width: int, height: int, expected: int) -> None:
    assert len(plan_patches(width, height)) == expected


def test_windows_at_defaults_for_1080p() -> None:
    assert len(axis_starts(1920, 224, 112)) == 17 and len(axis_starts(1080, 224, 112)) == 9
    assert axis_starts(1920, 224, 112)[-1] == 1920 - 224  # flush with the edge, no sliver


def test_padded_boxes_of_one_scale_share_one_size() -> None:
    plan = plan_patches(1920, 1080)
    assert {tuple(b) for b in plan.padded[:, 2:].tolist()} == {(292, 292)}  # 224 + 2 * round(0.15 * 224)


def test_small_image_gives_one_patch_of_the_whole_image() -> None:
    plan = plan_patches(100, 60)
    assert len(plan) == 1
    assert plan.core.tolist() == [[0, 0, 100, 60]] and plan.padded.tolist() == [[0, 0, 100, 60]]


def test_multi_scale_concatenates_in_order() -> None:
    config = PatchConfig(scales=(0.75, 1.0, 1.5))
    plan = plan_patches(1920, 1080, config)
    counts = [len(plan_patches(1920, 1080, PatchConfig(scales=(s,)))) for s in config.scales]
    assert len(plan) == sum(counts)
    assert plan.scale.tolist() == [0.75] * counts[0] + [1.0] * counts[1] + [1.5] * counts[2]


def test_deterministic() -> None:
    a, b = plan_patches(1234, 567, PatchConfig(scales=(0.5, 1.0))), plan_patches(1234, 567, PatchConfig(scales=(0.5, 1.0)))
    assert np.array_equal(a.core, b.core) and np.array_equal(a.padded, b.padded) and np.array_equal(a.scale, b.scale)


@pytest.mark.parametrize("cap", [1, 2, 10, 100, 143])
def test_cap_subsamples_uniformly(cap: int) -> None:
    full = plan_patches(1920, 1080)
    capped = plan_patches(1920, 1080, PatchConfig(max_patches=cap))
    assert len(capped) == cap
    full_rows = [tuple(r) for r in full.core.tolist()]
    indices = [full_rows.index(tuple(r)) for r in capped.core.tolist()]
    assert indices == sorted(set(indices))  # a subset, in the original order
    if cap > 1:
        assert indices[0] == 0 and indices[-1] == len(full) - 1  # spread over the whole grid
        gaps = np.diff(indices)
        assert gaps.max() - gaps.min() <= 1


def test_cap_above_count_changes_nothing() -> None:
    assert len(plan_patches(1920, 1080, PatchConfig(max_patches=10_000))) == 144


def test_uniform_subsample_edges() -> None:
    assert uniform_subsample(10, 10).tolist() == list(range(10))
    assert uniform_subsample(10, 1).tolist() == [5]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"window": 0}, "PATCH_WINDOW"),
        ({"stride": 0}, "PATCH_STRIDE"),
        ({"stride": 300}, "PATCH_STRIDE"),
        ({"context_pad": -0.1}, "PATCH_CONTEXT_PAD"),
        ({"scales": ()}, "PATCH_SCALES"),
        ({"scales": (1.0, -2.0)}, "PATCH_SCALES"),
        ({"max_patches": 0}, "MAX_PATCHES_PER_IMAGE"),
    ],
)
def test_invalid_config_names_the_setting(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PatchConfig(**kwargs)


def test_invalid_image_size() -> None:
    with pytest.raises(ValueError, match="positive"):
        plan_patches(0, 10)


def test_fingerprint_changes_with_settings() -> None:
    assert PatchConfig().fingerprint() != PatchConfig(stride=100).fingerprint()
    assert PatchConfig().fingerprint() == PatchConfig().fingerprint()
