"""Per-video assets, partitioned by video_id: frame manifest -> embeddings checkpoint -> index.

The three assets are materialized by one step (``video_assets``), which takes the run's videos
as one stream (a backfill hands one run up to VIDEOS_PER_RUN; the model loads once per run, the
next videos are read while the current ones are encoded). Each video
is its own record: its partitions get their own materializations, figures and check results,
logged per partition (``assets/video_runs.py``, ``assets/video_steps.py``); a video that fails leaves its partitions
unmaterialized - so Dagster marks them failed when the run ends - while the run's other videos
materialize, index and show as such. The step fails at the end, naming each failed video and why.

The step runs in the ``framesearch_embedding`` pool (see README): embedding is what the machine
is short of (the cores or a GPU), and an embedded index takes one writer at a time.

No ``from __future__ import annotations`` here: Dagster reads the parameter annotations at
decoration time to find config and resources.
"""

import hashlib
import warnings

import dagster as dg

from assets.video_runs import run_videos
from assets.video_steps import (
    EMBEDDINGS,
    INDEX,
    MANIFEST,
    NORMS_CHECK,
    POINTS_CHECK,
    ROWS_CHECK,
    PipelineParts,
    VideoFailure,
)
from resources.dagster_resources import CheckpointStoreResource, EncoderResource, FrameSourceResource, IndexResource
from resources.settings import encoder_config_from_env, max_image_pixels_from_env, patch_config_from_env, videos_per_run_from_env

VIDEOS_PARTITIONS = "videos"  # the partitions definition's name, typed as the str it is
videos_partitions = dg.DynamicPartitionsDefinition(name=VIDEOS_PARTITIONS)
SIGNATURE_TAG = "framesearch/signature"  # a one-video sensor run: the signature it was requested for
BATCH_TAG = "framesearch/batch"  # a sensor run of several new videos: their signatures are in its config
POOL = "framesearch_embedding"
# A backfill run takes up to VIDEOS_PER_RUN videos: the run's start-up and the model load are paid
# once for all of them, and its videos stream through one encoder (assets/video_steps.py).
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=videos_per_run_from_env())
OWNERS = ["team:framesearch"]
GROUP = "videos"

# Bump when a change of the embedding code changes the vectors it writes.
EMBEDDING_CODE_REVISION = "2"


def embedding_code_version() -> str:
    """frame_embeddings' code version: what its checkpoints depend on besides the frames - the
    configured model and weights, global view and crop settings, the patch settings and the
    embedding code's revision. Changing any of them shows every partition stale in the UI ("code
    version changed"); the reconcile schedule re-runs them (it compares each checkpoint's own
    footer, so a machine that fell back to the offline model is judged by what it really used)."""
    encoder = encoder_config_from_env()
    parts = (EMBEDDING_CODE_REVISION, encoder.model, encoder.pretrained, encoder.global_resize, patch_config_from_env().fingerprint())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


CODE_VERSION = embedding_code_version()

SPECS = [
    dg.AssetSpec(
        MANIFEST, group_name=GROUP, owners=OWNERS, kinds={"json"}, skippable=True, partitions_def=videos_partitions,
        tags={"storage": "checkpoint-store"},
        description="The video's frames (frame_id, timestamp_ms, URL) listed from its folder or manifest, "
        "stored as JSON under CHECKPOINT_DIR/manifests/.",
    ),
    dg.AssetSpec(
        EMBEDDINGS, deps=[MANIFEST], group_name=GROUP, owners=OWNERS, kinds={"pytorch", "parquet"}, skippable=True,
        partitions_def=videos_partitions, code_version=CODE_VERSION, tags={"storage": "checkpoint-store", "compute": "encoder"},
        description="Global and patch OpenCLIP vectors of every usable frame: the video's Parquet checkpoint "
        "CHECKPOINT_DIR/video_<id>.parquet, published only when its checks pass.",
    ),
    dg.AssetSpec(
        INDEX, deps=[EMBEDDINGS], group_name=GROUP, owners=OWNERS, kinds={"qdrant"}, skippable=True,
        partitions_def=videos_partitions, tags={"storage": "vector-index"},
        description="The video's points in the vector index, equal to its checkpoint (or deferred to the "
        "process holding the embedded index, whose follower applies it).",
    ),
]
# Partitioned checks (each video's own check results) are a preview feature in Dagster 1.13, and
# BackfillPolicy is beta: both used on purpose, so their warnings are not repeated at every load.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, module=__name__)
warnings.filterwarnings("ignore", category=dg.BetaWarning, module=__name__)
CHECKS = [
    dg.AssetCheckSpec(ROWS_CHECK, asset=EMBEDDINGS, partitions_def=videos_partitions, description="checkpoint rows = manifest frames - skipped frames"),
    dg.AssetCheckSpec(NORMS_CHECK, asset=EMBEDDINGS, partitions_def=videos_partitions, description="every vector finite with norm 1"),
    dg.AssetCheckSpec(
        POINTS_CHECK, asset=INDEX, partitions_def=videos_partitions,
        description="the video's points counted in the index after the sync = checkpoint rows (a deferred sync warns: not counted)",
    ),
]


class VideoRunConfig(dg.Config):
    """Run config of ``video_assets``: why the run was requested (the sensor and the reconcile
    schedule fill it in; it shows in the run's config and in ``dagster sensor preview``) and, for
    a sensor's run of several new videos, the source signature each was requested for."""

    reason: str = ""
    signatures: dict[str, str] = {}


def run_config_for(reason: str, signatures: dict[str, str] | None = None) -> dict:
    """Run config that records ``reason`` (and each video's signature) for a run of the pipeline."""
    config: dict[str, object] = {"reason": reason}
    if signatures:
        config["signatures"] = signatures
    return {"ops": {"video_assets": {"config": config}}}


def _signatures(context: dg.AssetExecutionContext, config: VideoRunConfig) -> dict[int, str]:
    """The source signature each video of the run was requested for (sensor runs; none otherwise)."""
    if config.signatures:
        return {int(k): v for k, v in config.signatures.items()}
    tag = context.run.tags.get(SIGNATURE_TAG)
    return {int(context.partition_key): tag} if tag else {}


def _done_in_this_run(context: dg.AssetExecutionContext) -> set[str]:
    """Partitions whose index_sync an earlier attempt of this step already materialized (a retry
    after a source outage takes only the videos that did not finish)."""
    if context.retry_number == 0:
        return set()
    records = context.instance.get_records_for_run(context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    return {
        r.event_log_entry.dagster_event.partition
        for r in records
        if r.event_log_entry.dagster_event and r.event_log_entry.dagster_event.asset_key == INDEX
    }


def _fail_step(context: dg.AssetExecutionContext, frames: FrameSourceResource, failed: list[VideoFailure]) -> None:
    """End the step for the videos that failed: retry it if they all failed in a way that may pass
    (a source outage; the retry takes only them), else fail it naming each video and why."""
    waits, attempt = frames.outage_retry_waits_s, context.retry_number
    reasons = "\n".join(f"- video {f.video_id} ({f.stage}): {f.reason}" for f in failed)
    if all(f.transient for f in failed) and attempt < len(waits):
        context.log.warning(f"{len(failed)} video(s) hit a source outage; retry {attempt + 1}/{len(waits)} in {waits[attempt]:g} s:\n{reasons}")
        raise dg.RetryRequested(max_retries=len(waits), seconds_to_wait=waits[attempt])
    retried = f" (retried {attempt} times)" if attempt else ""
    raise dg.Failure(
        description=f"{len(failed)} video(s) failed{retried}; the run's other videos were materialized:\n{reasons}",
        metadata={"failed_videos": dg.MetadataValue.json({str(f.video_id): f"{f.stage}: {f.reason}" for f in failed})},
        allow_retries=False,
    )


@dg.multi_asset(
    name="video_assets",
    specs=SPECS,
    check_specs=CHECKS,
    partitions_def=videos_partitions,
    backfill_policy=BACKFILL,
    pool=POOL,
    can_subset=True,  # one asset alone (e.g. index_sync after an index was rebuilt) runs only its stage
    description="Per video: list the frames, embed them into a Parquet checkpoint, sync it to the index.",
)
def video_assets(
    context: dg.AssetExecutionContext,
    config: VideoRunConfig,
    frames: FrameSourceResource,
    encoder: EncoderResource,
    store: CheckpointStoreResource,
    index: IndexResource,
):  # a generator of per-video events; no annotation, Dagster would read it as the outputs' type
    if config.reason:
        context.log.info(f"requested because: {config.reason}")
    frame_encoder = encoder.encoder  # loaded once per run; the resource warns once if it fell back
    done = _done_in_this_run(context)
    videos = [int(key) for key in context.partition_keys if key not in done]
    with index.session(frame_encoder.info.embed_dim) as session:  # the index opened once per run (see IndexResource)
        parts = PipelineParts(
            source=frames.source(), encoder=frame_encoder, store=store, index=session,
            patch_config=patch_config_from_env(), max_pixels=max_image_pixels_from_env(),
            signatures=_signatures(context, config), code_version=CODE_VERSION, instance=context.instance,
            run_id=context.run.run_id, log=context.log.info,
        )
        # Each video's own events as they happen: materializations of its partitions (none for a
        # stage it failed), its check results and, if it failed, an observation saying why.
        failed = yield from run_videos(videos, parts, context.selected_asset_keys, context.selected_asset_check_keys)
    for failure in failed:
        context.log.error(f"video {failure.video_id} failed at {failure.stage}: {failure.reason}")
    if failed:
        _fail_step(context, frames, failed)


ASSETS = [video_assets]
