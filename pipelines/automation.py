"""What starts runs: a sensor for new or changed videos and a schedule that reconciles.

* ``video_sensor`` (``pipelines/sensor.py``) requests a run for each new or changed video, never
  for one whose checkpoint already matches its files: a full listing of the source each tick.
* ``video_event_sensor`` (``pipelines/event_sensor.py``) requests runs for the videos the frame
  bucket's S3 events name, listing only those; with it, ``video_sensor`` is the reconcile path.
* ``reconcile_schedule`` runs nightly: it requests runs for partitions with no checkpoint, for
  stale ones - checkpoints made by another model or other patch settings than configured now -
  and for checkpoints behind the video's stored frame manifest. The last catch runs that failed
  for good (e.g. a frame source outage longer than the assets' retries): the sensor never asks
  again for a signature it has requested once (its run key exists), so without this a video whose
  run failed would keep its old checkpoint until its files change.

No ``from __future__ import annotations`` here: Dagster reads the parameter annotations.
"""

import dagster as dg

from assets.video_steps import stored_manifest
from assets.videos import VIDEOS_PARTITIONS, run_config_for
from pipelines.event_sensor import video_event_sensor
from pipelines.jobs import video_pipeline
from pipelines.sensor import video_sensor
from resources.checkpoints.store import published_key
from resources.checkpoints.video_job import plan_digest
from resources.dagster_resources import CheckpointStoreResource, EncoderResource
from resources.embedding.patches import PatchConfig
from resources.settings import patch_config_from_env


def stale_reason(metadata: dict, model_id: str | None, patch_fingerprint: str) -> str | None:
    """Why a checkpoint with ``metadata`` no longer matches the configuration, if it does not."""
    if model_id is not None and metadata.get("model_id") != model_id:
        return f"model {metadata.get('model_id')} -> {model_id}"
    if metadata.get("patch_config") != patch_fingerprint:
        return f"patch settings {metadata.get('patch_config')} -> {patch_fingerprint}"
    return None


def behind_manifest(metadata: dict, store: CheckpointStoreResource, video_id: int, patch_config: PatchConfig) -> str | None:
    """Why a checkpoint lags the video's stored frame manifest, if it does.

    ``frame_manifest`` stores the frames it listed before ``frame_embeddings`` embeds them, so a
    run that failed after listing (the frame source went down) leaves a manifest whose chunking
    plan differs from the checkpoint's: exactly the check ``embed_video`` makes to decide whether
    to embed again.
    """
    refs = stored_manifest(store, video_id)
    if refs is None:
        return None
    plan = plan_digest(refs, str(metadata.get("model_id")), patch_config, store.chunk_frames)
    return None if plan == metadata.get("plan") else "checkpoint behind its frame manifest (a run did not finish)"


@dg.schedule(
    job=video_pipeline, cron_schedule="0 3 * * *", default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        "Nightly at 03:00: runs every registered video whose checkpoint is missing, was made by "
        "another model or other patch settings, or lags the frames its last run listed."
    ),
)
def reconcile_schedule(
    context: dg.ScheduleEvaluationContext, encoder: EncoderResource, store: CheckpointStoreResource
) -> list[dg.RunRequest]:
    """Nightly: run every partition whose checkpoint is missing, stale or behind its manifest."""
    patch_config = patch_config_from_env()
    model_id, patches = encoder.expected_model_id(), patch_config.fingerprint()
    requests = []
    checkpoints = store.store()  # a folder or s3:// (CHECKPOINT_DIR)
    published = checkpoints.published()  # one listing, not a request per video
    for key in context.instance.get_dynamic_partitions(VIDEOS_PARTITIONS):
        reason: str | None
        if int(key) not in published:
            reason = "no checkpoint"
        else:
            metadata = checkpoints.read_metadata(published_key(int(key)))  # the footer only
            reason = stale_reason(metadata, model_id, patches) or behind_manifest(metadata, store, int(key), patch_config)
        if reason:
            context.log.info(f"video {key}: {reason}")
            requests.append(dg.RunRequest(
                partition_key=key, tags={"framesearch/reason": reason[:200]}, run_config=run_config_for(f"video {key}: {reason}"),
            ))
    return requests


__all__ = ["reconcile_schedule", "video_event_sensor", "video_pipeline", "video_sensor"]  # what definitions.py wires
