"""Training images for the world model: what the encoder sees of a world frame at search time
(patch-like crops around one object, single objects, letterboxed whole frames, empty backgrounds)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image

from resources.embedding.patches import PatchConfig, PatchPlan, plan_patches
from training.world import (
    CLASSES,
    COLOURS,
    SHAPES,
    WorldObject,
    box_around,
    class_index,
    draw_objects,
    large_object_frame,
    random_angle,
    random_class,
    random_frame,
    render_background,
    render_frame,
)

# The encoder letterboxes with open_clip's mean colour (OPENAI_DATASET_MEAN x 255).
LETTERBOX_RGB = (123, 117, 104)
# Patch geometry at framesearch's defaults: a 224 px window padded by 15% on each side.
PATCH_CROP_PX = 224 + 2 * round(0.15 * 224)  # 291

ExampleKind = Literal["crop", "single", "frame", "background", "planned"]
EXAMPLE_KINDS: tuple[str, ...] = ("crop", "single", "frame", "background", "planned")
# Frame sizes the planned crops are cut from (the encoder's patch window is the same 224 px in
# both, so the objects' share of a window differs as it does between 720p and 1080p video).
PLANNED_FRAME_SIZES: tuple[tuple[int, int], ...] = ((1280, 720), (1920, 1080))
HARD_NEGATIVE_SHARE = 0.75  # chance a distractor shares the target's colour or its shape


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Fit ``(H, W, 3)`` into a ``size`` square keeping its shape, padded with the encoder's
    letterbox colour (open_clip's mean), as framesearch's global view does."""
    height, width = image.shape[:2]
    ratio = size / max(height, width)
    new_w, new_h = max(1, round(width * ratio)), max(1, round(height * ratio))
    canvas = Image.new("RGB", (size, size), LETTERBOX_RGB)
    canvas.paste(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BICUBIC), ((size - new_w) // 2, (size - new_h) // 2))
    return np.asarray(canvas)


def _crop_example(size: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """What a patch crop of a world frame looks like: a ``PATCH_CROP_PX`` window of a 720-1080 p
    frame resized to ``size``, holding one whole object (radius 6-22% of the crop) and sometimes
    parts of neighbours cut by the crop's edge."""
    label = int(rng.integers(len(CLASSES)))
    colour, shape = CLASSES[label]
    frame_h = float(rng.choice([720.0, 1080.0]))
    scale_px = frame_h * size / PATCH_CROP_PX  # background features sized as in the whole frame
    image = Image.fromarray(render_background(size, size, rng, scale_px=scale_px))
    r = float(rng.uniform(0.06, 0.22)) * size
    cx, cy = rng.uniform(r + 1, size - r - 1, 2)
    objects = [WorldObject(colour, shape, box_around(cx, cy, r), random_angle(shape, rng))]
    for _ in range(int(rng.choice([0, 0, 1, 2]))):  # neighbours: centre outside the crop, partly in
        other = random_class(rng, {(colour, shape)})
        rn = float(rng.uniform(0.06, 0.22)) * size
        side = int(rng.integers(4))
        along, out = rng.uniform(0, size), rng.uniform(0.2, 0.9) * rn
        nx, ny = [(along, -out), (along, size + out), (-out, along), (size + out, along)][side]
        if (nx - cx) ** 2 + (ny - cy) ** 2 > (r + rn + 4) ** 2:
            objects.append(WorldObject(other[0], other[1], box_around(nx, ny, rn), random_angle(other[1], rng)))
    draw_objects(image, tuple(objects), rng)
    return np.asarray(image), label


def training_example(size: int, rng: np.random.Generator, kind: ExampleKind | None = None) -> tuple[np.ndarray, int]:
    """One ``(size, size, 3)`` uint8 training image and its class index (-1: no object).

    Kinds (``kind=None`` draws one: crop 60%, single 15%, frame 15%, background 10%):
    ``crop`` - a patch-like crop around one object (see :func:`_crop_example`);
    ``single`` - one centred-ish object (radius 15-40%) on a background, the issue's recipe;
    ``frame`` - a whole 16:9/4:3/1:1 frame with one large object, letterboxed like the global view;
    ``background`` - a patch-like crop with no object (label -1), a negative for every caption;
    ``planned`` - the first of :func:`planned_crops` (a window of a whole frame, cut by the planner).
    """
    if kind is None:
        kind = EXAMPLE_KINDS[int(rng.choice(4, p=[0.6, 0.15, 0.15, 0.1]))]  # type: ignore[assignment]
    if kind == "crop":
        return _crop_example(size, rng)
    if kind == "single":
        label = int(rng.integers(len(CLASSES)))
        colour, shape = CLASSES[label]
        r = float(rng.uniform(0.15, 0.4)) * size
        cx, cy = rng.uniform(r + 1, size - r - 1, 2)
        obj = WorldObject(colour, shape, box_around(cx, cy, r), random_angle(shape, rng))
        return render_frame(size, size, (obj,), int(rng.integers(2**31))).image, label
    if kind == "frame":
        label = int(rng.integers(len(CLASSES)))
        w, h = [(size, size * 9 // 16), (size, size * 3 // 4), (size, size)][int(rng.integers(3))]
        frame = large_object_frame(w, h, rng, target=CLASSES[label])  # already at the view's scale
        return letterbox(frame.image, size), label
    if kind == "background":
        frame_h = float(rng.choice([720.0, 1080.0]))
        return render_background(size, size, rng, scale_px=frame_h * size / PATCH_CROP_PX), -1
    if kind == "planned":
        while True:  # a frame whose every object crowds another has no crop: draw the next
            crops = planned_crops(size, rng, background=False)
            if crops:
                return crops[0]
    raise ValueError(f"kind must be one of {EXAMPLE_KINDS}, got {kind!r}")


# -- crops cut by the planner --------------------------------------------------------------------


def hard_negative_classes(target: tuple[str, str], rng: np.random.Generator, count: int, share: float = HARD_NEGATIVE_SHARE) -> list[tuple[str, str]]:
    """``count`` distractor classes for ``target``, none of them ``target``: each, with chance
    ``share``, the target's colour on another shape or its shape in another colour (the pairs a
    weak model confuses), otherwise any other class."""
    colour, shape = target
    out = []
    for _ in range(count):
        if rng.random() < share:
            if rng.random() < 0.5:
                out.append((colour, str(rng.choice([s for s in SHAPES if s != shape]))))
            else:
                out.append((str(rng.choice([c for c in COLOURS if c != colour])), shape))
        else:
            out.append(random_class(rng, {target}))
    return out


def windows_holding(windows: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``(windows,)`` bool: which of the ``(windows, 4)`` boxes hold ``box`` whole."""
    x, y, w, h = box
    wx, wy, ww, wh = windows.astype(np.int64).T
    return (wx <= x) & (wy <= y) & (x + w <= wx + ww) & (y + h <= wy + wh)


def windows_touching(windows: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``(windows,)`` bool: which of the ``(windows, 4)`` boxes overlap ``box``."""
    x, y, w, h = box
    wx, wy, ww, wh = windows.astype(np.int64).T
    return (x < wx + ww) & (wx < x + w) & (y < wy + wh) & (wy < y + h)


def nearest_window(windows: np.ndarray, box: tuple[int, int, int, int], among: np.ndarray) -> int:
    """The index of the window, of those ``among`` marks, whose centre is nearest ``box``'s."""
    x, y, w, h = box
    core = windows.astype(np.float64)  # (windows, 4)
    dist = (core[:, 0] + core[:, 2] / 2 - (x + w / 2)) ** 2 + (core[:, 1] + core[:, 3] / 2 - (y + h / 2)) ** 2
    return int(np.argmin(np.where(among, dist, np.inf)))


def labelled_windows(objects: Sequence[WorldObject], plan: PatchPlan) -> list[tuple[int, int]]:
    """``(window, class index)`` for each object that some window's core holds whole while no other
    object lies whole in that window's padded box: the window whose core centre is nearest the
    object's. Objects no window holds alone (too big, or crowded) have none."""
    out = []
    for k, obj in enumerate(objects):
        alone = windows_holding(plan.core, obj.box)
        for j, other in enumerate(objects):
            if j != k:
                alone &= ~windows_holding(plan.padded, other.box)
        if alone.any():
            out.append((nearest_window(plan.core, obj.box, alone), class_index(obj.colour, obj.shape)))
    return out


def planned_crops(size: int, rng: np.random.Generator, background: bool = True) -> list[tuple[np.ndarray, int]]:
    """Crops of one world frame cut exactly where the encoder cuts them, with their labels.

    A 720p or 1080p frame holds a small target (radius 30-45 px) among 4 distractors that are
    mostly hard negatives (:func:`hard_negative_classes`). The planner's windows at the default
    :class:`PatchConfig` give, for each object that some window's core holds whole (the window
    nearest the object's centre) while no other object lies whole in its padded box, that padded
    box resized to ``size`` and labelled with the object's class; with ``background``, one window
    whose padded box touches no object, labelled -1 (a negative for every caption). Parts of
    other objects cut by a window's edge stay in it, as they do at search time.
    """
    width, height = PLANNED_FRAME_SIZES[int(rng.integers(len(PLANNED_FRAME_SIZES)))]
    target = CLASSES[int(rng.integers(len(CLASSES)))]
    frame = random_frame(width, height, rng, target=target, distractor_classes=hard_negative_classes(target, rng, 4))
    plan = plan_patches(width, height, PatchConfig())
    image = Image.fromarray(frame.image)
    out: list[tuple[np.ndarray, int]] = []

    def cut(window: np.ndarray) -> np.ndarray:
        x, y, w, h = (int(v) for v in window)
        return np.asarray(image.crop((x, y, x + w, y + h)).resize((size, size), Image.Resampling.BICUBIC))

    for window, label in labelled_windows(frame.objects, plan):
        out.append((cut(plan.padded[window]), label))
    if background:
        touched = np.zeros(len(plan), bool)
        for obj in frame.objects:
            touched |= windows_touching(plan.padded, obj.box)
        empty = np.flatnonzero(~touched)
        if len(empty):
            out.append((cut(plan.padded[empty[int(rng.integers(len(empty)))]]), -1))
    return out
