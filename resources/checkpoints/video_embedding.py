"""Embed one video's frames into a checkpoint, in chunks that survive a crash.

The frames of a manifest are cut into fixed chunks of ``chunk_frames`` frames. Each chunk is
fetched, decoded, embedded and written to ``<store>/_work/video_<id>/chunk_<n>.parquet`` on its
own (atomically); a re-run skips every chunk already on disk and embeds only the rest. When all
chunks exist they are concatenated into the published checkpoint ``<store>/video_<id>.parquet``
(atomically, with its content version) and the work folder is removed.

Chunks belong to a *plan*: the manifest's frames plus the model and patch settings. A different
plan (frames added, model changed) discards the old chunks instead of mixing them. Because an
interrupted and an uninterrupted run cut the same chunks and the encoder batches within a chunk,
both produce the same vectors bit for bit.

Frames of video files are decoded in one streaming pass per chunk (:func:`iter_frames`), and
near-duplicates among them are dropped before the encoder (:mod:`resources.checkpoints.dedup`, DEDUP_THRESHOLD;
the check starts afresh in every chunk, so a resumed run drops exactly what an uninterrupted one
does). Dropped frames are no rows: the checkpoint's footer lists them (``dropped``: frame_id ->
the kept frame_id) with the span each kept frame now stands for (``span_end_ms``).

Only permanent read failures (missing object, refused URL, over the byte limit, not an image) are
recorded as skipped frames. A transient one (connection refused, timeout, 5xx, throttling, local
I/O error) that survived the client's own retries stops the run at once with
:class:`SourceUnavailableError`: a skip written into a chunk would be kept by every later run of
the same plan, and an endpoint that is down would otherwise cost a timeout per frame.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from resources.checkpoints.dedup import DedupConfig, NearDuplicateFilter, credit_spans, dedup_config_from_env
from resources.checkpoints.format import META_KEY, FrameRecord, records_to_table
from resources.checkpoints.store import CheckpointStore, published_key
from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig, plan_patches
from resources.frame_sources import DecodedFrame, FrameReadError, FrameRef, FrameSource, is_video_frame_url, iter_frames
from resources.frame_sources.images import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    import torch

DEFAULT_CHUNK_FRAMES = 64


class NoUsableFrameError(RuntimeError):
    """Every frame of the video was skipped; the message lists why."""


class SourceUnavailableError(RuntimeError):
    """A frame could not be read for a reason that may pass; retry the run later.

    Chunks finished before it stay on disk, the failing chunk is not written and no checkpoint is
    published, so a re-run embeds exactly the unfinished chunks.
    """


@dataclass
class EmbedReport:
    """What embedding one video did, for the materialization's metadata."""

    video_id: int
    frames: int = 0  # rows in the checkpoint
    patches: int = 0
    skipped: dict[int, str] = field(default_factory=dict)  # frame_id -> reason
    dropped: dict[int, int] = field(default_factory=dict)  # near-duplicate frame_id -> the kept frame_id it was dropped for
    span_end_ms: dict[int, int] = field(default_factory=dict)  # kept frame_id -> end of its span, when it absorbed dropped frames
    chunks_total: int = 0
    chunks_resumed: int = 0  # chunks found on disk from an earlier, interrupted run
    images_encoded: int = 0  # model inputs this run (global views + patch crops)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("fetch", "decode", "dedup", "patch_plan", "embed", "write"), 0.0))
    checkpoint: str = ""
    version: str = ""
    model_id: str = ""
    up_to_date: bool = False  # the published checkpoint already matched: nothing was embedded

    def as_metadata(self) -> dict[str, object]:
        return asdict(self)


def plan_digest(
    frames: Sequence[FrameRef], model_id: str, patch_config: PatchConfig, chunk_frames: int, dedup: DedupConfig | None = None
) -> str:
    """Identity of a chunking plan: chunks from another plan are never reused.

    ``dedup`` (default: from the environment) counts only where it can drop frames, so plans of
    image-file videos stay what they were.
    """
    dedup = dedup if dedup is not None else dedup_config_from_env()
    head = f"{model_id}|{patch_config.fingerprint()}|{chunk_frames}"
    if dedup.enabled and (dedup.all_frames or any(is_video_frame_url(ref.url) for ref in frames)):
        head += f"|{dedup.fingerprint()}"
    digest = hashlib.sha256(head.encode())
    for ref in frames:
        digest.update(f"\n{ref.frame_id},{ref.timestamp_ms},{ref.url}".encode())
    return digest.hexdigest()[:16]


def _work_dir(video_id: int) -> str:
    return f"_work/video_{video_id}"


def _prepare_work_dir(store: CheckpointStore, work: str, plan: str) -> None:
    """Keep ``work`` only if it holds chunks of this plan; otherwise start it afresh."""
    marker = store.read_json(f"{work}/plan.json")
    if marker is not None and marker.get("plan") == plan:
        return
    store.delete_prefix(work)
    store.write_json(f"{work}/plan.json", {"plan": plan})


def _embed_chunk(
    video_id: int,
    refs: Sequence[FrameRef],
    source: FrameSource,
    encoder: FrameEncoder,
    patch_config: PatchConfig,
    max_pixels: int,
    report: EmbedReport,
    dedup: DedupConfig,
    end_ms: int | None,
) -> tuple[list[FrameRecord], dict[int, str], dict[int, int], dict[int, int]]:
    """The chunk's records, skipped frames (frame_id -> reason), dropped near-duplicates (frame_id
    -> kept frame_id) and credited spans (kept frame_id -> end ms); ``end_ms`` is the next chunk's start."""
    images: list[torch.Tensor] = []
    kept: list[FrameRef] = []
    skipped: dict[int, str] = {}
    dropped: dict[int, int] = {}
    check = NearDuplicateFilter(dedup.threshold) if dedup.enabled else None
    # A transient FrameReadError leaves iter_frames: not proof the frame is bad, embed_video stops the run.
    for item in iter_frames(source, refs, max_pixels=max_pixels, thumbs=check is not None, seconds=report.seconds):
        if not isinstance(item, DecodedFrame):
            skipped[item[0].frame_id] = item[1]
            continue
        if check is not None and item.thumb is not None and kept and (dedup.all_frames or is_video_frame_url(item.ref.url)):
            started = time.perf_counter()
            keep = check.keep(item.thumb)
            report.seconds["dedup"] += time.perf_counter() - started
            if not keep:
                dropped[item.ref.frame_id] = kept[-1].frame_id
                continue
        elif check is not None and item.thumb is not None:
            check.keep(item.thumb)  # the first frame of a chunk is always kept: it starts the comparison
        images.append(item.pixels)  # (3, H, W) uint8
        kept.append(item.ref)
    spans = credit_spans([(ref.frame_id, ref.timestamp_ms) for ref in refs], dropped, end_ms)
    if not images:
        return [], skipped, dropped, spans
    started = time.perf_counter()
    plans = [plan_patches(frame.shape[2], frame.shape[1], patch_config) for frame in images]
    report.seconds["patch_plan"] += time.perf_counter() - started
    before = encoder.timings.images
    started = time.perf_counter()
    embeddings = encoder.encode_frames(images, patch_config, plans)
    report.seconds["embed"] += time.perf_counter() - started
    report.images_encoded += encoder.timings.images - before
    records = [
        FrameRecord(video_id, ref.frame_id, ref.timestamp_ms, ref.url, frame.shape[2], frame.shape[1], embedding)
        for ref, frame, embedding in zip(kept, images, embeddings)
    ]
    return records, skipped, dropped, spans


def _report_from_checkpoint(report: EmbedReport, store: CheckpointStore, key: str, meta: dict) -> EmbedReport:
    """Fill ``report`` from an up-to-date published checkpoint; nothing is re-embedded."""
    lengths = store.read_table(key, columns=["patch_vectors"]).column("patch_vectors")
    report.frames = len(lengths)
    report.patches = int(pc.sum(pc.list_value_length(lengths)).as_py() or 0)
    report.skipped = {int(k): v for k, v in dict(meta.get("skipped") or {}).items()}
    report.dropped = {int(k): int(v) for k, v in dict(meta.get("dropped") or {}).items()}
    report.span_end_ms = {int(k): int(v) for k, v in dict(meta.get("span_end_ms") or {}).items()}
    report.version, report.checkpoint, report.up_to_date = str(meta["version"]), store.uri(key), True
    return report


def embed_video(
    video_id: int,
    frames: Sequence[FrameRef],
    source: FrameSource,
    encoder: FrameEncoder,
    store: str | Path | CheckpointStore,
    patch_config: PatchConfig = PatchConfig(),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    on_chunk: Callable[[int, int], None] | None = None,
    validate: Callable[[pa.Table], None] | None = None,
    dedup: DedupConfig | None = None,
) -> EmbedReport:
    """Embed ``frames`` of ``video_id`` into the store's published checkpoint; resumable.

    Bad frames (missing, unreadable, not an image, too large) are skipped and reported; a video
    with no usable frame raises :class:`NoUsableFrameError`. A transient read failure raises
    :class:`SourceUnavailableError` at once, keeping the finished chunks for a re-run. ``on_chunk(done, total)`` is called
    after each chunk, for progress logs. ``validate(table)`` sees the finished checkpoint before it
    is published; if it raises, nothing is published (a follower never indexes a video that failed).
    ``dedup`` (default: DEDUP_THRESHOLD/DEDUP_ALL_FRAMES) drops near-duplicate frames, listed in
    ``report.dropped`` and the checkpoint footer; they are neither rows nor skips.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    store = store if isinstance(store, CheckpointStore) else CheckpointStore(store)  # a folder or s3://
    info = encoder.info
    report = EmbedReport(video_id, model_id=info.model_id)
    dedup = dedup if dedup is not None else dedup_config_from_env()
    plan = plan_digest(frames, info.model_id, patch_config, chunk_frames, dedup)
    published = published_key(video_id)
    if store.exists(published):
        meta = store.read_metadata(published)
        if meta.get("plan") == plan:
            return _report_from_checkpoint(report, store, published, meta)  # same frames, same settings: done
    work = _work_dir(video_id)
    _prepare_work_dir(store, work, plan)
    chunks = [frames[i : i + chunk_frames] for i in range(0, len(frames), chunk_frames)]
    report.chunks_total = len(chunks)
    tables = []
    for number, refs in enumerate(chunks):
        path = f"{work}/chunk_{number:05d}.parquet"
        if store.exists(path):
            table = store.read_table(path)
            report.chunks_resumed += 1
        else:
            try:
                following = (number + 1) * chunk_frames
                end_ms = frames[following].timestamp_ms if following < len(frames) else None
                records, skipped, dropped, spans = _embed_chunk(
                    video_id, refs, source, encoder, patch_config, max_pixels, report, dedup, end_ms
                )
            except FrameReadError as exc:  # only transient ones leave _embed_chunk
                raise SourceUnavailableError(
                    f"video {video_id}: stopped at chunk {number + 1}/{len(chunks)}, the frame source failed "
                    f"in a way that may pass ({exc}); finished chunks are kept, re-run to resume"
                ) from exc
            started = time.perf_counter()
            meta = {
                "skipped": {str(k): v for k, v in skipped.items()},
                "dropped": {str(k): v for k, v in dropped.items()},
                "span_end_ms": {str(k): v for k, v in spans.items()},
            }
            table = records_to_table(records, info.model_id, info.embed_dim, meta)
            store.write_table(path, table)
            report.seconds["write"] += time.perf_counter() - started
        chunk_meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
        report.skipped.update({int(k): v for k, v in chunk_meta.get("skipped", {}).items()})
        report.dropped.update({int(k): int(v) for k, v in chunk_meta.get("dropped", {}).items()})
        report.span_end_ms.update({int(k): int(v) for k, v in chunk_meta.get("span_end_ms", {}).items()})
        tables.append(table.replace_schema_metadata(None))
        if on_chunk:
            on_chunk(number + 1, len(chunks))

    combined = pa.concat_tables(tables) if tables else None
    if combined is None or combined.num_rows == 0:
        reasons = "; ".join(f"frame {k}: {v}" for k, v in sorted(report.skipped.items())[:10])
        raise NoUsableFrameError(f"video {video_id}: no usable frame among {len(frames)} ({reasons or 'empty manifest'})")
    started = time.perf_counter()
    metadata = {
        "model_id": info.model_id,
        "weights_random": info.weights_random,
        "weights_provenance": info.provenance.as_dict(),  # kind, description and what training recorded
        "patch_config": patch_config.fingerprint(),
        "plan": plan,
        "skipped": {str(k): v for k, v in report.skipped.items()},
        "dropped": {str(k): v for k, v in report.dropped.items()},  # near-duplicates: no rows, not skips
        "span_end_ms": {str(k): v for k, v in report.span_end_ms.items()},
    }
    final = combined.replace_schema_metadata({META_KEY: json.dumps(metadata, sort_keys=True).encode()})
    if validate is not None:
        validate(final)
    report.version = store.write_table(published, final)
    report.seconds["write"] += time.perf_counter() - started
    store.delete_prefix(work)
    report.frames = final.num_rows
    report.patches = int(pc.sum(pc.list_value_length(final.column("patch_vectors"))).as_py())
    report.checkpoint = store.uri(published)
    return report
