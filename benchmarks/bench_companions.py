"""Temporal dedup of the patch graph (COMPANION_DEDUP): companion points per kept frame, against
the planned patches, on videos as the pipeline samples them.

    ./dev bench companions [--thresholds off,0.99,0.98,0.97,0.95]

Each video goes through the pipeline's own code - the local frame source (video files sampled at
``fps:1``, with the near-duplicate filter of whole frames on), ``embed_video`` with the committed
world model (``models/framesearch-world``) at the default patch settings - then
:func:`companion_runs` counts the points each threshold keeps:

- ``clip``: ``./dev bench video``'s 12 s 1080p h264 clip (moving blocks; a third of it still);
- ``world_static``: 20 s of one world frame (1280x720, five shapes) in which a small object
  appears for one second (its windows must stay points of their own: checked here);
- ``world_pan_slow`` / ``world_pan_fast``: a camera panning across a 4000x720 world scene at 16 and
  96 px a second (one sampled frame a second).

Each threshold is counted twice: runs across frames only (the first rule) and with alike windows
of one frame grouped too (``+w``, the product's rule). PATCH_* settings (PATCH_MODE too) are read
from the environment. Figures go to ``var/bench/companions.json``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_video import make_clip  # noqa: E402
from benchmarks.common import write_results  # noqa: E402
from resources.checkpoints.dedup import DedupConfig  # noqa: E402
from resources.checkpoints.format import published_path  # noqa: E402
from resources.checkpoints.video_embedding import embed_video  # noqa: E402
from resources.embedding.encoder import EncoderConfig, FrameEncoder  # noqa: E402
from resources.embedding.offline import offline_config, offline_model_dir  # noqa: E402
from resources.frame_sources import LocalFolderSource  # noqa: E402
from resources.frame_sources.video import SamplingPolicy  # noqa: E402
from resources.settings import patch_config_from_env  # noqa: E402
from resources.vector_index.companions import CompanionRuns, companion_runs  # noqa: E402
from resources.vector_index.schema import points_from_checkpoint  # noqa: E402
from training.world import WorldObject, render_frame  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FPS = 30


def write_mp4(path: Path, frames: list[np.ndarray], seconds_each: float = 1.0) -> None:
    """Frames as an h264 clip at 30 fps, each shown ``seconds_each`` (so fps:1 samples one each)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": "60"}
        for picture in frames:
            video_frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            for _ in range(int(FPS * seconds_each)):
                for packet in stream.encode(video_frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def world_static(seconds: int = 20, needle_at: int = 10) -> tuple[list[np.ndarray], tuple[int, int, int, int]]:
    scene = (WorldObject("blue", "square", (100, 80, 200, 200)), WorldObject("green", "ring", (700, 300, 220, 220)),
             WorldObject("yellow", "star", (1000, 60, 160, 160)), WorldObject("purple", "cross", (350, 420, 180, 180)))
    needle = WorldObject("red", "circle", (560, 120, 70, 70))  # radius 35 px: a small object
    plain = render_frame(1280, 720, scene, seed=5).image
    with_needle = render_frame(1280, 720, (*scene, needle), seed=5).image
    return [np.asarray(with_needle if s == needle_at else plain) for s in range(seconds)], needle.box


def world_pan(speed_px: int, seconds: int = 20) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    objects = tuple(
        WorldObject(str(rng.choice(["blue", "green", "yellow", "purple", "cyan"])), str(rng.choice(["square", "ring", "star", "cross", "triangle"])),
                    (int(x), int(rng.integers(20, 520)), 160, 160))
        for x in range(40, 3800, 260)
    )
    canvas = np.asarray(render_frame(4000, 720, objects, seed=3).image)
    return [canvas[:, s * speed_px : s * speed_px + 1280] for s in range(seconds)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thresholds", default="off,0.99,0.98,0.97,0.95")
    args = parser.parse_args(argv)
    thresholds: list[float | None] = [None if t == "off" else float(t) for t in args.thresholds.split(",")]
    encoder = FrameEncoder.load(offline_config(EncoderConfig(precision="fp32"), offline_model_dir()))
    results: dict[str, object] = {"cpu": platform.processor() or platform.machine(), "model": encoder.info.model_id, "videos": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "videos"
        clip = make_clip(REPO / "var" / "bench" / "video" / "clip_1080p_12s.mp4", 12)
        (root / "1").mkdir(parents=True)
        (root / "1" / "clip.mp4").symlink_to(clip.resolve())
        static, needle_box = world_static()
        write_mp4(root / "2" / "static.mp4", static)
        write_mp4(root / "3" / "pan.mp4", world_pan(16))
        write_mp4(root / "4" / "pan.mp4", world_pan(96))
        source = LocalFolderSource(root, sampling=SamplingPolicy())  # fps:1
        store = Path(tmp) / "checkpoints"
        for video_id, name in ((1, "clip"), (2, "world_static"), (3, "world_pan_slow"), (4, "world_pan_fast")):
            refs = source.manifest(video_id)
            report = embed_video(video_id, refs, source, encoder, store, patch_config_from_env(), dedup=DedupConfig())
            table = pq.read_table(published_path(store, video_id))
            points = points_from_checkpoint(table, encoder.info.embed_dim, "bench")
            planned = sum(len(p.patch_vectors) for p in points)
            row: dict[str, object] = {"sampled_frames": len(refs), "kept_frames": len(points), "dropped": len(report.dropped), "planned_patches": planned}
            line = f"{name:>15}: {len(refs):>3} sampled, {len(points):>3} kept, {planned:>5} planned patches |"
            for threshold in thresholds:
                for within in (False, True) if threshold is not None else (True,):
                    runs = companion_runs(points, threshold, within_frame=within)
                    label = "off" if threshold is None else f"{threshold:g}" + ("+w" if within else "")
                    row[f"points_{label}"] = len(runs)
                    row[f"share_{label}"] = round(len(runs) / planned, 3)
                    line += f" {label}: {len(runs):>5} ({len(runs) / planned:.2f})"
                    if name == "world_static" and threshold is not None:
                        line += needle_check(points, runs, needle_box, threshold, row, label)
            results["videos"][name] = row  # type: ignore[index]
            print(line, flush=True)
    write_results(REPO / "var" / "bench" / "companions.json", results)
    return 0


def needle_check(points: list, runs: CompanionRuns, needle_box: tuple[int, int, int, int], threshold: float, row: dict, label: str) -> str:
    """The needle's frame: every window touching the object must be represented by a point of
    that frame alone (a run that starts and ends there) within ``threshold`` of it - its own, or
    (within-frame grouping) an alike window's that also shows the object."""
    shown = [i for i, p in enumerate(points) if 10_000 <= int(p.payload["timestamp_ms"]) < 11_000]
    if not shown:
        row[f"needle_{label}"] = "needle frame not sampled"
        return " [needle frame not sampled]"
    frame = shown[0]
    vectors = np.asarray(points[frame].patch_vectors, np.float32)
    x, y, w, h = needle_box
    boxes = points[frame].payload["patch_boxes"]
    touching = [j for j, (bx, by, bw, bh) in enumerate(boxes) if bx < x + w and x < bx + bw and by < y + h and y < by + bh]
    own = [int(wi) for a, wi, b in zip(runs.first, runs.window, runs.last) if a == b == frame]
    covered = sum(1 for j in touching if own and float((vectors[own] @ vectors[j]).max()) >= threshold)
    row[f"needle_{label}"] = {"own_points": len(set(own) & set(touching)), "windows_covered": covered, "windows": len(touching)}
    return f" [needle {covered}/{len(touching)}]"


if __name__ == "__main__":
    sys.exit(main())
