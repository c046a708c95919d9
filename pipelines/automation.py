"""What starts runs: a sensor for new or changed videos and a schedule that reconciles.

* ``video_sensor`` lists the frame source, adds a ``videos`` partition for each new video and
  requests a run for each video whose signature (its files' names, sizes and mtimes/ETags)
  changed since the last tick. Run keys carry the signature, so an unchanged video is never
  re-run, even if the cursor is lost.
* ``reconcile_schedule`` runs nightly: it requests runs for partitions with no checkpoint, for
  stale ones - checkpoints made by another model or other patch settings than configured now -
  and for checkpoints behind the video's stored frame manifest. The last catch runs that failed
  for good (e.g. a frame source outage longer than the assets' retries): the sensor never asks
  again for a signature it has requested once (its run key exists), so without this a video whose
  run failed would keep its old checkpoint until its files change.

No ``from __future__ import annotations`` here: Dagster reads the parameter annotations.
"""

import base64
import json
import zlib

import dagster as dg

from assets.video_steps import stored_manifest
from assets.videos import ASSETS, SIGNATURE_TAG, videos_partitions
from resources.checkpoint import published_path, read_metadata
from resources.encoder_resource import EncoderResource
from resources.pipeline_resources import CheckpointStoreResource, FrameSourceResource
from resources.patches import PatchConfig
from resources.settings import patch_config_from_env
from resources.video_embedding import plan_digest

video_pipeline = dg.define_asset_job(
    "video_pipeline",
    selection=dg.AssetSelection.assets(*ASSETS),
    executor_def=dg.in_process_executor,
    description="Manifest, embeddings checkpoint and index sync of the selected videos.",
)


def encode_cursor(signatures: dict[int, str]) -> str:
    """The sensor's memory, ``{video_id: signature}``, compressed: ~1 MB for 100,000 videos."""
    return base64.b64encode(zlib.compress(json.dumps(signatures, separators=(",", ":")).encode())).decode()


def decode_cursor(cursor: str | None) -> dict[int, str]:
    if not cursor:
        return {}
    try:
        raw = json.loads(zlib.decompress(base64.b64decode(cursor)))
    except (ValueError, zlib.error):
        return {}  # an unreadable cursor only costs a re-check: run keys stop duplicate runs
    return {int(k): v for k, v in raw.items()}


@dg.sensor(job=video_pipeline, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def video_sensor(context: dg.SensorEvaluationContext, frames: FrameSourceResource) -> dg.SensorResult:
    """Discover new or changed videos under the frame source and run the pipeline for them."""
    listings = frames.source().list_videos()
    seen = decode_cursor(context.cursor)
    known = set(context.instance.get_dynamic_partitions(videos_partitions.name))
    new_keys = [str(v.video_id) for v in listings if str(v.video_id) not in known]
    requests = [
        dg.RunRequest(
            partition_key=str(v.video_id),
            run_key=f"video-{v.video_id}-{v.signature}",
            tags={SIGNATURE_TAG: v.signature},
        )
        for v in listings
        if seen.get(v.video_id) != v.signature
    ]
    context.log.info(f"{len(listings)} videos listed, {len(new_keys)} new, {len(requests)} to run")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[videos_partitions.build_add_request(new_keys)] if new_keys else [],
        cursor=encode_cursor({v.video_id: v.signature for v in listings}),
    )


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


@dg.schedule(job=video_pipeline, cron_schedule="0 3 * * *", default_status=dg.DefaultScheduleStatus.STOPPED)
def reconcile_schedule(
    context: dg.ScheduleEvaluationContext, encoder: EncoderResource, store: CheckpointStoreResource
) -> list[dg.RunRequest]:
    """Nightly: run every partition whose checkpoint is missing, stale or behind its manifest."""
    patch_config = patch_config_from_env()
    model_id, patches = encoder.expected_model_id(), patch_config.fingerprint()
    requests = []
    for key in context.instance.get_dynamic_partitions(videos_partitions.name):
        path = published_path(store.path, int(key))
        if not path.is_file():
            reason = "no checkpoint"
        else:
            metadata = read_metadata(path)
            reason = stale_reason(metadata, model_id, patches) or behind_manifest(metadata, store, int(key), patch_config)
        if reason:
            context.log.info(f"video {key}: {reason}")
            requests.append(dg.RunRequest(partition_key=key, tags={"framesearch/reason": reason[:200]}))
    return requests
