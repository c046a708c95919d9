"""Video files: decode + sample + dedup throughput against raw decode of the same file, side by
side in one run, and the share of a video's embedding wall time that is not the encoder.

    ./dev bench video            # a 12 s 1080p h264 clip (made here with PyAV, once)
    ./dev bench video --quick    # 6 s, fewer repetitions

Measured on one 1920x1080 30 fps h264 clip (``var/bench/video/``; moving shapes, 4 s of it a
still scene), each the best of ``--repeat`` runs:

- ``pyav_raw``: PyAV decodes every frame (frame threads), nothing else: the reference;
- ``ffmpeg_null``: ``ffmpeg -i clip -f null -`` when ffmpeg is installed (skipped otherwise);
- ``framesearch``: what the pipeline does before the encoder: the frame source's scan (demux
  only), then :func:`iter_frames` over the picked frames in chunks of 64 with thumbnails, and the
  near-duplicate filter - at VIDEO_SAMPLING ``fps:1`` (the default) and ``fps:30`` (every frame);
  its throughput is the clip's frames over its wall time, so it compares with raw decode.

Then ``embed_video`` of the clip at the seed defaults (ViT-B-32, random weights: speed only;
224/112 patches) gives the non-encoder share: ``1 - seconds["embed"] / wall``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_results  # noqa: E402
from resources.checkpoints.dedup import DedupConfig, NearDuplicateFilter  # noqa: E402
from resources.checkpoints.video_embedding import embed_video  # noqa: E402
from resources.checkpoints.video_job import DEFAULT_CHUNK_FRAMES  # noqa: E402
from resources.embedding.encoder import EncoderConfig, FrameEncoder  # noqa: E402
from resources.embedding.model_files import save_random_weights  # noqa: E402
from resources.embedding.patches import PatchConfig  # noqa: E402
from resources.frame_sources import DecodedFrame, LocalFolderSource, SamplingPolicy, iter_frames  # noqa: E402

WIDTH, HEIGHT, FPS = 1920, 1080, 30


def draw(index: int, still_from: int, still_to: int) -> np.ndarray:
    """Gradient background with moving blocks; frames in [still_from, still_to) repeat one picture."""
    t = still_from if still_from <= index < still_to else index
    ys, xs = np.mgrid[0:HEIGHT:4, 0:WIDTH:4]  # drawn at quarter size, then upscaled: cheap to make
    small = np.stack([(xs + 3 * t) % 256, (ys + t) % 256, np.full_like(xs, 90)], -1).astype(np.uint8)
    rng = np.random.default_rng(7)
    for block in range(12):
        x = int((rng.integers(0, 400) + (block + 1) * 2 * t) % 440)
        y = int(rng.integers(0, 230))
        small[y : y + 40, x : x + 40] = rng.integers(0, 256, 3)
    return small.repeat(4, 0).repeat(4, 1)


def make_clip(path: Path, seconds: int) -> Path:
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    frames, still = seconds * FPS, (seconds // 3 * FPS, 2 * seconds // 3 * FPS)
    print(f"encoding {path} ({frames} frames of 1920x1080, h264) ...", flush=True)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": "60"}
        for index in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(draw(index, *still), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
    return path


def best_of(repeat: int, run) -> float:  # noqa: ANN001 - a callable returning nothing
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def pyav_raw(path: Path) -> None:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            pass


def ffmpeg_null(path: Path) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "null", "-"], check=True)


def framesearch_pass(root: Path, policy: str) -> dict[str, int]:
    """Scan, decode the picked frames chunk by chunk with thumbnails, and drop near-duplicates."""
    source = LocalFolderSource(root, sampling=SamplingPolicy.parse(policy))
    refs = source.manifest(1)
    kept = dropped = 0
    stats: dict[str, int] = {}
    for start in range(0, len(refs), DEFAULT_CHUNK_FRAMES):
        check = NearDuplicateFilter(DedupConfig().threshold)
        for item in iter_frames(source, refs[start : start + DEFAULT_CHUNK_FRAMES], thumbs=True, stats=stats):
            assert isinstance(item, DecodedFrame), item
            if check.keep(item.thumb):
                kept += 1
            else:
                dropped += 1
    return {"picked": len(refs), "kept": kept, "dropped": dropped, "decoded": stats.get("decoded", 0), "restarts": stats.get("restarts", 0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--no-encoder", action="store_true", help="skip the embed_video run with ViT-B-32")
    parser.add_argument("--out", type=Path, default=Path("var/bench/video.json"))
    args = parser.parse_args(argv)
    seconds, repeat = (6, 2) if args.quick else (12, 3)
    repeat = args.repeat or repeat
    clip = make_clip(Path(f"var/bench/video/clip_1080p_{seconds}s.mp4"), seconds)
    with av.open(str(clip)) as container:
        frames = sum(1 for packet in container.demux(video=0) if packet.size)
    root = Path(tempfile.mkdtemp(prefix="bench-video-"))
    (root / "1").mkdir()
    (root / "1" / "clip.mp4").symlink_to(clip.resolve())
    print(f"{clip}: {frames} frames, {clip.stat().st_size / 1e6:.1f} MB; torch threads {torch.get_num_threads()}; best of {repeat}")

    results: dict[str, object] = {"clip": str(clip), "frames": frames, "seconds_of_video": seconds, "repeat": repeat}
    raw = best_of(repeat, lambda: pyav_raw(clip))
    results["pyav_raw"] = {"seconds": raw, "frames_per_s": frames / raw}
    print(f"\n  {'pyav raw decode':34s} {frames / raw:8.1f} frames/s  ({raw:.2f} s)")
    if shutil.which("ffmpeg"):
        null = best_of(repeat, lambda: ffmpeg_null(clip))
        results["ffmpeg_null"] = {"seconds": null, "frames_per_s": frames / null}
        print(f"  {'ffmpeg -f null':34s} {frames / null:8.1f} frames/s  ({null:.2f} s)")
    else:
        results["ffmpeg_null"] = None
        print(f"  {'ffmpeg -f null':34s} not installed (apt-get install ffmpeg for the reference)")
    for policy in ("fps:1", "fps:30"):
        counts: dict[str, int] = {}
        wall = best_of(repeat, lambda p=policy, c=counts: c.update(framesearch_pass(root, p)))
        results[f"framesearch_{policy}"] = {"seconds": wall, "frames_per_s": frames / wall, "vs_pyav_raw": raw / wall, **counts}
        print(
            f"  {'scan+decode+sample+dedup ' + policy:34s} {frames / wall:8.1f} frames/s  ({wall:.2f} s) = "
            f"{raw / wall * 100:5.1f} % of raw decode; picked {counts['picked']}, dropped {counts['dropped']}, "
            f"decoder produced {counts['decoded']} frames ({counts['restarts']} restarts)"
        )

    if not args.no_encoder:
        weights = Path("var/bench/models/ViT-B-32-random.safetensors")
        if not weights.is_file():
            save_random_weights(weights, "ViT-B-32")
        encoder = FrameEncoder.load(EncoderConfig(model="ViT-B-32", pretrained=str(weights)))
        source = LocalFolderSource(root, sampling=SamplingPolicy.parse("fps:1"))
        refs = source.manifest(1)
        store = root / "store"
        started = time.perf_counter()
        report = embed_video(1, refs, source, encoder, store, PatchConfig(), dedup=DedupConfig())
        wall = time.perf_counter() - started + 0.0
        share = 1 - report.seconds["embed"] / wall
        results["embed_video"] = {
            "wall_s": wall, "seconds": report.seconds, "frames": report.frames, "dropped": len(report.dropped),
            "images_encoded": report.images_encoded, "non_encoder_share": share, "precision": encoder.info.precision,
        }
        print(
            f"\n  embed_video, ViT-B-32 ({encoder.info.precision}, random weights), fps:1: {len(refs)} picked, "
            f"{len(report.dropped)} dropped, {report.frames} embedded ({report.images_encoded} model inputs) in {wall:.1f} s"
        )
        stages = ", ".join(f"{k} {v:.2f}" for k, v in report.seconds.items())
        print(f"  stages (s): {stages}\n  not the encoder: {share * 100:.1f} % of the wall time")
    shutil.rmtree(root, ignore_errors=True)
    print()
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
