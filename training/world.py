"""A synthetic world of coloured shapes on textured backgrounds, with exact ground truth.

Pure (numpy + Pillow) and seeded: the same seed always gives the same pixels. It serves three
purposes: training data for the offline model ``models/framesearch-world`` (which therefore knows
only this world's 36 captions), frames for the sample library, and a retrieval benchmark whose
answers are known exactly.

A frame is a background (a colour gradient, blurred multi-scale colour noise, sometimes faint
stripes, and pixel grain; its colours change from frame to frame) with objects on it. An object
is one of ``len(COLOURS) x len(SHAPES) = 36`` classes, drawn inside a square box (the shape is
inscribed in the box's circle) with a little colour jitter and rotation. Objects never overlap.

Typical use::

    rng = np.random.default_rng(0)
    frame = random_frame(1280, 720, rng, target=("red", "star"))   # one red star + 4 distractors
    frame.image.shape                  # (720, 1280, 3) uint8
    frame.has_class("red", "star")     # True; no distractor is a red star
    # training images come from training.examples.training_example

Sizes: :func:`random_frame` places a small target (radius 30-45 px: 8-12% of a 720p frame's
height in diameter) among distractors, so a letterboxed global view of the whole frame shows it
only a few pixels wide while a 224 px patch window holds it whole; :func:`large_object_frame`
places one object whose radius is 20-40% of the frame height.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "yellow": (235, 215, 30),
    "green": (40, 170, 50),
    "cyan": (30, 200, 215),
    "blue": (35, 70, 225),
    "purple": (150, 45, 200),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
CLASSES: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)  # index = c * 6 + s
CAPTIONS: tuple[str, ...] = tuple(f"a {c} {s}" for c, s in CLASSES)



def caption(colour: str, shape: str) -> str:
    """The one caption of a class: ``caption("red", "circle") == "a red circle"``."""
    if colour not in COLOURS or shape not in SHAPES:
        raise ValueError(f"unknown class ({colour!r}, {shape!r}); colours {list(COLOURS)}, shapes {list(SHAPES)}")
    return f"a {colour} {shape}"


def class_index(colour: str, shape: str) -> int:
    """Index of ``(colour, shape)`` in :data:`CLASSES` and :data:`CAPTIONS`."""
    caption(colour, shape)  # validates
    return list(COLOURS).index(colour) * len(SHAPES) + SHAPES.index(shape)


@dataclass(frozen=True)
class WorldObject:
    """One object: its class and the square box ``(x, y, w, h)`` (pixels) its shape is inscribed in."""

    colour: str
    shape: str
    box: tuple[int, int, int, int]
    angle: float = 0.0  # rotation in degrees (circles and rings look the same at any angle)

    @property
    def cls(self) -> tuple[str, str]:
        return (self.colour, self.shape)

    @property
    def radius(self) -> float:
        return min(self.box[2], self.box[3]) / 2


@dataclass(frozen=True)
class WorldFrame:
    """A rendered frame and its ground truth: every object drawn on it, with its box."""

    image: np.ndarray  # (H, W, 3) uint8
    objects: tuple[WorldObject, ...]

    def has_class(self, colour: str, shape: str) -> bool:
        """Whether any object of class ``(colour, shape)`` is in the frame."""
        return any(o.colour == colour and o.shape == shape for o in self.objects)

    def boxes_of(self, colour: str, shape: str) -> list[tuple[int, int, int, int]]:
        """Boxes of the objects of class ``(colour, shape)`` (empty if there are none)."""
        return [o.box for o in self.objects if o.colour == colour and o.shape == shape]

    @property
    def classes(self) -> frozenset[tuple[str, str]]:
        return frozenset(o.cls for o in self.objects)


# -- backgrounds ---------------------------------------------------------------------------------


def _random_tone(rng: np.random.Generator) -> np.ndarray:
    """A background colour: any hue, muted saturation, mid brightness; (3,) float32 in 0..255."""
    hue, sat, val = rng.random(), rng.uniform(0.0, 0.55), rng.uniform(0.25, 0.85)
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    rgb = val - val * sat * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (rgb * 255.0).astype(np.float32)


def _smooth_noise(width: int, height: int, cell_px: float, rng: np.random.Generator) -> np.ndarray:
    """Colour noise with features about ``cell_px`` wide: a coarse random grid, bicubic-upsampled."""
    gw, gh = max(2, round(width / cell_px) + 2), max(2, round(height / cell_px) + 2)
    grid = rng.integers(0, 256, size=(gh, gw, 3), dtype=np.uint8)
    big = Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(big, dtype=np.float32) - 127.5  # (H, W, 3), zero mean


def render_background(width: int, height: int, rng: np.random.Generator, scale_px: float | None = None) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 background; ``scale_px`` is the frame height its features
    are sized for (default ``height``; a crop of a larger frame passes that frame's height).

    Everything but the grain is smooth, so it is composed at a quarter (or half) of the size and
    upsampled once: a 1280x720 background takes ~10 ms instead of ~40.
    """
    scale = float(scale_px or height)
    step = 4 if min(width, height) >= 256 else 2
    lw, lh = -(-width // step), -(-height // step)  # low-resolution canvas, ceil division
    ys = np.linspace(0.0, 1.0, lh, dtype=np.float32)[:, None, None]  # (lh, 1, 1)
    xs = np.linspace(0.0, 1.0, lw, dtype=np.float32)[None, :, None]  # (1, lw, 1)
    # Linear gradient between two tones, in a random direction.
    theta = rng.uniform(0.0, 2.0 * np.pi)
    t = np.cos(theta) * xs * (width / max(width, height)) + np.sin(theta) * ys * (height / max(width, height))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)  # (lh, lw, 1) in 0..1
    a, b = _random_tone(rng), _random_tone(rng)
    pixels = a + (b - a) * t  # (lh, lw, 3)
    # Blurred colour noise at two scales (large blobs, smaller mottling).
    pixels = pixels + rng.uniform(0.1, 0.35) * _smooth_noise(lw, lh, scale / step / rng.uniform(2.0, 5.0), rng)
    pixels = pixels + rng.uniform(0.05, 0.25) * _smooth_noise(lw, lh, scale / step / rng.uniform(10.0, 25.0), rng)
    if rng.random() < 0.35:  # faint stripes: texture that is not an object
        period = scale / rng.uniform(8.0, 30.0)
        phi = rng.uniform(0.0, np.pi)
        u = (np.cos(phi) * xs * width + np.sin(phi) * ys * height) / period
        pixels = pixels + rng.uniform(6.0, 20.0) * np.sin(2.0 * np.pi * u)
    low = Image.fromarray(np.clip(pixels, 0.0, 255.0).astype(np.uint8))
    smooth = np.asarray(low.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)  # (H, W, 3)
    grain = rng.integers(-8, 9, size=(height, width, 1), dtype=np.int16)  # luminance grain
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


# -- objects -------------------------------------------------------------------------------------


def _shape_polygons(shape: str, cx: float, cy: float, r: float, angle: float) -> list[list[tuple[float, float]]]:
    """Vertices of ``shape`` centred at ``(cx, cy)``, inscribed in radius ``r`` (not for circles)."""
    rot = np.deg2rad(angle)

    def ring_of(radii: list[float], start: float) -> list[tuple[float, float]]:
        n = len(radii)
        return [
            (cx + rad * np.cos(start + rot + 2 * np.pi * i / n), cy + rad * np.sin(start + rot + 2 * np.pi * i / n))
            for i, rad in enumerate(radii)
        ]

    if shape == "square":
        return [ring_of([r * 0.97] * 4, np.pi / 4)]
    if shape == "triangle":
        return [ring_of([r] * 3, -np.pi / 2)]
    if shape == "star":
        return [ring_of([r, 0.45 * r] * 5, -np.pi / 2)]
    if shape == "cross":
        w = 0.32 * r  # arm half-width
        pts = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r), (-w, -r), (-w, -w), (-r, -w), (-r, w), (-w, w), (-w, r)]
        c, s = np.cos(rot), np.sin(rot)
        return [[(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]]
    raise ValueError(f"no polygon for shape {shape!r}")


def _shape_mask(shape: str, r: float, angle: float, supersample: int = 4) -> Image.Image:
    """An antialiased ``L`` mask of the shape in a square of side ``ceil(2r) + 2``."""
    side = int(np.ceil(2 * r)) + 2
    ss = max(1, min(supersample, 1024 // side))  # big shapes need less supersampling
    big = Image.new("L", (side * ss, side * ss), 0)
    draw = ImageDraw.Draw(big)
    c, rr = side * ss / 2, r * ss
    if shape in ("circle", "ring"):
        draw.ellipse([c - rr, c - rr, c + rr, c + rr], fill=255)
        if shape == "ring":
            inner = 0.55 * rr
            draw.ellipse([c - inner, c - inner, c + inner, c + inner], fill=0)
    else:
        for poly in _shape_polygons(shape, c, c, rr, angle):
            draw.polygon(poly, fill=255)
    return big.resize((side, side), Image.Resampling.BOX) if ss > 1 else big


def _object_colour(colour: str, rng: np.random.Generator) -> tuple[int, int, int]:
    """The class colour with a little brightness and per-channel jitter."""
    base = np.asarray(COLOURS[colour], dtype=np.float32)
    rgb = base * rng.uniform(0.85, 1.1) + rng.normal(0.0, 8.0, 3)
    return tuple(int(v) for v in np.clip(rgb, 0, 255))  # type: ignore[return-value]


def draw_objects(image: Image.Image, objects: tuple[WorldObject, ...], rng: np.random.Generator) -> None:
    """Draw ``objects`` onto ``image`` in place (boxes may reach past its edges: they are clipped)."""
    for obj in objects:
        if obj.colour not in COLOURS or obj.shape not in SHAPES:
            raise ValueError(f"unknown class {obj.cls}")
        x, y, w, h = obj.box
        r = min(w, h) / 2
        if r < 1:
            raise ValueError(f"object box too small: {obj.box}")
        mask = _shape_mask(obj.shape, r, obj.angle)
        cx, cy = x + w / 2, y + h / 2
        left, top = int(round(cx - mask.width / 2)), int(round(cy - mask.height / 2))
        fill = Image.new("RGB", mask.size, _object_colour(obj.colour, rng))
        image.paste(fill, (left, top), mask)


def render_frame(width: int, height: int, objects: tuple[WorldObject, ...] | list[WorldObject], seed: int) -> WorldFrame:
    """Render ``objects`` on a seeded background; the same arguments always give the same pixels."""
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    rng = np.random.default_rng(seed)
    image = Image.fromarray(render_background(width, height, rng))
    objects = tuple(objects)
    draw_objects(image, objects, rng)
    return WorldFrame(np.asarray(image), objects)


# -- sampling ------------------------------------------------------------------------------------


def random_class(rng: np.random.Generator, exclude: set[tuple[str, str]]) -> tuple[str, str]:
    allowed = [c for c in CLASSES if c not in exclude]
    if not allowed:
        raise ValueError("every class is excluded")
    return allowed[int(rng.integers(len(allowed)))]


def random_angle(shape: str, rng: np.random.Generator) -> float:
    return 0.0 if shape in ("circle", "ring") else float(rng.uniform(-20.0, 20.0))


def free_centre(
    width: int, height: int, radius: float, placed: list[tuple[float, float, float]], rng: np.random.Generator, tries: int = 60
) -> tuple[float, float] | None:
    """A centre for a circle of ``radius`` inside the frame, clear of ``placed`` circles, or None."""
    margin = 4.0
    if 2 * radius > min(width, height):
        return None
    for _ in range(tries):
        cx = rng.uniform(radius, width - radius)
        cy = rng.uniform(radius, height - radius)
        if all((cx - px) ** 2 + (cy - py) ** 2 > (radius + pr + margin) ** 2 for px, py, pr in placed):
            return cx, cy
    return None


def box_around(cx: float, cy: float, radius: float) -> tuple[int, int, int, int]:
    side = max(2, int(round(2 * radius)))
    return (int(round(cx - side / 2)), int(round(cy - side / 2)), side, side)


def random_frame(
    width: int,
    height: int,
    rng: np.random.Generator,
    *,
    target: tuple[str, str] | None = None,
    target_radius_px: tuple[float, float] = (30.0, 45.0),
    distractors: int = 4,
    distractor_radius_px: tuple[float, float] = (20.0, 60.0),
    exclude: tuple[tuple[str, str], ...] | set[tuple[str, str]] = (),
    distractor_classes: Sequence[tuple[str, str]] | None = None,
) -> WorldFrame:
    """A frame with one target object and up to ``distractors`` other objects.

    ``target`` is a ``(colour, shape)`` class, or None for a random class not in ``exclude``.
    Distractors are never of the target's class nor of a class in ``exclude``, so
    ``frame.has_class(...)`` is exact ground truth. Distractors that do not fit (the frame is full)
    are left out. The target's radius is drawn from ``target_radius_px``; each distractor's from
    ``distractor_radius_px``. ``distractor_classes`` picks the distractors' classes in order (hard
    negatives: the target's colour or shape on another class) instead of at random.
    """
    excluded = set(exclude)
    if target is None:
        target = random_class(rng, excluded)
    caption(*target)  # validates
    radius = float(rng.uniform(*target_radius_px))
    centre = free_centre(width, height, radius, [], rng)
    if centre is None:
        raise ValueError(f"a target of radius {radius:.0f} px does not fit a {width}x{height} frame")
    placed = [(centre[0], centre[1], radius)]
    objects = [WorldObject(target[0], target[1], box_around(centre[0], centre[1], radius), random_angle(target[1], rng))]
    if distractor_classes is not None and (set(distractor_classes) & (excluded | {target})):
        raise ValueError("a distractor class may not be the target's or an excluded one")
    for i in range(distractors):
        if distractor_classes is not None and i < len(distractor_classes):
            colour, shape = distractor_classes[i]
        else:
            colour, shape = random_class(rng, excluded | {target})
        r = float(rng.uniform(*distractor_radius_px))
        at = free_centre(width, height, r, placed, rng)
        if at is None:
            continue
        placed.append((at[0], at[1], r))
        objects.append(WorldObject(colour, shape, box_around(at[0], at[1], r), random_angle(shape, rng)))
    return render_frame(width, height, tuple(objects), int(rng.integers(2**31)))


def large_object_frame(
    width: int,
    height: int,
    rng: np.random.Generator,
    *,
    target: tuple[str, str] | None = None,
    radius_frac: tuple[float, float] = (0.2, 0.4),
    exclude: tuple[tuple[str, str], ...] | set[tuple[str, str]] = (),
) -> WorldFrame:
    """A frame with one large object whose radius is ``radius_frac`` of the frame height."""
    return random_frame(
        width, height, rng, target=target, exclude=exclude, distractors=0,
        target_radius_px=(radius_frac[0] * min(width, height), radius_frac[1] * min(width, height)),
    )


def background_frame(width: int, height: int, rng: np.random.Generator) -> WorldFrame:
    """A frame with no object at all."""
    return render_frame(width, height, (), int(rng.integers(2**31)))
