"""What each video's materializations say, as typed Dagster metadata a person can read.

Every value is one Dagster knows how to show: flat floats per stage (the asset page plots them
across materializations), paths, a table of skipped frames with their reasons and a short
markdown summary. A re-run that found the checkpoint up to date says so and records no stage
timings, so the plots keep the last real run's figures instead of a row of zeros.

Two JSON values stay for programs: ``skipped`` (``{frame_id: reason}``) and ``seconds``
(``{stage: s}``) are what the search service's ingest endpoints read from a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from resources.checkpoints.video_job import EmbedReport
from resources.embedding.encoder import EncoderInfo
from resources.vector_index import SyncResult

SKIPPED_TABLE_ROWS = 200  # a table is for reading: the full list is in the run's log and `skipped`
SKIPPED_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn("frame_id", "int"), dg.TableColumn("reason", "string")]
)


def manifest_metadata(frames: int, source: str, path: str, signature: str | None) -> dict[str, Any]:
    """``frame_manifest``: how many frames the source lists and where the listing was stored."""
    return {
        "frames": frames,
        "source": source,
        "manifest": dg.MetadataValue.path(path),
        "signature": signature or "-",
    }


def skipped_table(skipped: Mapping[int, str]) -> dg.TableMetadataValue:
    """The skipped frames as a table (frame_id, reason), the first rows when there are many."""
    rows = [dg.TableRecord({"frame_id": k, "reason": v}) for k, v in sorted(skipped.items())[:SKIPPED_TABLE_ROWS]]
    return dg.MetadataValue.table(rows, schema=SKIPPED_SCHEMA)


def embeddings_metadata(report: EmbedReport, info: EncoderInfo, wall_s: float) -> dict[str, Any]:
    """``frame_embeddings``: the video's own figures; timings only when this run embedded."""
    meta: dict[str, Any] = {
        "frames": report.frames,
        "patches": report.patches,
        "frames_skipped": len(report.skipped),
        "frames_dropped": len(report.dropped),  # near-duplicates of a kept frame (video files)
        "skipped_frames": skipped_table(report.skipped),
        "skipped": dg.MetadataValue.json({str(k): v for k, v in sorted(report.skipped.items())}),
        "up_to_date": report.up_to_date,
        "model_id": report.model_id,
        "weights_random": info.weights_random,
        "weights_kind": info.provenance.kind,
        "weights_description": info.provenance.description,
        "checkpoint": dg.MetadataValue.path(report.checkpoint),
        "checkpoint_version": report.version,
    }
    if not report.up_to_date:
        meta.update({f"seconds_{stage}": round(seconds, 4) for stage, seconds in report.seconds.items()})
        meta.update({
            "seconds": dg.MetadataValue.json({k: round(v, 4) for k, v in report.seconds.items()}),
            "seconds_total": round(wall_s, 4),
            "frames_per_s": round(report.frames / wall_s, 3) if wall_s > 0 else 0.0,
            "chunks": report.chunks_total,
            "chunks_resumed": report.chunks_resumed,
            "images_encoded": report.images_encoded,
        })
    meta["summary"] = dg.MetadataValue.md(_embed_summary(report, info, wall_s))
    return meta


def _embed_summary(report: EmbedReport, info: EncoderInfo, wall_s: float) -> str:
    video = f"**Video {report.video_id}**"
    if report.up_to_date:
        head = (
            f"{video}: up to date, nothing embedded. The checkpoint (version `{report.version}`) already "
            f"matches these frames, model and patch settings; the timings of the run that made it are on "
            f"its earlier materialization."
        )
    else:
        resumed = f", {report.chunks_resumed} of {report.chunks_total} chunks resumed" if report.chunks_resumed else ""
        head = (
            f"{video}: embedded {report.frames} frames ({report.patches} patches) in {wall_s:.2f} s"
            f"{resumed}; checkpoint version `{report.version}`."
        )
    lines = [head, "", f"Model `{report.model_id}` ({info.provenance.kind}): {info.provenance.description}"]
    if info.weights_random:
        lines.append("\n**Random weights: these vectors carry no meaning.**")
    if report.skipped:
        lines.append(f"\n{len(report.skipped)} frame(s) skipped; see the `skipped_frames` table.")
    if report.dropped:
        lines.append(f"\n{len(report.dropped)} near-duplicate frame(s) dropped (each stands with the kept frame before it).")
    return "\n".join(lines)


def sync_metadata(video_id: int, rows: int, result: SyncResult | None) -> dict[str, Any]:
    """``index_sync``: what the sync changed, or that the process holding the index will apply it."""
    if result is None:
        return {
            "deferred": True,
            "checkpoint_rows": rows,
            "summary": dg.MetadataValue.md(
                f"**Video {video_id}**: sync deferred. The embedded index is held by another process "
                f"(the search service); its checkpoint follower applies the checkpoint's {rows} rows within "
                f"seconds. Nothing was counted in this run."
            ),
        }
    return {
        "deferred": False,
        "points": result.indexed,  # counted in the index after the sync
        "checkpoint_rows": rows,
        "upserted": result.upserted,
        "deleted": result.deleted,
        "unchanged": result.skipped,
        "seconds": round(result.seconds, 4),
        "checkpoint_version": result.version,
        "summary": dg.MetadataValue.md(
            f"**Video {video_id}**: "
            + ("the index already held this checkpoint version" if result.skipped else f"{result.upserted} points upserted, {result.deleted} deleted")
            + f"; {result.indexed} points in the index for {rows} checkpoint rows."
        ),
    }


def failure_metadata(video_id: int, stage: str, reason: str) -> dict[str, Any]:
    """What a failed video's materialization failure records (shown on its partition)."""
    return {"video_id": video_id, "stage": stage, "reason": dg.MetadataValue.md(f"**Video {video_id}** failed at {stage}: {reason}")}
