"""The README's main job: embed every video of a frame library into Parquet checkpoints.

``python -m pipelines.main`` (what ``./dev main`` runs) builds the sample library, loads the
configured OpenCLIP model - or, when its weights cannot be had on this machine, the tiny
random-weight model, saying so loudly - embeds each video's frames (global + patch vectors)
and writes one checkpoint per video under ``var/checkpoints/``.

This is the foundation stage of the product; the Dagster pipeline grows out of it.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from resources.checkpoint import FrameRecord, records_to_table, write_table_atomic
from resources.clip_loader import TINY_MODEL, WeightsUnavailableError, save_random_weights
from resources.encoder import EncoderConfig, FrameEncoder
from resources.images import ImageDecodeError, decode_image
from resources.settings import encoder_config_from_env, max_image_pixels_from_env, patch_config_from_env

from pipelines.samples import GLOBE_FPS, GLOBE_VIDEO_ID, SCENE_FPS, SCENE_VIDEO_ID, ensure_sample_library

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
SAMPLE_FPS = {GLOBE_VIDEO_ID: GLOBE_FPS, SCENE_VIDEO_ID: SCENE_FPS}
RANDOM_BANNER = (
    "!! RANDOM WEIGHTS: the offline model {model_id} is untrained; its vectors and any search "
    "results built on them carry no meaning. Set OPENCLIP_PRETRAINED to real weights for real use."
)


@dataclass
class VideoReport:
    video_id: int
    frames: int
    skipped: list[tuple[str, str]]
    patches: int
    seconds: float
    checkpoint: Path | None


def frame_id_from_name(name: str) -> int:
    """The frame number in a file name: the last run of digits (``frame_000120.jpg`` -> 120)."""
    digits = re.findall(r"\d+", Path(name).stem)
    if not digits:
        raise ValueError(f"no frame number in file name {name!r}")
    return int(digits[-1])


def load_encoder(config: EncoderConfig, models_dir: Path, offline: bool) -> FrameEncoder:
    """The configured encoder, or the tiny random-weight model when real weights are unavailable."""
    if not offline:
        try:
            return FrameEncoder.load(config)
        except WeightsUnavailableError as exc:
            print(f"[main] real weights unavailable: {exc}", file=sys.stderr)
            print("[main] falling back to the offline tiny model with RANDOM weights", file=sys.stderr)
    weights = models_dir / f"{TINY_MODEL}-random.safetensors"
    if not weights.is_file():
        save_random_weights(weights)
    return FrameEncoder.load(replace(config, model=TINY_MODEL, pretrained=str(weights)))


def embed_video(encoder: FrameEncoder, folder: Path, video_id: int, fps: float, out_dir: Path) -> VideoReport:
    """Decode, embed and checkpoint one video folder; bad frames are skipped with their reason."""
    started = time.perf_counter()
    patch_config, max_pixels = patch_config_from_env(), max_image_pixels_from_env()
    frames, meta, skipped = [], [], []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            image = decode_image(path.read_bytes(), max_pixels=max_pixels)
            frame_id = frame_id_from_name(path.name)
        except (ImageDecodeError, ValueError) as exc:
            skipped.append((path.name, str(exc)))
            continue
        frames.append(image)
        meta.append((frame_id, path, image.size))
    if not frames:
        return VideoReport(video_id, 0, skipped, 0, time.perf_counter() - started, None)
    embeddings = encoder.encode_frames(frames, patch_config)
    records = [
        FrameRecord(video_id, frame_id, round(frame_id * 1000 / fps), path.resolve().as_uri(), w, h, emb)
        for (frame_id, path, (w, h)), emb in zip(meta, embeddings)
    ]
    info = encoder.info
    table = records_to_table(
        records,
        info.model_id,
        info.embed_dim,
        metadata={"model_id": info.model_id, "weights_random": info.weights_random, "patch_config": patch_config.fingerprint()},
    )
    path = write_table_atomic(table, out_dir / f"video_{video_id}.parquet")
    patches = sum(len(e.patch_vectors) for e in embeddings)
    return VideoReport(video_id, len(records), skipped, patches, time.perf_counter() - started, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.main", description=__doc__.split("\n\n")[0])
    parser.add_argument("--var", type=Path, default=Path("var"), help="working folder (default ./var)")
    parser.add_argument("--videos", type=Path, help="folder of video folders (default: the sample library)")
    parser.add_argument("--fps", type=float, default=1.0, help="frame rate for timestamps of --videos")
    parser.add_argument("--offline-model", action="store_true", help="use the tiny random-weight model")
    args = parser.parse_args(argv)

    videos = args.videos or ensure_sample_library(args.var / "samples")
    encoder = load_encoder(encoder_config_from_env(), args.var / "models", args.offline_model)
    info = encoder.info
    print(f"[main] model {info.model_id} on {info.device} ({info.precision}), dim {info.embed_dim}")
    if info.weights_random:
        print(RANDOM_BANNER.format(model_id=info.model_id))

    failures = 0
    for folder in sorted((p for p in videos.iterdir() if p.is_dir()), key=lambda p: p.name):
        try:
            video_id = int(folder.name)
        except ValueError:
            print(f"[main] skipping {folder}: video folders are named by their integer video_id")
            continue
        fps = SAMPLE_FPS.get(video_id, args.fps) if args.videos is None else args.fps
        report = embed_video(encoder, folder, video_id, fps, args.var / "checkpoints")
        for name, reason in report.skipped:
            print(f"[main] video {video_id}: skipped {name}: {reason}")
        if report.checkpoint is None:
            failures += 1
            print(f"[main] video {video_id}: FAILED, no usable frame in {folder}")
            continue
        print(
            f"[main] video {video_id}: {report.frames} frames, {report.patches} patches, "
            f"{len(report.skipped)} skipped, {report.seconds:.1f}s "
            f"({report.frames / report.seconds:.2f} frames/s) -> {report.checkpoint}"
        )
    if info.weights_random:
        print(RANDOM_BANNER.format(model_id=info.model_id))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
