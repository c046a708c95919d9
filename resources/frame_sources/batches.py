"""Ingest batches: the immutable files ``<video>/ingest/<time ns>-<random>.jsonl`` that
:meth:`FrameSource.record_frames` adds to a video - their names, their bytes, how they merge over
the video's own frames, and which of them have settled enough to be compacted."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resources.frame_sources.base import FrameRef

# Batches younger than this are never compacted: a writer names its batch (by its clock) before it
# stores it, and must not find it ordered behind a compaction that started in between. A minute
# covers a store's retries and ordinary clock skew between machines.
BATCH_SETTLE_S = 60.0

_BATCH_NAME = re.compile(r"^([0-9]{20})-[0-9a-f]{16}\.jsonl$")


def new_batch_name() -> str:
    """A unique ingest batch name that sorts by creation time (nanoseconds, then 64 random bits).

    Writers on several machines order their batches by their clocks; two batches that set the
    same frame_id at nearly the same moment are concurrent, and either may win.
    """
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:16]}.jsonl"


def is_batch_name(name: str) -> bool:
    # Writers publish under a dot-name first (a temporary file): readers never see half a batch.
    return name.endswith(".jsonl") and not name.startswith(".")


def settled_batches(names: list[str], before_ns: int) -> list[str]:
    """The longest run of ``names`` (sorted) from the first that were all named by
    :func:`new_batch_name` before ``before_ns``: the batches a compaction may merge. It stops at
    the first other name (a hand-placed file keeps its place in the order)."""
    settled = []
    for name in sorted(names):
        match = _BATCH_NAME.match(name)
        if match is None or int(match.group(1)) >= before_ns:
            break
        settled.append(name)
    return settled


def batch_bytes(frames: Iterable[FrameRef]) -> bytes:
    """A batch file's bytes: one JSON object per frame and line."""
    return "".join(json.dumps({"frame_id": r.frame_id, "timestamp_ms": r.timestamp_ms, "url": r.url}) + "\n" for r in frames).encode()


def merge_batches(base: list[FrameRef], batches: Iterable[list[FrameRef]]) -> list[FrameRef]:
    """``base`` with each ingest batch applied in order (a later batch wins per frame_id), sorted."""
    frames = {ref.frame_id: ref for ref in base}
    for batch in batches:
        frames.update((ref.frame_id, ref) for ref in batch)
    return [frames[k] for k in sorted(frames)]


def read_batches(names: Callable[[], list[str]], read: Callable[[str], list[FrameRef] | None], where: str, tries: int = 5) -> list[list[FrameRef]]:
    """Every listed batch's frames, in name order, from one consistent listing.

    ``read`` returns None for a batch that is gone since it was listed: a compaction moved it into
    a later batch, possibly one this listing does not hold - so the whole listing is read again
    (a compaction only ever moves frames forward, into a batch that exists before the old ones go).
    """
    for _ in range(tries):
        batches = [read(name) for name in names()]
        if all(batch is not None for batch in batches):
            return [batch for batch in batches if batch is not None]
    from resources.frame_sources.base import FrameSourceError  # here: base imports this module

    raise FrameSourceError(f"the ingest batches of {where} kept changing while they were read ({tries} listings)", transient=True)
