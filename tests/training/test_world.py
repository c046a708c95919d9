"""The synthetic world: seeded, exact ground truth, fast, and small objects stay small."""

from __future__ import annotations

import time

import numpy as np
import pytest

from resources.embedding.patches import PatchConfig, plan_patches
from training.batches import make_batch, parse_mix
from training.examples import LETTERBOX_RGB, hard_negative_classes, labelled_windows, letterbox, planned_crops, training_example
from training.world import (
    CAPTIONS,
    CLASSES,
    COLOURS,
    SHAPES,
    WorldObject,
    background_frame,
    caption,
    class_index,
    large_object_frame,
    random_frame,
    render_frame,
)


def test_classes_and_captions() -> None:
    assert len(COLOURS) == 6 and len(SHAPES) == 6 and len(CLASSES) == 36 == len(set(CLASSES))
    assert caption("red", "circle") == "a red circle"
    assert CAPTIONS[class_index("blue", "star")] == "a blue star"
    assert all(CLASSES[class_index(c, s)] == (c, s) for c, s in CLASSES)
    with pytest.raises(ValueError, match="unknown class"):
        caption("pink", "circle")


def test_render_is_seeded_and_draws_where_the_box_says() -> None:
    obj = WorldObject("red", "square", (100, 50, 80, 80))
    a = render_frame(320, 240, (obj,), seed=7)
    b = render_frame(320, 240, (obj,), seed=7)
    c = render_frame(320, 240, (obj,), seed=8)
    assert a.image.shape == (240, 320, 3) and a.image.dtype == np.uint8
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
    centre = a.image[85:95, 135:145].astype(int).mean(axis=(0, 1))  # inside the square
    assert np.abs(centre - np.array(COLOURS["red"])).max() < 45
    assert a.has_class("red", "square") and not a.has_class("red", "circle")
    assert a.boxes_of("red", "square") == [(100, 50, 80, 80)] and a.classes == {("red", "square")}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_fills_its_centre_or_not(shape: str) -> None:
    frame = render_frame(200, 200, (WorldObject("blue", shape, (40, 40, 120, 120)),), seed=1)
    bg = render_frame(200, 200, (), seed=1)
    changed = np.abs(frame.image.astype(int) - bg.image.astype(int)).sum(axis=2) > 60  # (H, W)
    area = changed[40:160, 40:160].mean()
    assert 0.2 < area < 0.85, area  # a shape, not an empty or a full box
    assert not changed[:35].any() and not changed[165:].any()  # nothing outside the box
    assert changed[100, 100] == (shape != "ring")  # a ring is hollow


def test_random_frame_ground_truth_is_exact() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        frame = random_frame(1280, 720, rng, target=("green", "star"), exclude={("red", "ring")})
        target, *others = frame.objects
        assert target.cls == ("green", "star") and 60 <= target.box[2] <= 90
        assert len(others) == 4
        assert all(o.cls not in {("green", "star"), ("red", "ring")} for o in others)
        assert all(20 * 2 - 1 <= o.box[2] <= 60 * 2 + 1 for o in others)
        for o in frame.objects:  # inside the frame
            x, y, w, h = o.box
            assert x >= -1 and y >= -1 and x + w <= 1281 and y + h <= 721
        for i, p in enumerate(frame.objects):  # no overlaps
            for q in frame.objects[i + 1 :]:
                pc = np.array(p.box[:2]) + p.box[2] / 2
                qc = np.array(q.box[:2]) + q.box[2] / 2
                assert np.linalg.norm(pc - qc) >= p.radius + q.radius
    negative = random_frame(640, 360, rng, exclude={("green", "star")})
    assert not negative.has_class("green", "star")


def test_random_frame_is_reproducible_from_its_generator() -> None:
    a = random_frame(640, 360, np.random.default_rng(3))
    b = random_frame(640, 360, np.random.default_rng(3))
    assert a.objects == b.objects and np.array_equal(a.image, b.image)


def test_large_and_background_frames() -> None:
    rng = np.random.default_rng(1)
    frame = large_object_frame(1280, 720, rng, target=("yellow", "cross"))
    [obj] = frame.objects
    assert obj.cls == ("yellow", "cross") and 0.4 * 720 - 1 <= obj.box[2] <= 0.8 * 720 + 1
    assert background_frame(320, 180, rng).objects == ()


def test_small_target_is_tiny_in_the_global_view() -> None:
    """Letterboxed to 224 like the encoder's global view, a 30-45 px radius target is < 16 px wide."""
    frame = random_frame(1280, 720, np.random.default_rng(2))
    view = letterbox(frame.image, 224)
    assert view.shape == (224, 224, 3)
    assert tuple(view[0, 0]) == LETTERBOX_RGB  # the bars are the mean colour
    assert frame.objects[0].box[2] * 224 / 1280 < 16


def test_frames_render_fast() -> None:
    rng = np.random.default_rng(0)
    random_frame(1280, 720, rng)  # warm-up
    start = time.perf_counter()
    for _ in range(5):
        random_frame(1280, 720, rng)
    assert (time.perf_counter() - start) / 5 < 0.1  # ~25 ms here; generous for loaded CI machines


@pytest.mark.parametrize("kind", ["crop", "single", "frame", "background", "planned", None])
def test_training_examples(kind: str | None) -> None:
    rng = np.random.default_rng(5)
    for _ in range(5):
        image, label = training_example(96, rng, kind=kind)  # type: ignore[arg-type]
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8
        assert -1 <= label < 36 and (label == -1) == (kind == "background" or (kind is None and label == -1))
    a = training_example(64, np.random.default_rng(9))
    b = training_example(64, np.random.default_rng(9))
    assert a[1] == b[1] and np.array_equal(a[0], b[0])


def test_distractors_can_be_chosen() -> None:
    rng = np.random.default_rng(3)
    chosen = [("red", "cross"), ("blue", "star")]
    frame = random_frame(1280, 720, rng, target=("red", "star"), distractors=2, distractor_classes=chosen)
    assert [o.cls for o in frame.objects] == [("red", "star"), *chosen]
    with pytest.raises(ValueError, match="target"):
        random_frame(1280, 720, rng, target=("red", "star"), distractor_classes=[("red", "star")])


def test_hard_negatives_share_the_targets_colour_or_shape() -> None:
    rng = np.random.default_rng(4)
    hard = hard_negative_classes(("green", "ring"), rng, 200, share=1.0)
    assert ("green", "ring") not in hard
    assert all((c == "green") != (s == "ring") for c, s in hard)  # exactly one of the two shared
    assert {c for c, _ in hard} > {"green"} and {s for _, s in hard} > {"ring"}
    mixed = hard_negative_classes(("green", "ring"), rng, 400, share=0.5)
    unrelated = sum(c != "green" and s != "ring" for c, s in mixed)
    assert 100 < unrelated < 300 and ("green", "ring") not in mixed


def test_planned_windows_hold_their_object_whole_and_alone() -> None:
    """A window is labelled by the one object its core holds whole, only if no other object lies
    whole in its padded box; the nearest such window to the object's centre is taken."""
    plan = plan_patches(1280, 720, PatchConfig())
    alone = WorldObject("red", "star", (300, 300, 70, 70))
    crowded = [WorldObject("blue", "ring", (700, 300, 60, 60)), WorldObject("blue", "cross", (765, 300, 40, 40))]  # each whole in the other's windows
    huge = WorldObject("green", "square", (100, 10, 400, 400))  # no 224 px core holds it
    labelled = labelled_windows([alone, *crowded, huge], plan)
    assert [label for _, label in labelled] == [class_index("red", "star")]
    [(window, _)] = labelled
    x, y, w, h = (int(v) for v in plan.core[window])
    assert x <= 300 and y <= 300 and 370 <= x + w and 370 <= y + h  # the core holds the star whole
    centre = np.array([335.0, 335.0])
    holding = [i for i in range(len(plan)) if plan.core[i, 0] <= 300 and plan.core[i, 1] <= 300 and plan.core[i, 0] + plan.core[i, 2] >= 370 and plan.core[i, 1] + plan.core[i, 3] >= 370]
    nearest = min(holding, key=lambda i: np.linalg.norm(plan.core[i, :2] + plan.core[i, 2:] / 2 - centre))
    assert window == nearest


def test_planned_crops_are_seeded_and_sized() -> None:
    crops = planned_crops(112, np.random.default_rng(0))
    again = planned_crops(112, np.random.default_rng(0))
    assert crops and all(image.shape == (112, 112, 3) and image.dtype == np.uint8 for image, _ in crops)
    labels = [label for _, label in crops]
    assert labels == [label for _, label in again] and labels.count(-1) <= 1 and all(-1 <= label < 36 for label in labels)
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(crops, again, strict=True))


def test_a_batch_fills_its_planned_share_and_old_mixes_keep_their_meaning() -> None:
    assert parse_mix("0.6,0.15,0.15,0.1") == (0.6, 0.15, 0.15, 0.1, 0.0)
    with pytest.raises(ValueError, match="shares"):
        parse_mix("1,2")
    images, labels = make_batch(64, 32, np.random.default_rng(1), (0, 0, 0, 0, 1))
    assert images.shape == (32, 64, 64, 3) and len(labels) == 32
    assert len(set(labels.tolist())) > 4  # several frames' targets and their look-alikes
    old = make_batch(48, 16, np.random.default_rng(2), (0.6, 0.15, 0.15, 0.1))
    same = make_batch(48, 16, np.random.default_rng(2), (0.6, 0.15, 0.15, 0.1, 0.0))
    assert np.array_equal(old[0], same[0]) and old[1].tolist() == same[1].tolist()
