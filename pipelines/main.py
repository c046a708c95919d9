"""The README's main job: embed every video of a frame library into Parquet checkpoints.

``python -m pipelines.main`` (what ``./dev main`` runs) builds the sample library, loads the
configured OpenCLIP model - or, when its weights cannot be had on this machine, the tiny
random-weight model, saying so loudly - embeds each video's frames (global + patch vectors)
writes one checkpoint per video under ``var/checkpoints/``, loads each into the vector index
(embedded Qdrant Edge under ``var/qdrant/`` unless QDRANT_URL is set) and runs sample queries.

This is the foundation stage of the product; the Dagster pipeline grows out of it.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from resources.encoder import load_encoder_or_offline
from resources.checkpoint import published_path
from resources.index_follower import sync_or_defer
from resources.index_schema import IndexSchema
from resources.vector_index import VectorIndex
from resources.local_videos import embed_video_folder, video_folders
from resources.settings import (
    encoder_config_from_env,
    index_settings_from_env,
    max_image_pixels_from_env,
    patch_config_from_env,
)

from pipelines.samples import SAMPLE_FPS, ensure_sample_library

SAMPLE_QUERIES = ("a small red ball on a street", "the planet earth seen from space")
RANDOM_BANNER = (
    "!! RANDOM WEIGHTS: the offline model {model_id} is untrained; its vectors and any search "
    "results built on them carry no meaning. Set OPENCLIP_PRETRAINED to real weights for real use."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.main", description=__doc__.split("\n\n")[0])
    parser.add_argument("--var", type=Path, default=Path("var"), help="working folder (default ./var)")
    parser.add_argument("--videos", type=Path, help="folder of video folders (default: the sample library)")
    parser.add_argument("--fps", type=float, default=1.0, help="frame rate for timestamps of --videos")
    parser.add_argument("--offline-model", action="store_true", help="use the tiny random-weight model")
    args = parser.parse_args(argv)

    videos = args.videos or ensure_sample_library(args.var / "samples")
    config, models = encoder_config_from_env(), args.var / "models"
    if args.offline_model:
        config = replace(config, pretrained="")  # no weights configured: take the offline model
    encoder, reason = load_encoder_or_offline(config, models)
    if reason and not args.offline_model:
        print(f"[main] real weights unavailable: {reason}", file=sys.stderr)
    info = encoder.info
    print(f"[main] model {info.model_id} on {info.device} ({info.precision}), dim {info.embed_dim}")
    if info.weights_random:
        print(RANDOM_BANNER.format(model_id=info.model_id))

    patch_config, max_pixels = patch_config_from_env(), max_image_pixels_from_env()
    settings = index_settings_from_env()
    qdrant_path = settings.path if os.environ.get("QDRANT_PATH") else str(args.var / "qdrant")
    schema = IndexSchema(settings.collection, info.embed_dim)

    def open_index() -> VectorIndex:
        return VectorIndex.open(schema, url=settings.url, path=qdrant_path, api_key=settings.api_key)

    failures, deferred = 0, 0
    for video_id, folder in video_folders(videos):
        fps = args.fps if args.videos else SAMPLE_FPS.get(video_id, args.fps)
        checkpoint = published_path(args.var / "checkpoints", video_id)
        report = embed_video_folder(encoder, folder, video_id, fps, checkpoint, patch_config, max_pixels)
        for name, reason in report.skipped:
            print(f"[main] video {video_id}: skipped {name}: {reason}")
        if report.checkpoint is None:
            failures += 1
            print(f"[main] video {video_id}: FAILED, no usable frame in {folder}")
            continue
        synced = sync_or_defer(open_index, video_id, checkpoint)
        if synced is None:
            deferred += 1
        index_note = "index: deferred to the process holding it" if synced is None else (
            f"index: {'unchanged' if synced.skipped else f'{synced.upserted} upserted, {synced.deleted} deleted'}"
        )
        print(
            f"[main] video {video_id}: {report.frames} frames, {report.patches} patches, "
            f"{len(report.skipped)} skipped, {report.seconds:.1f}s "
            f"({report.frames / report.seconds:.2f} frames/s) -> {report.checkpoint}; {index_note}"
        )
    if not deferred:
        with open_index() as index:
            print(f"[main] index ({index.mode}, collection {schema.collection}): {index.count()} frames")
            for text in SAMPLE_QUERIES:
                vector = encoder.encode_texts([text])[0]
                hits = index.search(vector, top_k=3, patch_queries=vector[None], alpha=0.5)
                ranked = ", ".join(f"{h.payload['image_id']} ({h.score:.3f})" for h in hits)
                print(f"[main] search {text!r} (rerank on): {ranked}")
    if info.weights_random:
        print(RANDOM_BANNER.format(model_id=info.model_id))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
