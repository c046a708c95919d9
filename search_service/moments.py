"""Moments: a video's adjacent hits merged into time segments. Pure logic over search results.

A search answers with frames; people want *where in the video* it happens. Hits of one video whose
timestamps lie at most ``gap_ms`` apart belong to one moment ``[start_ms, end_ms]``; the moment's
score is its best frame's score (one strong frame makes a moment, many weak ones do not), its
``best`` is that frame, and ``frames`` lists every hit inside it in time order. Each video keeps
at most ``per_video`` moments (its best ones) so one long video cannot fill the page; moments are
ordered by score, ties by video and start.

A hit may carry the end of the time span it stands for (``span_end_ms``: a kept frame credited
with the near-duplicates dropped after it); the moment then runs to that end, and the gap is
measured from it. Hits without a timestamp cannot be placed in time: each is a moment of its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from search_service.schemas import Moment, MomentFrame, SearchResult

DEFAULT_GAP_MS = 2_000


def _span_end(hit: SearchResult) -> int | None:
    if hit.timestamp_ms is None:
        return None
    return max(hit.timestamp_ms, hit.span_end_ms) if hit.span_end_ms is not None else hit.timestamp_ms


def _moment(video_id: int, hits: list[SearchResult]) -> Moment:
    best = max(hits, key=lambda h: h.score)
    ends = [e for e in map(_span_end, hits) if e is not None]
    return Moment(
        video_id=video_id,
        start_ms=hits[0].timestamp_ms,
        end_ms=max(ends) if ends else None,
        score=best.score,
        best_image_id=best.image_id,
        best=best,
        frames=[MomentFrame(image_id=h.image_id, frame_id=h.frame_id, timestamp_ms=h.timestamp_ms, score=h.score) for h in hits],
    )


def group_moments(hits: Sequence[SearchResult], gap_ms: int = DEFAULT_GAP_MS, per_video: int | None = 3, limit: int | None = None) -> list[Moment]:
    """``hits`` merged into moments (see the module docstring); at most ``limit`` of them.

    The hits are the search's results (its top_k): a frame that did not rank among them is not a
    hit, so a moment never runs through frames that do not match."""
    if gap_ms < 0:
        raise ValueError(f"gap_ms must be >= 0, got {gap_ms}")
    if per_video is not None and per_video < 1:
        raise ValueError(f"per_video must be >= 1, got {per_video}")
    by_video: dict[int, list[SearchResult]] = defaultdict(list)
    for hit in hits:
        by_video[hit.video_id].append(hit)
    moments: list[Moment] = []
    for video_id, video_hits in by_video.items():
        timed = sorted((h for h in video_hits if h.timestamp_ms is not None), key=lambda h: (h.timestamp_ms, h.frame_id))
        segments: list[list[SearchResult]] = []
        end = 0  # end of the current segment's time span
        for hit in timed:
            span = _span_end(hit) or 0  # timed hits always have one
            if segments and hit.timestamp_ms - end <= gap_ms:  # type: ignore[operator]
                segments[-1].append(hit)
                end = max(end, span)
            else:
                segments.append([hit])
                end = span
        segments.extend([h] for h in video_hits if h.timestamp_ms is None)
        video_moments = sorted((_moment(video_id, s) for s in segments), key=lambda m: -m.score)
        moments.extend(video_moments[:per_video] if per_video is not None else video_moments)
    moments.sort(key=lambda m: (-m.score, m.video_id, m.start_ms if m.start_ms is not None else -1))
    return moments[:limit] if limit is not None else moments
