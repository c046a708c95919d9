"""One video's checkpoint, built in chunks that survive a crash.

The frames of a manifest are cut into fixed chunks of ``chunk_frames`` frames. Each chunk is
fetched, decoded, embedded and written to ``<store>/_work/video_<id>/chunk_<n>.parquet`` on its
own (atomically); a re-run skips every chunk already on disk and embeds only the rest. When all
chunks exist they are concatenated into the published checkpoint ``<store>/video_<id>.parquet``
(atomically, with its content version) and the work folder is removed.

Chunks belong to a *plan*: the manifest's frames plus the model and patch settings. A different
plan (frames added, model changed) discards the old chunks instead of mixing them. An interrupted
and an uninterrupted run cut the same chunks; the encoder's batches may span chunks (and videos,
see :mod:`.embedding_stream`), which changes no vector here: fp32 results do not depend on batching
on the CPUs measured (``tests/resources/checkpoints/test_video_files.py`` checks a resumed
checkpoint against an uninterrupted one bit for bit), and by at most 1e-5 elsewhere (the encoder's
contract).

:class:`VideoJob` is one video's checkpoint in progress (plan, resumed and new chunks, publication);
:func:`embed_video` takes one video through it; :mod:`.embedding_stream` takes many, reading ahead.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from resources.checkpoints.dedup import DedupConfig, NearDuplicateFilter, credit_spans, dedup_config_from_env
from resources.checkpoints.format import META_KEY, FrameRecord, records_to_table
from resources.checkpoints.store import CheckpointStore, published_key
from resources.embedding.encoder import EncoderInfo
from resources.embedding.patches import PatchConfig
from resources.frame_sources import DecodedFrame, FrameRef, FrameSource, is_video_frame_url, iter_frames

if TYPE_CHECKING:
    from resources.embedding.encoder import FrameEmbedding

DEFAULT_CHUNK_FRAMES = 64


class NoUsableFrameError(RuntimeError):
    """Every frame of the video was skipped; the message lists why."""


class SourceUnavailableError(RuntimeError):
    """A frame could not be read for a reason that may pass; retry the run later.

    Chunks finished before it stay on disk, the failing chunk is not written and no checkpoint is
    published, so a re-run embeds exactly the unfinished chunks.
    """


class CheckpointRejected(RuntimeError):
    """The finished checkpoint failed a check (what a ``validate`` hook raises); it was not published."""


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


@dataclass
class ChunkTally:
    """What decoding a chunk left out: skipped frames (frame_id -> reason), dropped near-duplicates
    (frame_id -> the kept frame_id) and the spans credited to kept frames (frame_id -> end ms)."""

    skipped: dict[int, str] = field(default_factory=dict)
    dropped: dict[int, int] = field(default_factory=dict)
    spans: dict[int, int] = field(default_factory=dict)


def decode_chunk(
    refs: Sequence[FrameRef], source: FrameSource, max_pixels: int, dedup: DedupConfig, end_ms: int | None,
    seconds: dict[str, float], tally: ChunkTally,
) -> Iterator[DecodedFrame]:
    """The chunk's frames to encode, in order; what was left out goes into ``tally`` (complete once
    the iterator is exhausted). ``end_ms`` is the next chunk's start. A transient
    :class:`FrameReadError` leaves this iterator: it says nothing about the frame (the caller stops)."""
    kept: list[FrameRef] = []
    check = NearDuplicateFilter(dedup.threshold) if dedup.enabled else None
    for item in iter_frames(source, refs, max_pixels=max_pixels, thumbs=check is not None, seconds=seconds):
        if not isinstance(item, DecodedFrame):
            tally.skipped[item[0].frame_id] = item[1]
            continue
        if check is not None and item.thumb is not None and kept and (dedup.all_frames or is_video_frame_url(item.ref.url)):
            started = time.perf_counter()
            keep = check.keep(item.thumb)
            seconds["dedup"] += time.perf_counter() - started
            if not keep:
                tally.dropped[item.ref.frame_id] = kept[-1].frame_id
                continue
        elif check is not None and item.thumb is not None:
            check.keep(item.thumb)  # the first frame of a chunk is always kept: it starts the comparison
        kept.append(item.ref)
        yield item
    tally.spans = credit_spans([(ref.frame_id, ref.timestamp_ms) for ref in refs], tally.dropped, end_ms)


class VideoJob:
    """One video's checkpoint in progress: its plan, its chunks (found on disk or written here) and
    its report. Reading side (:meth:`open`, :meth:`stored_chunk`) and writing side
    (:meth:`write_chunk`, :meth:`publish`) may run on different threads, one each."""

    def __init__(
        self, video_id: int, frames: Sequence[FrameRef], store: CheckpointStore, info: EncoderInfo,
        patch_config: PatchConfig, chunk_frames: int, dedup: DedupConfig,
    ) -> None:
        self.video_id, self.frames, self.store, self.info = video_id, frames, store, info
        self.patch_config, self.chunk_frames, self.dedup = patch_config, chunk_frames, dedup
        self.report = EmbedReport(video_id, model_id=info.model_id)
        self.plan = plan_digest(frames, info.model_id, patch_config, chunk_frames, dedup)
        self.chunks = [frames[i : i + chunk_frames] for i in range(0, len(frames), chunk_frames)]
        self.report.chunks_total = len(self.chunks)
        self._tables: list[pa.Table] = []
        self._encoded: list[tuple[int, DecodedFrame, FrameEmbedding]] = []  # (chunk, frame, vectors) not yet written
        self._work = _work_dir(video_id)

    def open(self) -> bool:
        """False when the published checkpoint already has this plan (the report says so, nothing
        to embed); else True, with the work folder holding only chunks of this plan."""
        published = published_key(self.video_id)
        if self.store.exists(published):
            meta = self.store.read_metadata(published)
            if meta.get("plan") == self.plan:
                _report_from_checkpoint(self.report, self.store, published, meta)  # same frames, same settings: done
                return False
        marker = self.store.read_json(f"{self._work}/plan.json")
        if marker is None or marker.get("plan") != self.plan:
            self.store.delete_prefix(self._work)
            self.store.write_json(f"{self._work}/plan.json", {"plan": self.plan})
        return True

    def _chunk_key(self, number: int) -> str:
        return f"{self._work}/chunk_{number:05d}.parquet"

    def end_ms(self, number: int) -> int | None:
        """Where chunk ``number``'s last span may end: the next chunk's first timestamp."""
        following = (number + 1) * self.chunk_frames
        return self.frames[following].timestamp_ms if following < len(self.frames) else None

    def stored_chunk(self, number: int) -> pa.Table | None:
        """Chunk ``number`` as an earlier, interrupted run of this plan wrote it; None if it did not."""
        key = self._chunk_key(number)
        return self.store.read_table(key) if self.store.exists(key) else None

    def add_chunk(self, table: pa.Table, resumed: bool = False) -> None:
        """Take a finished chunk (in order): its skipped, dropped and span lists join the report's."""
        chunk_meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
        self.report.skipped.update({int(k): v for k, v in chunk_meta.get("skipped", {}).items()})
        self.report.dropped.update({int(k): int(v) for k, v in chunk_meta.get("dropped", {}).items()})
        self.report.span_end_ms.update({int(k): int(v) for k, v in chunk_meta.get("span_end_ms", {}).items()})
        self.report.chunks_resumed += resumed
        self._tables.append(table.replace_schema_metadata(None))

    def add_encoded(self, number: int, frame: DecodedFrame, embedding: FrameEmbedding) -> None:
        """One frame of chunk ``number`` is encoded (frames come in order)."""
        self._encoded.append((number, frame, embedding))

    def write_chunk(self, number: int, tally: ChunkTally) -> None:
        """Write chunk ``number`` from its encoded frames (atomically: a crash leaves it whole or
        absent) and take it."""
        started = time.perf_counter()
        records = [
            FrameRecord(self.video_id, f.ref.frame_id, f.ref.timestamp_ms, f.ref.url, f.pixels.shape[2], f.pixels.shape[1], e)
            for c, f, e in self._encoded if c == number
        ]
        self._encoded = [entry for entry in self._encoded if entry[0] != number]
        meta = {
            "skipped": {str(k): v for k, v in tally.skipped.items()},
            "dropped": {str(k): v for k, v in tally.dropped.items()},
            "span_end_ms": {str(k): v for k, v in tally.spans.items()},
        }
        table = records_to_table(records, self.info.model_id, self.info.embed_dim, meta)
        self.store.write_table(self._chunk_key(number), table)
        self.report.seconds["write"] += time.perf_counter() - started
        self.add_chunk(table)

    def publish(self, validate: Callable[[pa.Table], None] | None = None) -> EmbedReport:
        """Concatenate the chunks into the published checkpoint (after ``validate`` passes) and
        remove the work folder; raises :class:`NoUsableFrameError` when no frame was usable."""
        report, info = self.report, self.info
        combined = pa.concat_tables(self._tables) if self._tables else None
        if combined is None or combined.num_rows == 0:
            reasons = "; ".join(f"frame {k}: {v}" for k, v in sorted(report.skipped.items())[:10])
            raise NoUsableFrameError(f"video {self.video_id}: no usable frame among {len(self.frames)} ({reasons or 'empty manifest'})")
        started = time.perf_counter()
        metadata = {
            "model_id": info.model_id,
            "weights_random": info.weights_random,
            "weights_provenance": info.provenance.as_dict(),  # kind, description and what training recorded
            "patch_config": self.patch_config.fingerprint(),
            "plan": self.plan,
            "skipped": {str(k): v for k, v in report.skipped.items()},
            "dropped": {str(k): v for k, v in report.dropped.items()},  # near-duplicates: no rows, not skips
            "span_end_ms": {str(k): v for k, v in report.span_end_ms.items()},
        }
        final = combined.replace_schema_metadata({META_KEY: json.dumps(metadata, sort_keys=True).encode()})
        if validate is not None:
            validate(final)
        published = published_key(self.video_id)
        report.version = self.store.write_table(published, final)
        report.seconds["write"] += time.perf_counter() - started
        self.store.delete_prefix(self._work)
        report.frames = final.num_rows
        report.patches = int(pc.sum(pc.list_value_length(final.column("patch_vectors"))).as_py())
        report.checkpoint = self.store.uri(published)
        return report


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
