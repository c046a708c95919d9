"""Training images for the world model: what the encoder sees of a world frame at search time
(patch-like crops around one object, single objects, letterboxed whole frames, empty backgrounds)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image

from training.world import (
    CLASSES,
    WorldObject,
    box_around,
    draw_objects,
    large_object_frame,
    random_angle,
    random_class,
    render_background,
    render_frame,
)

# The encoder letterboxes with open_clip's mean colour (OPENAI_DATASET_MEAN x 255).
LETTERBOX_RGB = (123, 117, 104)
# Patch geometry at framesearch's defaults: a 224 px window padded by 15% on each side.
PATCH_CROP_PX = 224 + 2 * round(0.15 * 224)  # 291

ExampleKind = Literal["crop", "single", "frame", "background"]
EXAMPLE_KINDS: tuple[str, ...] = ("crop", "single", "frame", "background")


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
    ``background`` - a patch-like crop with no object (label -1), a negative for every caption.
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
    raise ValueError(f"kind must be one of {EXAMPLE_KINDS}, got {kind!r}")
