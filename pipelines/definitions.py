"""The Dagster code location - what ``dagster dev -w workspace.yaml`` loads.

Resources read their settings from the environment when the location loads: FRAMES_ROOT (a
folder or ``s3://bucket/prefix/``; default the sample library ``var/samples/videos``), FRAMES_FPS,
CHECKPOINT_DIR, CHECKPOINT_CHUNK_FRAMES, the OPENCLIP_* / BATCH_SIZE / PATCH_* encoder settings,
the QDRANT_* index settings and AWS_REGION / S3_ENDPOINT_URL / S3_TIMEOUT_SECONDS / S3_MAX_ATTEMPTS.
"""

import os

import dagster as dg

from assets.videos import ASSETS
from pipelines.automation import reconcile_schedule, video_pipeline, video_sensor
from resources.encoder_resource import EncoderResource
from resources.pipeline_resources import CheckpointStoreResource, FrameSourceResource, IndexResource, s3_resource_from_env
from resources.video_embedding import DEFAULT_CHUNK_FRAMES

defs = dg.Definitions(
    assets=ASSETS,
    executor=dg.in_process_executor,
    jobs=[video_pipeline],
    sensors=[video_sensor],
    schedules=[reconcile_schedule],
    resources={
        # Machines without the configured weights run the offline model (models/framesearch-world,
        # trained on the synthetic shapes world; OFFLINE_MODEL_DIR) and every run says so.
        "encoder": EncoderResource(offline_fallback=True),
        "frames": FrameSourceResource(
            root=os.environ.get("FRAMES_ROOT") or "var/samples/videos",
            fps=float(os.environ.get("FRAMES_FPS") or 1.0),
            s3=s3_resource_from_env(),
        ),
        "store": CheckpointStoreResource(
            root=os.environ.get("CHECKPOINT_DIR") or "var/checkpoints",
            chunk_frames=int(os.environ.get("CHECKPOINT_CHUNK_FRAMES") or DEFAULT_CHUNK_FRAMES),
        ),
        "index": IndexResource(),
    },
)
