"""Near-duplicate frames, dropped before they reach the encoder.

The signal is cheap: each decoded frame is also scaled to a 32x32 RGB thumbnail, and a frame whose
thumbnail differs from the last *kept* frame's by at most the threshold in every region - the
mean absolute difference (0..1) of each 4x4 block, ~160x90 px of a 720p frame - is dropped. Per
region, not over the whole frame: a small object that appears in one frame of a still scene
changes ~5 of the thumbnail's 1,024 pixels, 0.3% of the whole but a third of its block, and it is
exactly what region search exists to find (a whole-frame mean dropped it). Comparing with the last kept frame, not the previous frame, means a
slow pan is not dropped frame by frame forever: once it has drifted past the threshold, a frame
is kept again. A dropped frame's time is credited to the frame kept before it
(:func:`credit_spans`), so a moment that runs across a static stretch stays continuous.

Settings: DEDUP_THRESHOLD (default 0.02; ``0`` or ``off`` keeps every frame) and
DEDUP_ALL_FRAMES (default off: only frames decoded from video files are checked; frames that came
as image files were chosen by whoever extracted them).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.02  # ~5 of 255 levels on average: encoder noise of a still scene, not a moving object


@dataclass(frozen=True)
class DedupConfig:
    """``threshold`` 0 keeps every frame; ``all_frames`` also checks frames of image files."""

    threshold: float = DEFAULT_THRESHOLD
    all_frames: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and 0 <= self.threshold < 1):
            raise ValueError(f"dedup threshold must be in [0, 1), got {self.threshold!r}")

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def fingerprint(self) -> str:
        # "regions": the per-region rule (issue 20) keeps frames the whole-frame mean dropped, so
        # checkpoints made under the old rule are re-embedded.
        return f"dedup:{self.threshold:g}:{'all' if self.all_frames else 'video'}:regions" if self.enabled else "dedup:off"


def dedup_config_from_env(env: Mapping[str, str] | None = None) -> DedupConfig:
    """DEDUP_THRESHOLD (``off``/``0`` or a number in [0, 1)), DEDUP_ALL_FRAMES (``1``/``true``)."""
    env = os.environ if env is None else env
    raw = env.get("DEDUP_THRESHOLD", "").strip().lower()
    all_frames = env.get("DEDUP_ALL_FRAMES", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        threshold = DEFAULT_THRESHOLD if not raw else 0.0 if raw == "off" else float(raw)
        return DedupConfig(threshold, all_frames)
    except ValueError as exc:
        raise ValueError(f"DEDUP_THRESHOLD must be 'off' or a number in [0, 1), got {raw!r} ({exc})") from None


REGIONS = 8  # blocks a side of the thumbnail grid whose largest change decides


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """The largest mean absolute difference over the regions (a REGIONS x REGIONS grid) of two
    uint8 thumbnails of one shape, from 0 (equal) to 1."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).astype(np.float32)
    rows, cols = np.array_split(np.arange(diff.shape[0]), REGIONS), np.array_split(np.arange(diff.shape[1]), REGIONS)
    return max(float(diff[r[0] : r[-1] + 1, c[0] : c[-1] + 1].mean()) for r in rows for c in cols if len(r) and len(c)) / 255.0


class NearDuplicateFilter:
    """Decides, frame by frame in time order, whether a frame adds anything to the last kept one."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._kept: np.ndarray | None = None

    def keep(self, thumb: np.ndarray) -> bool:
        """True (and remember ``thumb``) unless it is within the threshold of the last kept frame."""
        if self._kept is not None and self.threshold > 0 and difference(thumb, self._kept) <= self.threshold:
            return False
        self._kept = thumb
        return True


def credit_spans(timestamps: Sequence[tuple[int, int | None]], dropped: Mapping[int, int], end_ms: int | None) -> dict[int, int]:
    """``{kept frame_id: span end ms}`` for kept frames that absorbed dropped ones.

    ``timestamps`` are ``(frame_id, timestamp_ms)`` of consecutive frames in time order (all of
    them, dropped ones included); ``end_ms`` is when the last of them stops standing for the
    video (the next frame's time, or None when unknown). A frame stands for the time until the
    next frame; a kept frame's span runs to the end of the last frame dropped in its favour.
    """
    spans: dict[int, int] = {}
    for index, (frame_id, _) in enumerate(timestamps):
        kept = dropped.get(frame_id)
        if kept is None:
            continue
        following = timestamps[index + 1][1] if index + 1 < len(timestamps) else end_ms
        if following is not None:
            spans[kept] = max(spans.get(kept, following), following)
    return spans
