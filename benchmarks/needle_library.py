"""The needle library of the quality benchmark: frames of the synthetic shapes world with exact
ground truth (see :mod:`benchmarks.quality` for what it holds and how it is measured).

``frames`` 1280x720 frames in a local frame-source folder (``videos/<video_id>/frame_<n>.jpg``,
``frames_per_video`` per video) with ``ground_truth.json`` beside it; the same spec always gives
the same pixels, and a library built from the same spec is reused.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from training.world import (
    CLASSES,
    WorldFrame,
    WorldObject,
    background_frame,
    box_around,
    caption,
    draw_objects,
    free_centre,
    large_object_frame,
    random_angle,
    random_frame,
    render_frame,
)


@dataclass(frozen=True)
class LibrarySpec:
    """What the needle library holds; the same spec always gives the same pixels."""

    frames: int = 2_000
    frames_per_video: int = 250
    small_captions: int = 12  # queried classes drawn small (radius 30-45 px) among 4 distractors
    large_captions: int = 6  # queried classes drawn as one large object (radius 20-40% of the height)
    needles: int = 3  # frames holding each queried class
    width: int = 1280
    height: int = 720
    seed: int = 0
    image_format: str = "jpg"  # jpg (quality 95: mild artefacts, like decoded video) or png
    filler_large: float = 0.10  # share of non-needle frames with one large object of an unqueried class
    filler_background: float = 0.05  # share of non-needle frames with no object
    # Frames per panning shot: 1 draws every frame on its own (independent scenes); N > 1 makes
    # videos of shots in which a camera pans ``pan_px`` pixels a frame across one wide scene, a
    # needle appearing in exactly one frame of its shot (what temporal dedup must not merge away).
    pan_frames: int = 1
    pan_px: int = 48

    def __post_init__(self) -> None:
        queried = self.small_captions + self.large_captions
        if queried >= len(CLASSES):
            raise ValueError(f"{queried} queried classes leave none of the {len(CLASSES)} for distractors")
        if queried * self.needles > self.frames:
            raise ValueError(f"{queried} captions x {self.needles} needles do not fit {self.frames} frames")
        if self.image_format not in ("jpg", "png"):
            raise ValueError(f"image_format must be jpg or png, got {self.image_format!r}")
        if self.pan_frames < 1 or self.frames_per_video % self.pan_frames:
            raise ValueError(f"pan_frames must divide frames_per_video ({self.frames_per_video}), got {self.pan_frames}")

    def as_dict(self) -> dict[str, object]:
        """The spec as stored beside a library; without the panning fields while they are off, so
        libraries built before they existed keep matching their spec."""
        fields = asdict(self)
        if self.pan_frames == 1:
            del fields["pan_frames"], fields["pan_px"]
        return fields

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Query:
    """One caption and the frames that hold its class (image ids ``"<video>:<frame>"``)."""

    caption: str
    colour: str
    shape: str
    size: str  # "small" or "large"
    relevant: tuple[str, ...]


@dataclass(frozen=True)
class Library:
    root: Path  # holds videos/ and ground_truth.json
    spec: LibrarySpec
    queries: tuple[Query, ...]
    build_seconds: float = 0.0  # 0 when an existing library was reused

    @property
    def videos(self) -> Path:
        return self.root / "videos"

    @property
    def video_ids(self) -> list[int]:
        return sorted(int(p.name) for p in self.videos.iterdir() if p.name.isdigit())


def _plan(spec: LibrarySpec) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, tuple[str, str] | None]]]:
    """Queried small and large classes, and each frame's kind: ("small"|"large", class) for
    needles, ("filler", None) otherwise."""
    rng = np.random.default_rng([spec.seed, 0])
    order = [CLASSES[i] for i in rng.permutation(len(CLASSES))]
    small, large = order[: spec.small_captions], order[spec.small_captions : spec.small_captions + spec.large_captions]
    kinds: list[tuple[str, tuple[str, str] | None]] = [("filler", None)] * spec.frames
    slots = iter(rng.permutation(spec.frames))
    for size, classes in (("small", small), ("large", large)):
        for cls in classes:
            for _ in range(spec.needles):
                kinds[int(next(slots))] = (size, cls)
    return small, large, kinds


def _render(spec: LibrarySpec, index: int, kind: str, cls: tuple[str, str] | None, queried: frozenset[tuple[str, str]]) -> WorldFrame:
    if spec.pan_frames > 1:
        return _render_panned(spec, index, kind, cls, queried)
    rng = np.random.default_rng([spec.seed, 1, index])  # one stream per frame: any frame can be redrawn alone
    if kind == "small":
        return random_frame(spec.width, spec.height, rng, target=cls, exclude=queried)
    if kind == "large":
        return large_object_frame(spec.width, spec.height, rng, target=cls, exclude=queried)
    draw = rng.random()
    if draw < spec.filler_background:
        return background_frame(spec.width, spec.height, rng)
    if draw < spec.filler_background + spec.filler_large:
        return large_object_frame(spec.width, spec.height, rng, exclude=queried)
    return random_frame(spec.width, spec.height, rng, exclude=queried)


@lru_cache(maxsize=4)
def _shot_scene(spec: LibrarySpec, shot: int, queried: frozenset[tuple[str, str]]) -> WorldFrame:
    """The wide scene a shot pans across: a filler scene as wide as the shot's frames together."""
    width = spec.width + (spec.pan_frames - 1) * spec.pan_px
    rng = np.random.default_rng([spec.seed, 3, shot])
    draw = rng.random()
    if draw < spec.filler_background:
        return background_frame(width, spec.height, rng)
    if draw < spec.filler_background + spec.filler_large:
        return large_object_frame(width, spec.height, rng, exclude=queried)
    # As many objects per frame as a filler frame of its own holds (5).
    return random_frame(width, spec.height, rng, exclude=queried, distractors=round(5 * width / spec.width) - 1)


def _render_panned(spec: LibrarySpec, index: int, kind: str, cls: tuple[str, str] | None, queried: frozenset[tuple[str, str]]) -> WorldFrame:
    """Frame ``index`` of its shot: the scene's window at ``pan_px`` times its place in the shot; a
    needle frame has its target drawn on top, clear of the objects in view, in that frame only."""
    shot, step = divmod(index, spec.pan_frames)
    scene = _shot_scene(spec, shot, queried)
    left = step * spec.pan_px
    image = Image.fromarray(np.ascontiguousarray(scene.image[:, left : left + spec.width]))
    in_view = [
        WorldObject(o.colour, o.shape, (o.box[0] - left, *o.box[1:]), o.angle)
        for o in scene.objects if o.box[0] < left + spec.width and left < o.box[0] + o.box[2]
    ]
    if kind in ("small", "large"):
        assert cls is not None
        rng = np.random.default_rng([spec.seed, 1, index])
        radius = float(rng.uniform(30.0, 45.0)) if kind == "small" else float(rng.uniform(0.2, 0.4)) * spec.height
        placed = [] if kind == "large" else [(o.box[0] + o.box[2] / 2, o.box[1] + o.box[3] / 2, o.radius) for o in in_view]
        centre = free_centre(spec.width, spec.height, radius, placed, rng, tries=500)
        if centre is None:
            raise ValueError(f"no room for the needle in frame {index}")
        needle = WorldObject(cls[0], cls[1], box_around(*centre, radius), random_angle(cls[1], rng))
        draw_objects(image, (needle,), rng)
        in_view.append(needle)
    return WorldFrame(np.asarray(image), tuple(in_view))


def _frame_path(videos: Path, spec: LibrarySpec, index: int) -> Path:
    video_id, frame_id = index // spec.frames_per_video + 1, index % spec.frames_per_video
    return videos / str(video_id) / f"frame_{frame_id:06d}.{spec.image_format}"


def image_id(spec: LibrarySpec, index: int) -> str:
    return f"{index // spec.frames_per_video + 1}:{index % spec.frames_per_video}"


def _write_frames(args: tuple[LibrarySpec, str, list[tuple[int, str, tuple[str, str] | None]], frozenset[tuple[str, str]]]) -> list[list]:
    """Render and save a batch of frames (runs in a worker process); their objects, as JSON rows."""
    spec, videos, batch, queried = args
    rows = []
    for index, kind, cls in batch:
        frame = _render(spec, index, kind, cls, queried)
        path = _frame_path(Path(videos), spec, index)
        options = {"quality": 95} if spec.image_format == "jpg" else {"compress_level": 1}
        Image.fromarray(frame.image).save(path, "JPEG" if spec.image_format == "jpg" else "PNG", **options)
        rows.append([[o.colour, o.shape, *o.box] for o in frame.objects])
    return rows


def build_library(root: Path, spec: LibrarySpec, workers: int = 1) -> Library:
    """Write the library under ``root`` (``videos/`` + ``ground_truth.json``), or reuse the one
    already there when it was built from the same spec."""
    truth_path = root / "ground_truth.json"
    if truth_path.is_file():
        truth = json.loads(truth_path.read_text())
        drawn = sum(1 for _ in (root / "videos").glob(f"*/frame_*.{spec.image_format}"))
        if truth.get("spec") == spec.as_dict() and drawn == spec.frames:
            return Library(root, spec, tuple(Query(**{**q, "relevant": tuple(q["relevant"])}) for q in truth["queries"]))
    started = time.perf_counter()
    small, large, kinds = _plan(spec)
    queried = frozenset(small) | frozenset(large)
    videos = root / "videos"
    for index in range(0, spec.frames, spec.frames_per_video):
        _frame_path(videos, spec, index).parent.mkdir(parents=True, exist_ok=True)
    jobs = [(i, kind, cls) for i, (kind, cls) in enumerate(kinds)]
    batches = [(spec, str(videos), jobs[i : i + 50], queried) for i in range(0, len(jobs), 50)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            objects = [row for rows in pool.map(_write_frames, batches) for row in rows]
    else:
        objects = [row for batch in batches for row in _write_frames(batch)]
    # Ground truth from what was drawn, not from the plan: a caption's relevant frames are every
    # frame holding an object of its class.
    queries = []
    for size, classes in (("small", small), ("large", large)):
        for colour, shape in classes:
            relevant = tuple(image_id(spec, i) for i, objs in enumerate(objects) if any(o[0] == colour and o[1] == shape for o in objs))
            planned = tuple(image_id(spec, i) for i, (_, cls) in enumerate(kinds) if cls == (colour, shape))
            assert relevant == planned, f"{colour} {shape}: drawn in {relevant}, planned {planned}"
            queries.append(Query(caption(colour, shape), colour, shape, size, relevant))
    truth = {
        "spec": spec.as_dict(),
        "about": "objects per frame: [colour, shape, x, y, w, h] (box in pixels); queries: caption -> relevant image ids",
        "queries": [asdict(q) for q in queries],
        "frames": {image_id(spec, i): objs for i, objs in enumerate(objects)},
    }
    truth_path.write_text(json.dumps(truth))
    return Library(root, spec, tuple(queries), time.perf_counter() - started)


def query_image(colour: str, shape: str, size: int = 224, seed: int = 0) -> bytes:
    """The hybrid query's image: the target object alone (radius 30% of the image) on a world
    background, as PNG."""
    side = round(0.6 * size)
    obj = WorldObject(colour, shape, ((size - side) // 2, (size - side) // 2, side, side))
    buffer = io.BytesIO()
    Image.fromarray(render_frame(size, size, (obj,), seed).image).save(buffer, "PNG")
    return buffer.getvalue()
