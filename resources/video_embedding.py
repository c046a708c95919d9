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

Only permanent read failures (missing object, refused URL, over the byte limit, not an image) are
recorded as skipped frames. A transient one (connection refused, timeout, 5xx, throttling, local
I/O error) that survived the client's own retries stops the run at once with
:class:`SourceUnavailableError`: a skip written into a chunk would be kept by every later run of
the same plan, and an endpoint that is down would otherwise cost a timeout per frame.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from resources.checkpoint import META_KEY, FrameRecord, published_path, read_metadata, records_to_table, write_table_atomic
from resources.encoder import FrameEncoder
from resources.frame_sources import FrameReadError, FrameRef, FrameSource
from resources.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image, image_to_tensor
from resources.patches import PatchConfig, plan_patches

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
    chunks_total: int = 0
    chunks_resumed: int = 0  # chunks found on disk from an earlier, interrupted run
    images_encoded: int = 0  # model inputs this run (global views + patch crops)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("fetch", "decode", "patch_plan", "embed", "write"), 0.0))
    checkpoint: str = ""
    version: str = ""
    model_id: str = ""
    up_to_date: bool = False  # the published checkpoint already matched: nothing was embedded

    def as_metadata(self) -> dict[str, object]:
        return asdict(self)


def plan_digest(frames: Sequence[FrameRef], model_id: str, patch_config: PatchConfig, chunk_frames: int) -> str:
    """Identity of a chunking plan: chunks from another plan are never reused."""
    digest = hashlib.sha256(f"{model_id}|{patch_config.fingerprint()}|{chunk_frames}".encode())
    for ref in frames:
        digest.update(f"\n{ref.frame_id},{ref.timestamp_ms},{ref.url}".encode())
    return digest.hexdigest()[:16]


def _work_dir(store: Path, video_id: int) -> Path:
    return store / "_work" / f"video_{video_id}"


def _prepare_work_dir(work: Path, plan: str) -> None:
    """Keep ``work`` only if it holds chunks of this plan; otherwise start it afresh."""
    marker = work / "plan.json"
    if marker.is_file() and json.loads(marker.read_text()).get("plan") == plan:
        return
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    marker.write_text(json.dumps({"plan": plan}))


def _embed_chunk(
    video_id: int,
    refs: Sequence[FrameRef],
    source: FrameSource,
    encoder: FrameEncoder,
    patch_config: PatchConfig,
    max_pixels: int,
    report: EmbedReport,
) -> tuple[list[FrameRecord], dict[int, str]]:
    images, kept, skipped = [], [], {}
    for ref in refs:
        started = time.perf_counter()
        try:
            data = source.read(ref.url)
        except FrameReadError as exc:
            if exc.transient:
                raise  # not proof the frame is bad: embed_video stops the run
            skipped[ref.frame_id] = f"{'missing' if exc.missing else 'unreadable'}: {exc.reason}"
            continue
        finally:
            report.seconds["fetch"] += time.perf_counter() - started
        started = time.perf_counter()
        try:
            image = decode_image(data, max_pixels=max_pixels)
            images.append(image_to_tensor(image))  # (3, H, W) uint8, converted once
        except ImageDecodeError as exc:
            skipped[ref.frame_id] = exc.reason
            continue
        finally:
            report.seconds["decode"] += time.perf_counter() - started
        kept.append(ref)
    if not images:
        return [], skipped
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
    return records, skipped


def _report_from_checkpoint(report: EmbedReport, path: Path) -> EmbedReport:
    """Fill ``report`` from an up-to-date published checkpoint; nothing is re-embedded."""
    meta = read_metadata(path)
    lengths = pq.read_table(path, columns=["patch_vectors"]).column("patch_vectors")
    report.frames = len(lengths)
    report.patches = int(pc.sum(pc.list_value_length(lengths)).as_py() or 0)
    report.skipped = {int(k): v for k, v in dict(meta.get("skipped") or {}).items()}
    report.version, report.checkpoint, report.up_to_date = str(meta["version"]), str(path), True
    return report


def embed_video(
    video_id: int,
    frames: Sequence[FrameRef],
    source: FrameSource,
    encoder: FrameEncoder,
    store: str | Path,
    patch_config: PatchConfig = PatchConfig(),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    on_chunk: Callable[[int, int], None] | None = None,
    validate: Callable[[pa.Table], None] | None = None,
) -> EmbedReport:
    """Embed ``frames`` of ``video_id`` into the store's published checkpoint; resumable.

    Bad frames (missing, unreadable, not an image, too large) are skipped and reported; a video
    with no usable frame raises :class:`NoUsableFrameError`. A transient read failure raises
    :class:`SourceUnavailableError` at once, keeping the finished chunks for a re-run. ``on_chunk(done, total)`` is called
    after each chunk, for progress logs. ``validate(table)`` sees the finished checkpoint before it
    is published; if it raises, nothing is published (a follower never indexes a video that failed).
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    store = Path(store)
    info = encoder.info
    report = EmbedReport(video_id, model_id=info.model_id)
    plan = plan_digest(frames, info.model_id, patch_config, chunk_frames)
    published = published_path(store, video_id)
    if published.is_file() and read_metadata(published).get("plan") == plan:
        return _report_from_checkpoint(report, published)  # same frames, same settings: done
    work = _work_dir(store, video_id)
    _prepare_work_dir(work, plan)
    chunks = [frames[i : i + chunk_frames] for i in range(0, len(frames), chunk_frames)]
    report.chunks_total = len(chunks)
    tables = []
    for number, refs in enumerate(chunks):
        path = work / f"chunk_{number:05d}.parquet"
        if path.is_file():
            table = pq.read_table(path)
            report.chunks_resumed += 1
        else:
            try:
                records, skipped = _embed_chunk(video_id, refs, source, encoder, patch_config, max_pixels, report)
            except FrameReadError as exc:  # only transient ones leave _embed_chunk
                raise SourceUnavailableError(
                    f"video {video_id}: stopped at chunk {number + 1}/{len(chunks)}, the frame source failed "
                    f"in a way that may pass ({exc}); finished chunks are kept, re-run to resume"
                ) from exc
            started = time.perf_counter()
            meta = {"skipped": {str(k): v for k, v in skipped.items()}}
            table = records_to_table(records, info.model_id, info.embed_dim, meta)
            write_table_atomic(table, path)
            report.seconds["write"] += time.perf_counter() - started
        chunk_meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
        report.skipped.update({int(k): v for k, v in chunk_meta.get("skipped", {}).items()})
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
    }
    final = combined.replace_schema_metadata({META_KEY: json.dumps(metadata, sort_keys=True).encode()})
    if validate is not None:
        validate(final)
    report.version = write_table_atomic(final, published)
    report.seconds["write"] += time.perf_counter() - started
    shutil.rmtree(work, ignore_errors=True)
    report.frames = final.num_rows
    report.patches = int(pc.sum(pc.list_value_length(final.column("patch_vectors"))).as_py())
    report.checkpoint = str(published)
    return report
