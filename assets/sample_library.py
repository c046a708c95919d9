"""Embed a local library of video folders into per-video Parquet checkpoints (the foundation's
one asset; the partitioned per-video assets replace it).

No ``from __future__ import annotations`` here: Dagster reads the parameter annotations at
decoration time to find config and resources.
"""

from pathlib import Path

import dagster as dg

from pipelines.samples import SAMPLE_FPS, ensure_sample_library
from resources.encoder_resource import EncoderResource
from resources.local_videos import embed_video_folder, video_folders
from resources.settings import max_image_pixels_from_env, patch_config_from_env


class LibraryConfig(dg.Config):
    videos_dir: str = ""  # empty: the sample library, built under data_dir on first use
    data_dir: str = "var"
    fps: float = 1.0  # frame rate of videos_dir's videos, for timestamps


@dg.asset(description="Global + patch embeddings of every video folder, one Parquet checkpoint per video.")
def library_checkpoints(
    context: dg.AssetExecutionContext, config: LibraryConfig, encoder: EncoderResource
) -> dg.MaterializeResult:
    data_dir = Path(config.data_dir)
    videos = Path(config.videos_dir) if config.videos_dir else ensure_sample_library(data_dir / "samples")
    frame_encoder = encoder.encoder
    info = frame_encoder.info
    if info.weights_random:
        context.log.warning(f"RANDOM weights ({info.model_id}): vectors carry no meaning. {encoder.fallback_reason or ''}")
    patch_config, max_pixels = patch_config_from_env(), max_image_pixels_from_env()
    reports = []
    for video_id, folder in video_folders(videos):
        fps = config.fps if config.videos_dir else SAMPLE_FPS.get(video_id, config.fps)
        path = data_dir / "checkpoints" / f"video_{video_id}.parquet"
        report = embed_video_folder(frame_encoder, folder, video_id, fps, path, patch_config, max_pixels)
        for name, reason in report.skipped:
            context.log.warning(f"video {video_id}: skipped {name}: {reason}")
        reports.append(report)
    failed = [r.video_id for r in reports if r.checkpoint is None]
    if failed:
        raise dg.Failure(f"videos with no usable frame: {failed}")
    seconds = sum(r.seconds for r in reports)
    frames = sum(r.frames for r in reports)
    return dg.MaterializeResult(
        metadata={
            "videos": len(reports),
            "frames": frames,
            "patches": sum(r.patches for r in reports),
            "frames_skipped": sum(len(r.skipped) for r in reports),
            "skipped": dg.MetadataValue.json({f"{r.video_id}/{n}": why for r in reports for n, why in r.skipped}),
            "seconds": round(seconds, 2),
            "frames_per_s": round(frames / seconds, 2) if seconds else 0.0,
            "model_id": info.model_id,
            "weights_random": info.weights_random,
            "precision": info.precision,
            "checkpoints": dg.MetadataValue.json([str(r.checkpoint) for r in reports]),
        }
    )
