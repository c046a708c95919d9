"""Embed one video into its published checkpoint (:func:`embed_video`).

The same path as a run's many videos: :mod:`.embedding_stream` reads and decodes the next chunk
while the current one is encoded, and :mod:`.video_job` holds the chunks, the plan and publication.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa

from resources.checkpoints.dedup import DedupConfig
from resources.checkpoints.embedding_stream import EmbeddingStream, VideoEmbedded, VideoFailed, VideoInput
from resources.checkpoints.store import CheckpointStore
from resources.checkpoints.video_job import DEFAULT_CHUNK_FRAMES, EmbedReport
from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig
from resources.frame_sources import FrameRef, FrameSource
from resources.frame_sources.images import DEFAULT_MAX_PIXELS


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

    The video goes through the same stream as a run's many videos (:mod:`.embedding_stream`):
    its next chunk is read and decoded while the current one is encoded.
    """
    stream = EmbeddingStream(
        source, encoder, store if isinstance(store, CheckpointStore) else CheckpointStore(store),
        patch_config, max_pixels, chunk_frames, dedup, on_chunk=lambda _, done, total: on_chunk(done, total) if on_chunk else None,
    )
    for outcome in stream.run([VideoInput(video_id, lambda: list(frames), (lambda _refs: validate) if validate else None)]):
        if isinstance(outcome, VideoFailed):
            raise outcome.error
        if isinstance(outcome, VideoEmbedded):
            return outcome.report
    raise AssertionError("the stream answers every video")  # pragma: no cover
