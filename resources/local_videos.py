"""A local folder of videos: one sub-folder per video, named by its integer video_id, holding frame
images whose file names end in the frame number. Embeds a video folder into a checkpoint.

    videos/
      1/frame_000000.jpg  frame_000060.jpg  ...
      2/frame_000000.png  ...

This is the foundation's frame source; the Dagster pipeline's S3 and local sources build on it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from resources.checkpoint import FrameRecord, records_to_table, write_table_atomic
from resources.encoder import FrameEncoder
from resources.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from resources.patches import PatchConfig

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass
class VideoReport:
    """What embedding one video did; ``checkpoint`` is None when no frame was usable."""

    video_id: int
    frames: int = 0
    patches: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    seconds: float = 0.0
    checkpoint: Path | None = None
    version: str | None = None  # content version of the written checkpoint


def frame_id_from_name(name: str) -> int:
    """The frame number in a file name: the last run of digits (``frame_000120.jpg`` -> 120)."""
    digits = re.findall(r"\d+", Path(name).stem)
    if not digits:
        raise ValueError(f"no frame number in file name {name!r}")
    return int(digits[-1])


def video_folders(root: Path) -> list[tuple[int, Path]]:
    """``(video_id, folder)`` for each sub-folder of ``root`` named by an integer, sorted by id."""
    found = [(int(p.name), p) for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found)


def embed_video_folder(
    encoder: FrameEncoder,
    folder: Path,
    video_id: int,
    fps: float,
    checkpoint_path: Path,
    patch_config: PatchConfig = PatchConfig(),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> VideoReport:
    """Decode, embed and checkpoint one video folder; bad frames are skipped with their reason."""
    started = time.perf_counter()
    report = VideoReport(video_id)
    frames, meta = [], []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            frame_id = frame_id_from_name(path.name)
            image = decode_image(path.read_bytes(), max_pixels=max_pixels)
        except (ImageDecodeError, ValueError) as exc:
            report.skipped.append((path.name, str(exc)))
            continue
        frames.append(image)
        meta.append((frame_id, path, image.size))
    if frames:
        embeddings = encoder.encode_frames(frames, patch_config)
        records = [
            FrameRecord(video_id, frame_id, round(frame_id * 1000 / fps), path.resolve().as_uri(), w, h, emb)
            for (frame_id, path, (w, h)), emb in zip(meta, embeddings)
        ]
        info = encoder.info
        metadata = {"model_id": info.model_id, "weights_random": info.weights_random, "patch_config": patch_config.fingerprint()}
        table = records_to_table(records, info.model_id, info.embed_dim, metadata)
        report.version = write_table_atomic(table, checkpoint_path)
        report.checkpoint = checkpoint_path
        report.frames = len(records)
        report.patches = sum(len(e.patch_vectors) for e in embeddings)
    report.seconds = time.perf_counter() - started
    return report
