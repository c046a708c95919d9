"""The sample video library the README's main job runs on, made from media already installed.

No data ships with the repository and nothing is downloaded: video 1 is decoded from the real
h264 clip that ``dagster-webserver`` carries (a rotating globe, 240x240, 60 fps); video 2 is a
drawn 1280x720 street-like scene with a small red ball moving across it, large enough that its
frames have many patches.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from PIL import Image, ImageDraw

GLOBE_VIDEO_ID = 1
SCENE_VIDEO_ID = 2
GLOBE_FPS = 60
SCENE_FPS = 2
SAMPLE_FPS = {GLOBE_VIDEO_ID: GLOBE_FPS, SCENE_VIDEO_ID: SCENE_FPS}


def dagster_world_clip() -> Path:
    """Path of ``Dagster_world.mp4`` inside the installed ``dagster_webserver`` package."""
    return Path(str(files("dagster_webserver") / "webapp" / "build" / "Dagster_world.mp4"))


def _write_globe(folder: Path, every: int = 60) -> None:
    import av

    with av.open(str(dagster_world_clip())) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % every == 0:
                frame.to_image().convert("RGB").save(folder / f"frame_{index:06d}.jpg", quality=92)


def _draw_scene(step: int, width: int = 1280, height: int = 720) -> Image.Image:
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):  # sky to road gradient
        shade = int(200 - 150 * y / height)
        draw.line([(0, y), (width, y)], fill=(shade // 2, shade // 2 + 30, shade))
    draw.rectangle([0, int(height * 0.7), width, height], fill=(70, 70, 75))  # road
    for i in range(6):  # buildings
        x = 40 + i * 210
        draw.rectangle([x, 140 + 30 * (i % 3), x + 150, int(height * 0.7)], fill=(120 + 15 * i, 110, 100))
    ball_x = 100 + step * 180
    draw.ellipse([ball_x, 520, ball_x + 60, 580], fill=(220, 20, 30))  # the small thing to find
    return image


def ensure_sample_library(root: str | Path) -> Path:
    """Write the sample videos under ``root/videos/<video_id>/`` once; return that folder."""
    videos = Path(root) / "videos"
    globe, scene = videos / str(GLOBE_VIDEO_ID), videos / str(SCENE_VIDEO_ID)
    if not globe.is_dir() or not any(globe.iterdir()):
        globe.mkdir(parents=True, exist_ok=True)
        _write_globe(globe)
    if not scene.is_dir() or not any(scene.iterdir()):
        scene.mkdir(parents=True, exist_ok=True)
        for step in range(6):
            _draw_scene(step).save(scene / f"frame_{step:06d}.png")
    for folder, fps in ((globe, GLOBE_FPS), (scene, SCENE_FPS)):
        _write_manifest(folder, fps)
    return videos


def _write_manifest(folder: Path, fps: float) -> None:
    """A manifest.csv with each frame's real timestamp, so every reader agrees on them."""
    lines = ["frame_id,timestamp_ms,url"]
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png")):
        frame_id = int(path.stem.split("_")[-1])
        lines.append(f"{frame_id},{round(frame_id * 1000 / fps)},{path.name}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
