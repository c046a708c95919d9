"""The code location's resources, filled in from the environment when it loads."""

import os

import dagster as dg

from resources.checkpoints.video_job import DEFAULT_CHUNK_FRAMES
from resources.dagster_resources.encoder import EncoderResource
from resources.dagster_resources.stores import (
    CheckpointStoreResource,
    FrameEventsResource,
    FrameSourceResource,
    IndexResource,
    s3_resource_from_env,
)
from resources.generations.records import BASE, index_generation_from_env
from resources.generations.switch import folder_of
from resources.settings import SettingsError, encoder_config_from_env, index_settings_from_env


def _secret(name: str) -> dg.EnvVar | None:
    """A secret as ``dg.EnvVar``: read by the run, never shown in the UI (None when unset)."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def pipeline_resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """The code location's resources, every setting filled in from the environment when it loads
    (validated, with the seed's defaults), so the UI's resource pages show the values in use;
    secrets (QDRANT_API_KEY) stay ``dg.EnvVar`` references.

    FRAMES_ROOT (default the sample library ``var/samples/videos``), FRAMES_FPS, CHECKPOINT_DIR,
    CHECKPOINT_CHUNK_FRAMES, OPENCLIP_* / BATCH_SIZE / GLOBAL_RESIZE_MODE / PATCH_CROP_METHOD,
    OFFLINE_MODEL_DIR, QDRANT_URL / QDRANT_PATH / QDRANT_COLLECTION / QDRANT_API_KEY, INDEX_GENERATION, AWS_REGION /
    S3_ENDPOINT_URL / S3_TIMEOUT_SECONDS / S3_MAX_ATTEMPTS, FRAMES_EVENTS_QUEUE_URL.
    """
    encoder, index = encoder_config_from_env(), index_settings_from_env()
    # INDEX_GENERATION: the generation this deployment's runs fill (resources.generations): its own
    # checkpoint folder and collection beside the base ones, which the service keeps answering from
    # until a cut-over. Unset: the base generation (CHECKPOINT_DIR and QDRANT_COLLECTION as they are).
    checkpoint_root, collection = generation_locations(os.environ.get("CHECKPOINT_DIR") or "var/checkpoints", index.collection)
    return {
        # Machines without the configured weights run the offline model (models/framesearch-world,
        # trained on the synthetic shapes world; OFFLINE_MODEL_DIR) and every run says so.
        "encoder": EncoderResource(
            model=encoder.model, pretrained=encoder.pretrained, batch_size=encoder.batch_size, device=encoder.device,
            precision=encoder.precision, global_resize=encoder.global_resize, crop_method=encoder.crop_method,
            offline_fallback=True, offline_model_dir=os.environ.get("OFFLINE_MODEL_DIR") or None,
        ),
        "frames": FrameSourceResource(
            root=os.environ.get("FRAMES_ROOT") or "var/samples/videos",
            fps=float(os.environ.get("FRAMES_FPS") or 1.0),
            s3=s3_resource_from_env(),
        ),
        # FRAMES_EVENTS_QUEUE_URL: the SQS queue of the frame bucket's S3 event notifications,
        # which video_event_sensor reads (SQS on S3_ENDPOINT_URL where that is set).
        "frame_events": FrameEventsResource(queue_url=os.environ.get("FRAMES_EVENTS_QUEUE_URL") or None, s3=s3_resource_from_env()),
        "store": CheckpointStoreResource(
            root=checkpoint_root,
            chunk_frames=int(os.environ.get("CHECKPOINT_CHUNK_FRAMES") or DEFAULT_CHUNK_FRAMES),
        ),
        "index": IndexResource(url=index.url, path=index.path, collection=collection, api_key=_secret("QDRANT_API_KEY")),
    }


def generation_locations(checkpoint_root: str, collection: str) -> tuple[str, str]:
    """The checkpoint folder and collection a pipeline writes under INDEX_GENERATION: the base
    ones as given, or that generation's (``<root>/generations/<name>``, ``<collection>_<name>``)."""
    try:
        generation = index_generation_from_env()
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    if generation == BASE:
        return checkpoint_root, collection
    return folder_of(checkpoint_root, generation), f"{collection}_{generation}"
