"""One video's stages - manifest, embeddings checkpoint, index sync - as Dagster events.

A :class:`VideoRun` collects a video's events (materializations of its partitions, its check
results, an observation naming why it failed); :mod:`assets.video_runs` takes a run's videos
through the stages with these helpers.
Materializations carry the provenance tags Dagster's own carry (code and data versions, the
manifest they were made from), and check results point at the materialization they judged.

A video's checkpoint is published only after its checks pass (``embed_video``'s ``validate``
hook): the index and its follower never see a video that failed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import dagster as dg
import numpy as np
import pyarrow as pa
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData
from dagster._core.definitions.data_version import (  # the tags Dagster's own materializations carry
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    INPUT_DATA_VERSION_TAG_PREFIX,
    INPUT_EVENT_POINTER_TAG_PREFIX,
)

from assets.metadata import embeddings_metadata, failure_metadata, manifest_metadata, sync_metadata
from resources.checkpoints.format import META_KEY, vectors
from resources.checkpoints.store import manifest_key
from resources.checkpoints.video_job import CheckpointRejected, EmbedReport
from resources.dagster_resources import CheckpointStoreResource
from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig
from resources.frame_sources import FrameRef, FrameSource, FrameSourceError, VideoNotFound
from resources.vector_index.follower import SyncSession

MANIFEST = dg.AssetKey("frame_manifest")
EMBEDDINGS = dg.AssetKey("frame_embeddings")
INDEX = dg.AssetKey("index_sync")
ROWS_CHECK, NORMS_CHECK, POINTS_CHECK = "rows_match_manifest", "vectors_finite_unit_norm", "points_match_checkpoint"
ALL_ASSETS = frozenset({MANIFEST, EMBEDDINGS, INDEX})
ALL_CHECKS = frozenset({
    dg.AssetCheckKey(EMBEDDINGS, ROWS_CHECK), dg.AssetCheckKey(EMBEDDINGS, NORMS_CHECK), dg.AssetCheckKey(INDEX, POINTS_CHECK),
})

Event = dg.AssetMaterialization | dg.AssetCheckEvaluation | dg.AssetObservation


@dataclass
class VideoFailure:
    """Why a video did not finish: the stage, the reason, and whether it may pass (a source outage)."""

    video_id: int
    stage: str
    reason: str
    transient: bool = False


@dataclass
class VideoRun:
    """The events one video produced, in order, and its failure if it did not finish."""

    video_id: int
    checks: AbstractSet[dg.AssetCheckKey] = frozenset(ALL_CHECKS)  # the run's selected checks
    events: list[Event] = field(default_factory=list)
    failure: VideoFailure | None = None
    finished: bool = False  # every selected stage ran (a stage may still have failed: ``failure``)

    def take(self, parts: PipelineParts) -> Iterator[Event]:
        """Yield the events not yet handed out: materializations first, then the selected check
        results, each pointed at the materialization of this run it judged (found once stored),
        which is what the UI's per-partition check status goes by."""
        events, self.events = self.events, []
        yield from (e for e in events if not isinstance(e, dg.AssetCheckEvaluation))
        for check in events:
            if isinstance(check, dg.AssetCheckEvaluation) and check.asset_check_key in self.checks:
                yield _targeted(check, parts)

    def fail(self, stage: str, reason: str, transient: bool = False) -> VideoRun:
        self.failure = VideoFailure(self.video_id, stage, reason, transient)
        # Shown on the partition's event list, next to its earlier materializations.
        self.events.append(dg.AssetObservation(
            asset_key=EMBEDDINGS if stage != "index" else INDEX, partition=str(self.video_id),
            description=f"video {self.video_id} failed at {stage}", metadata=failure_metadata(self.video_id, stage, reason),
        ))
        return self


@dataclass(frozen=True)
class PipelineParts:
    """What every video of a run shares: resources resolved once per run."""

    source: FrameSource
    encoder: FrameEncoder
    store: CheckpointStoreResource
    index: SyncSession  # the run's one opening of the index (IndexResource.session)
    patch_config: PatchConfig
    max_pixels: int
    signatures: Mapping[int, str]  # video -> the source signature the run was requested for (sensor runs)
    code_version: str  # frame_embeddings' code version (assets.videos.embedding_code_version)
    instance: dg.DagsterInstance  # to point each materialization at the manifest it was made from
    run_id: str  # and each check result at the materialization it judged
    log: Callable[[str], None]


def _targeted(check: dg.AssetCheckEvaluation, parts: PipelineParts) -> dg.AssetCheckEvaluation:
    """``check`` pointed at this run's materialization of its asset's partition, if there is one."""
    records = parts.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=check.asset_key, asset_partitions=[str(check.partition)]), limit=1,
    ).records
    if not records or records[0].run_id != parts.run_id:
        return check  # the stage failed: nothing of this run to point at
    target = AssetCheckEvaluationTargetMaterializationData(
        storage_id=records[0].storage_id, run_id=records[0].run_id, timestamp=records[0].timestamp,
    )
    return dg.AssetCheckEvaluation(
        asset_key=check.asset_key, check_name=check.check_name, passed=check.passed, metadata=check.metadata,
        target_materialization_data=target, severity=check.severity, description=check.description, partition=check.partition,
    )


def _check(asset: dg.AssetKey, name: str, video_id: int, passed: bool, description: str, **kwargs: object) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(asset_key=asset, check_name=name, passed=passed, partition=str(video_id), description=description, **kwargs)  # type: ignore[arg-type]


def write_manifest(store: CheckpointStoreResource, video_id: int, source: str, signature: str | None, refs: list[FrameRef]) -> str:
    """Store the frames listed for the video (atomically); the sensor and the schedule read it."""
    body = {"video_id": video_id, "source": source, "signature": signature, "frames": [[r.frame_id, r.timestamp_ms, r.url] for r in refs]}
    checkpoints, key = store.store(), manifest_key(video_id)  # a folder or s3:// (CHECKPOINT_DIR)
    checkpoints.write_json(key, body)
    return checkpoints.uri(key)


def validator(video: VideoRun, refs: list[FrameRef], dim: int) -> Callable[[pa.Table], None]:
    """The checks of a finished checkpoint, evaluated before it is published."""

    def validate(table: pa.Table) -> None:
        footer = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
        # Near-duplicate frames of a video file are dropped on purpose: neither rows nor skips.
        skipped, dropped = footer.get("skipped") or {}, footer.get("dropped") or {}
        expected = len(refs) - len(skipped) - len(dropped)
        rows_ok = table.num_rows == expected
        bad = []
        for column in ("global_vector", "patch_vectors"):
            array = table.column(column).combine_chunks()
            flat = vectors(array if column == "global_vector" else array.flatten(), dim)
            if not (np.isfinite(flat).all() and np.allclose(np.linalg.norm(flat, axis=1), 1.0, atol=1e-3)):
                bad.append(column)
        video.events.append(_check(
            EMBEDDINGS, ROWS_CHECK, video.video_id, rows_ok,
            f"{table.num_rows} rows; manifest {len(refs)} frames - {len(skipped)} skipped - {len(dropped)} dropped = {expected}",
        ))
        video.events.append(_check(
            EMBEDDINGS, NORMS_CHECK, video.video_id, not bad,
            "every vector finite with norm 1" if not bad else f"not finite unit vectors: {', '.join(bad)}",
        ))
        if not rows_ok or bad:
            raise CheckpointRejected(f"checkpoint failed its checks ({'rows' if not rows_ok else ''} {' '.join(bad)}); not published")

    return validate


def stored_manifest(store: CheckpointStoreResource, video_id: int) -> list[FrameRef] | None:
    """The frames the last ``frame_manifest`` materialization wrote for the video; None before any."""
    body = stored_manifest_body(store, video_id)
    return None if body is None else [FrameRef(int(f), t, u) for f, t, u in body["frames"]]


def stored_manifest_body(store: CheckpointStoreResource, video_id: int) -> dict | None:
    """The stored manifest file (video_id, source, signature, frames); None before any."""
    return store.store().read_json(manifest_key(video_id))


def compact_ingest_batches(video_id: int, parts: PipelineParts) -> None:
    """Merge the video's settled ingest batches (HTTP ingests) into one before listing it: the run
    is the one writer that removes batches, and each listing reads them all. Housekeeping only - a
    source that cannot be written (read-only credentials) leaves them for next time; an outage
    (a transient error) is raised, as the listing that follows would meet it too."""
    try:
        removed = parts.source.compact_batches(video_id)
    except VideoNotFound:
        return  # the listing says so
    except FrameSourceError as exc:
        if exc.transient:
            raise
        parts.log(f"video {video_id}: ingest batches not compacted ({exc})")
        return
    if removed:
        parts.log(f"video {video_id}: compacted {removed + 1} ingest batches into one")


def record_manifest(video: VideoRun, refs: list[FrameRef], parts: PipelineParts) -> None:
    """Store the video's listed frames and record them as its frame_manifest materialization."""
    signature = parts.signatures.get(video.video_id)
    path = write_manifest(parts.store, video.video_id, parts.source.describe(), signature, refs)
    video.events.append(dg.AssetMaterialization(
        asset_key=MANIFEST, partition=str(video.video_id), metadata=manifest_metadata(len(refs), parts.source.describe(), path, signature),
        tags={DATA_VERSION_TAG: manifest_version(refs)},
    ))


def manifest_version(refs: list[FrameRef]) -> str:
    """frame_manifest's data version: a digest of the frames listed."""
    digest = hashlib.sha256()
    for ref in refs:
        digest.update(f"{ref.frame_id},{ref.timestamp_ms},{ref.url}\n".encode())
    return digest.hexdigest()[:16]


def _provenance(parts: PipelineParts, video_id: int, report_version: str) -> dict[str, str]:
    """Data-version tags of a frame_embeddings materialization: its checkpoint's content version,
    the code version it was made under and the manifest materialization it was made from, so the
    UI can tell a partition fresh from stale (a new code version, or a newer manifest)."""
    tags = {DATA_VERSION_TAG: report_version, CODE_VERSION_TAG: parts.code_version}
    records = parts.instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=MANIFEST, asset_partitions=[str(video_id)]), limit=1).records
    if records:
        record = records[0]
        version = (record.asset_materialization.tags or {}).get(DATA_VERSION_TAG) if record.asset_materialization else None
        tags[f"{INPUT_DATA_VERSION_TAG_PREFIX}/{MANIFEST.to_user_string()}"] = version or "INITIAL"
        tags[f"{INPUT_EVENT_POINTER_TAG_PREFIX}/{MANIFEST.to_user_string()}"] = str(record.storage_id)
    return tags


def record_embeddings(video: VideoRun, report: EmbedReport, wall_s: float, parts: PipelineParts) -> None:
    """The video's published checkpoint as a frame_embeddings materialization (its checks were
    recorded by the validator before it was published)."""
    for frame_id, reason in sorted(report.skipped.items()):
        parts.log(f"video {video.video_id}: skipped frame {frame_id}: {reason}")
    video.events.append(dg.AssetMaterialization(
        asset_key=EMBEDDINGS, partition=str(video.video_id),
        metadata=embeddings_metadata(report, parts.encoder.info, wall_s),
        tags=_provenance(parts, video.video_id, report.version),
    ))


def sync(video: VideoRun, rows: int, parts: PipelineParts) -> None:
    """Make the video's index points equal to its published checkpoint (or defer to the index's holder)."""
    video_id = video.video_id
    try:
        # From the store (a folder or S3), read once: the version synced is the rows' own.
        result = parts.index.sync_or_defer(video_id, parts.store.store())
    except Exception as exc:  # noqa: BLE001 - the index failing for one video must not hide the others
        video.fail("index", f"video {video_id}: {type(exc).__name__}: {exc}")
        return
    video.events.append(dg.AssetMaterialization(asset_key=INDEX, partition=str(video_id), metadata=sync_metadata(video_id, rows, result)))
    if result is None:
        # Not a pass: nothing was counted. The follower of the process holding the index applies it.
        video.events.append(_check(
            INDEX, POINTS_CHECK, video_id, False, "deferred: the index is held by another process; not counted in this run",
            severity=dg.AssetCheckSeverity.WARN, metadata={"deferred": True, "checkpoint_rows": rows},
        ))
    else:
        video.events.append(_check(
            INDEX, POINTS_CHECK, video_id, result.indexed == rows, f"{result.indexed} points in the index, checkpoint {rows} rows",
            metadata={"deferred": False, "points": result.indexed, "checkpoint_rows": rows},
        ))
