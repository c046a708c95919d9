"""Per-video assets, partitioned by video_id: frame manifest -> embeddings checkpoint -> index.

Each asset body is a loop over the run's partitions (a backfill may hand one run several videos,
with the model loaded once), calling resources and pure functions and reporting what it did.

No ``from __future__ import annotations`` here: Dagster reads the parameter annotations at
decoration time to find config and resources.
"""

import json
import time
from typing import NoReturn

import dagster as dg
import numpy as np
import pyarrow.parquet as pq

from resources.checkpoint import published_path, vectors
from resources.encoder_resource import EncoderResource
from resources.frame_sources import FrameRef, FrameSourceError
from resources.pipeline_resources import CheckpointStoreResource, FrameSourceResource, IndexResource
from resources.settings import max_image_pixels_from_env, patch_config_from_env
from resources.video_embedding import NoUsableFrameError, SourceUnavailableError, embed_video

videos_partitions = dg.DynamicPartitionsDefinition(name="videos")
SIGNATURE_TAG = "framesearch/signature"
# One run may take several videos of a backfill: the model loads once per run, not per video.
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=8)


def _retry_later(context: dg.AssetExecutionContext, frames: FrameSourceResource, message: str, cause: Exception) -> NoReturn:
    """Fail the step for a frame-source failure that may pass, asking Dagster to retry it.

    The step is retried after each of ``frames.outage_retry_waits_s`` (a short outage heals
    inside the run; a re-run resumes from the chunks on disk), then fails. Only these failures
    are retried: a permanent problem (bad manifest, no usable frame) or a bug fails at once,
    which a blanket ``dg.RetryPolicy`` would retry too.
    """
    waits, attempt = frames.outage_retry_waits_s, context.retry_number
    if attempt < len(waits):
        context.log.warning(f"{message}; retry {attempt + 1}/{len(waits)} in {waits[attempt]:g} s")
        raise dg.RetryRequested(max_retries=len(waits), seconds_to_wait=waits[attempt]) from cause
    raise dg.Failure(f"{message} (retried {attempt} times)" if attempt else message, allow_retries=False) from cause


def _video_ids(context: dg.AssetExecutionContext) -> list[int]:
    return [int(key) for key in context.partition_keys]


def _per_video(results: dict[int, dict]) -> dict[str, object]:
    """Metadata for the run: the figures of a single video, or totals plus a per-video table."""
    if len(results) == 1:
        return next(iter(results.values()))
    totals: dict[str, object] = {"videos": len(results)}
    for key in ("frames", "patches", "frames_skipped", "points"):
        values = [r[key] for r in results.values() if isinstance(r.get(key), int)]
        if values:
            totals[key] = sum(values)
    totals["per_video"] = dg.MetadataValue.json({str(k): {n: v for n, v in r.items() if not isinstance(v, dg.MetadataValue)} for k, r in results.items()})
    return totals


@dg.asset(
    partitions_def=videos_partitions,
    backfill_policy=BACKFILL,
    description="The video's frames: frame_id, timestamp_ms and URL, from its folder or manifest.",
)
def frame_manifest(
    context: dg.AssetExecutionContext, frames: FrameSourceResource, store: CheckpointStoreResource
) -> dg.MaterializeResult:
    source = frames.source()
    signature = context.run.tags.get(SIGNATURE_TAG)
    results = {}
    for video_id in _video_ids(context):
        try:
            refs = source.manifest(video_id)
        except FrameSourceError as exc:
            if exc.transient:
                _retry_later(context, frames, f"video {video_id}: {exc}", exc)
            raise dg.Failure(f"video {video_id}: {exc}", allow_retries=False) from exc
        path = store.manifest_path(video_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"video_id": video_id, "source": source.describe(), "signature": signature, "frames": [[r.frame_id, r.timestamp_ms, r.url] for r in refs]}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(path)
        results[video_id] = {"frames": len(refs), "source": source.describe(), "manifest": str(path)}
    return dg.MaterializeResult(metadata=_per_video(results))


def stored_manifest(store: CheckpointStoreResource, video_id: int) -> list[FrameRef] | None:
    """The frames the last successful ``frame_manifest`` wrote for the video; None before any."""
    path = store.manifest_path(video_id)
    if not path.is_file():
        return None
    return [FrameRef(int(f), t, u) for f, t, u in json.loads(path.read_text())["frames"]]


def _read_manifest(store: CheckpointStoreResource, video_id: int) -> list[FrameRef]:
    refs = stored_manifest(store, video_id)
    if refs is None:
        path = store.manifest_path(video_id)
        raise dg.Failure(f"video {video_id}: no frame manifest at {path}; materialize frame_manifest first", allow_retries=False)
    return refs


@dg.asset(
    partitions_def=videos_partitions,
    backfill_policy=BACKFILL,
    deps=[frame_manifest],
    check_specs=[
        dg.AssetCheckSpec("rows_match_manifest", asset="frame_embeddings", description="checkpoint rows = manifest frames - skipped"),
        dg.AssetCheckSpec("vectors_finite_unit_norm", asset="frame_embeddings", description="every vector finite with norm 1"),
    ],
    description="Global and patch OpenCLIP vectors of every usable frame: the video's Parquet checkpoint.",
)
def frame_embeddings(
    context: dg.AssetExecutionContext,
    frames: FrameSourceResource,
    encoder: EncoderResource,
    store: CheckpointStoreResource,
) -> dg.MaterializeResult:
    source, frame_encoder = frames.source(), encoder.encoder
    info = frame_encoder.info
    if info.weights_random:
        context.log.warning(f"RANDOM weights ({info.model_id}): vectors carry no meaning. {encoder.fallback_reason or ''}")
    elif encoder.fallback_reason:
        context.log.warning(f"configured weights unavailable, using the offline model {info.model_id}: {info.provenance.description}")
    patch_config, max_pixels = patch_config_from_env(), max_image_pixels_from_env()
    results, rows_ok, norms_ok, problems = {}, True, True, []
    for video_id in _video_ids(context):
        refs = _read_manifest(store, video_id)
        started = time.perf_counter()
        try:
            report = embed_video(
                video_id, refs, source, frame_encoder, store.path, patch_config, max_pixels, store.chunk_frames,
                on_chunk=lambda done, total, v=video_id: context.log.info(f"video {v}: chunk {done}/{total}"),
            )
        except NoUsableFrameError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
        except SourceUnavailableError as exc:
            # Nothing was published, so index_sync does not run and the index keeps the video's
            # previous points: an outage never shrinks a video.
            _retry_later(context, frames, str(exc), exc)
        seconds = time.perf_counter() - started
        for frame_id, reason in sorted(report.skipped.items()):
            context.log.warning(f"video {video_id}: skipped frame {frame_id}: {reason}")
        table = pq.read_table(report.checkpoint, columns=["global_vector", "patch_vectors"])
        if table.num_rows != len(refs) - len(report.skipped):
            rows_ok = False
            problems.append(f"video {video_id}: {table.num_rows} rows, manifest {len(refs)} - skipped {len(report.skipped)}")
        for column in ("global_vector", "patch_vectors"):
            array = table.column(column).combine_chunks()
            flat = vectors(array if column == "global_vector" else array.flatten(), info.embed_dim)
            if not (np.isfinite(flat).all() and np.allclose(np.linalg.norm(flat, axis=1), 1.0, atol=1e-3)):
                norms_ok = False
                problems.append(f"video {video_id}: {column} not finite unit vectors")
        results[video_id] = {
            "frames": report.frames,
            "patches": report.patches,
            "frames_skipped": len(report.skipped),
            "skipped": dg.MetadataValue.json({str(k): v for k, v in report.skipped.items()}),
            "seconds": {k: round(v, 3) for k, v in report.seconds.items()},
            "frames_per_s": round(report.frames / seconds, 3) if seconds else 0.0,
            "chunks": report.chunks_total,
            "chunks_resumed": report.chunks_resumed,
            "up_to_date": report.up_to_date,
            "images_encoded": report.images_encoded,
            "model_id": report.model_id,
            "weights_random": info.weights_random,
            "weights_kind": info.provenance.kind,
            "weights_description": info.provenance.description,
            "checkpoint": report.checkpoint,
            "checkpoint_version": report.version,
        }
    version = results[next(iter(results))]["checkpoint_version"] if len(results) == 1 else None
    return dg.MaterializeResult(
        metadata=_per_video(results),
        data_version=dg.DataVersion(str(version)) if version else None,
        check_results=[
            dg.AssetCheckResult(check_name="rows_match_manifest", passed=rows_ok, metadata={"problems": "; ".join(problems) or "none"}),
            dg.AssetCheckResult(check_name="vectors_finite_unit_norm", passed=norms_ok),
        ],
    )


@dg.asset(
    partitions_def=videos_partitions,
    backfill_policy=BACKFILL,
    deps=[frame_embeddings],
    check_specs=[dg.AssetCheckSpec("points_match_checkpoint", asset="index_sync", description="index points of the video = checkpoint rows")],
    description="The video's frames in the vector index, equal to its checkpoint.",
)
def index_sync(
    context: dg.AssetExecutionContext, index: IndexResource, store: CheckpointStoreResource
) -> dg.MaterializeResult:
    results, passed, notes = {}, True, []
    for video_id in _video_ids(context):
        path = published_path(store.path, video_id)
        if not path.is_file():
            raise dg.Failure(f"video {video_id}: no checkpoint at {path}; materialize frame_embeddings first")
        schema = pq.read_schema(path)
        dim, rows = schema.field("global_vector").type.list_size, pq.read_metadata(path).num_rows
        result = index.sync_or_defer(dim, video_id, path)
        if result is None:
            notes.append(f"video {video_id}: the embedded index is held by another process; its follower applies the checkpoint")
            results[video_id] = {"points": rows, "deferred": True}
            continue
        if result.indexed != rows:
            passed = False
            notes.append(f"video {video_id}: {result.indexed} points in the index, checkpoint {rows} rows")
        results[video_id] = {
            "points": result.indexed, "upserted": result.upserted, "deleted": result.deleted,
            "unchanged": result.skipped, "deferred": False, "seconds": round(result.seconds, 3),
            "checkpoint_version": result.version,
        }
    for note in notes:
        context.log.info(note)
    return dg.MaterializeResult(
        metadata=_per_video(results),
        check_results=[
            dg.AssetCheckResult(
                check_name="points_match_checkpoint", passed=passed,
                severity=dg.AssetCheckSeverity.ERROR, metadata={"notes": "; ".join(notes) or "none"},
            )
        ],
    )
