"""The sample video library the README's main job runs on, made on the spot: nothing ships with the
repository and nothing is downloaded.

- Video 1: ten frames decoded from the real h264 clip that ``dagster-webserver`` carries (a
  rotating globe, 240x240, 60 fps).
- Videos 2 and 3: twelve 1280x720 frames each of framesearch's synthetic shapes world
  (``training/world.py``, seeded, so every machine draws the same pixels). Each of the sample
  query captions (:data:`SAMPLE_QUERIES`) is a *small* object (radius 30-45 px) among four
  distractors in three frames, and two of them are also one *large* object in a frame of their
  own; the other frames hold other classes only (small or large) or nothing.
- Video 4: that same h264 clip as a video *file* (``4/globe.mp4``): the frame source samples and
  decodes it (VIDEO_SAMPLING, default one frame a second: 10 frames), so the main job indexes a
  real video file end to end. Its ground truth lists the frames the default sampling picks.

Every video folder gets a ``ground_truth.json`` beside its frames: for each frame id, the world
objects drawn on it (caption and box ``[x, y, w, h]`` in pixels; the globe's frames hold none), so
the main job can say whether a hit holds the object and whether its best patch lies on it.
Distractors are never of a query's class, so "holds" is exact.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
from PIL import Image

from resources.frame_sources import LocalFolderSource, SamplingPolicy
from training.world import CAPTIONS, CLASSES, WorldFrame, background_frame, large_object_frame, random_frame

GLOBE_VIDEO_ID = 1
CLIP_VIDEO_ID = 4  # the globe clip as a video file, decoded by the frame source
GLOBE_FPS = 60
WORLD_FPS = 2
WORLD_SIZE = (1280, 720)
GROUND_TRUTH = "ground_truth.json"
# Bump when the drawn library changes: a library written by other code is redrawn, not reused.
LIBRARY_VERSION = "world-v1"

SAMPLE_QUERIES: tuple[str, ...] = ("a red star", "a yellow triangle", "a green cross", "a purple ring")
_QUERY_CLASSES = tuple(dict(zip(CAPTIONS, CLASSES))[q] for q in SAMPLE_QUERIES)  # ("red", "star"), ...


@dataclass(frozen=True)
class WorldVideo:
    """One world video: a seed and its frames' recipes, in frame order before the seeded shuffle.

    A recipe is ``("small", caption)`` (that caption's object, small, among distractors),
    ``("large", caption)`` (one large object), ``("other", None)`` (a small object of a class no
    query asks for, among distractors), ``("large", None)`` (one large object of such a class) or
    ``("empty", None)``.
    """

    video_id: int
    seed: int
    recipes: tuple[tuple[str, str | None], ...]


WORLD_VIDEOS: tuple[WorldVideo, ...] = (
    WorldVideo(2, 2, (
        ("small", "a red star"), ("small", "a yellow triangle"), ("small", "a green cross"), ("small", "a purple ring"),
        ("small", "a red star"), ("small", "a green cross"), ("large", "a yellow triangle"), ("large", None),
        ("other", None), ("other", None), ("other", None), ("empty", None),
    )),
    WorldVideo(3, 3, (
        ("small", "a red star"), ("small", "a yellow triangle"), ("small", "a green cross"), ("small", "a purple ring"),
        ("small", "a yellow triangle"), ("small", "a purple ring"), ("large", "a green cross"), ("large", None),
        ("other", None), ("other", None), ("other", None), ("other", None),
    )),
)
SAMPLE_FPS = {GLOBE_VIDEO_ID: GLOBE_FPS, **{v.video_id: WORLD_FPS for v in WORLD_VIDEOS}}


def dagster_world_clip() -> Path:
    """Path of ``Dagster_world.mp4`` inside the installed ``dagster_webserver`` package."""
    return Path(str(files("dagster_webserver") / "webapp" / "build" / "Dagster_world.mp4"))


def _write_globe(folder: Path, every: int = 60) -> None:
    import av

    with av.open(str(dagster_world_clip())) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % every == 0:
                frame.to_image().convert("RGB").save(folder / f"frame_{index:06d}.jpg", quality=92)


def _draw(recipe: tuple[str, str | None], rng: np.random.Generator) -> WorldFrame:
    kind, text = recipe
    width, height = WORLD_SIZE
    target = _QUERY_CLASSES[SAMPLE_QUERIES.index(text)] if text else None
    exclude = set(_QUERY_CLASSES) - {target}  # no query's class appears except as the target
    if kind == "small" or kind == "other":
        return random_frame(width, height, rng, target=target, exclude=exclude)
    if kind == "large":
        return large_object_frame(width, height, rng, target=target, exclude=exclude)
    if kind == "empty":
        return background_frame(width, height, rng)
    raise ValueError(f"unknown recipe {recipe!r}")


def _write_world_video(folder: Path, video: WorldVideo) -> None:
    rng = np.random.default_rng(video.seed)
    order = rng.permutation(len(video.recipes))
    truth: dict[str, list[dict]] = {}
    for frame_id, recipe_index in enumerate(order):
        frame = _draw(video.recipes[recipe_index], rng)
        Image.fromarray(frame.image).save(folder / f"frame_{frame_id:06d}.jpg", quality=95)
        truth[str(frame_id)] = [{"caption": f"a {o.colour} {o.shape}", "box": list(o.box)} for o in frame.objects]
    _write_ground_truth(folder, truth)


def _write_ground_truth(folder: Path, frames: dict[str, list[dict]]) -> None:
    document = {
        "library": LIBRARY_VERSION,
        "about": "objects of framesearch's synthetic world drawn on each frame: caption and box [x, y, w, h] in pixels",
        "frames": frames,
    }
    (folder / GROUND_TRUTH).write_text(json.dumps(document, indent=1) + "\n")


def _is_current(folder: Path) -> bool:
    try:
        return json.loads((folder / GROUND_TRUTH).read_text()).get("library") == LIBRARY_VERSION
    except (OSError, ValueError):
        return False


def ensure_sample_library(root: str | Path) -> Path:
    """Write the sample videos under ``root/videos/<video_id>/`` once; return that folder.

    A video folder whose ground truth is missing or from another library version (an older
    sample library) is drawn again from scratch.
    """
    videos = Path(root) / "videos"
    globe = videos / str(GLOBE_VIDEO_ID)
    if not _is_current(globe):
        shutil.rmtree(globe, ignore_errors=True)
        globe.mkdir(parents=True)
        _write_globe(globe)
        _write_ground_truth(globe, {str(_frame_id(p)): [] for p in _frames(globe)})  # no world objects
    for video in WORLD_VIDEOS:
        folder = videos / str(video.video_id)
        if not _is_current(folder):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            _write_world_video(folder, video)
    for video_id, fps in SAMPLE_FPS.items():
        _write_manifest(videos / str(video_id), fps)
    clip = videos / str(CLIP_VIDEO_ID)
    if not _is_current(clip):
        shutil.rmtree(clip, ignore_errors=True)
        clip.mkdir(parents=True)
        shutil.copyfile(dagster_world_clip(), clip / "globe.mp4")
        # The frames the default sampling picks (0, 60, ..., 540): no world object on any of them.
        picked = LocalFolderSource(videos, sampling=SamplingPolicy()).manifest(CLIP_VIDEO_ID)
        _write_ground_truth(clip, {str(ref.frame_id): [] for ref in picked})
    return videos


def load_ground_truth(videos: str | Path) -> dict[str, list[tuple[str, list[int]]]]:
    """``{image_id: [(caption, box), ...]}`` for every frame of every video folder under
    ``videos`` that has a ground_truth.json (frames of other videos are not in it)."""
    truth: dict[str, list[tuple[str, list[int]]]] = {}
    for path in sorted(Path(videos).glob(f"*/{GROUND_TRUTH}")):
        if not path.parent.name.isdigit():
            continue
        frames = json.loads(path.read_text())["frames"]
        for frame_id, objects in frames.items():
            truth[f"{int(path.parent.name)}:{int(frame_id)}"] = [(o["caption"], [int(v) for v in o["box"]]) for o in objects]
    return truth


def _frames(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))


def _frame_id(path: Path) -> int:
    return int(path.stem.split("_")[-1])


def _write_manifest(folder: Path, fps: float) -> None:
    """A manifest.csv with each frame's real timestamp, so every reader agrees on them."""
    lines = ["frame_id,timestamp_ms,url"]
    for path in _frames(folder):
        lines.append(f"{_frame_id(path)},{round(_frame_id(path) * 1000 / fps)},{path.name}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")

