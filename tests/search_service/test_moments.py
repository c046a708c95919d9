"""Moments: adjacent hits of a video merged into time segments (pure logic)."""

from __future__ import annotations

import pytest

from search_service.moments import group_moments
from search_service.schemas import SearchResult


def hit(video: int, frame: int, ts: int | None, score: float, span_end: int | None = None) -> SearchResult:
    return SearchResult(
        image_id=f"{video}:{frame}", video_id=video, frame_id=frame, score=score, global_score=score,
        s3_url="", width=64, height=48, timestamp_ms=ts, span_end_ms=span_end,
    )


def spans(moments) -> list[tuple[int, int | None, int | None]]:
    return [(m.video_id, m.start_ms, m.end_ms) for m in moments]


def test_adjacent_hits_merge_and_a_gap_splits() -> None:
    hits = [hit(1, 0, 0, 0.5), hit(1, 1, 1000, 0.9), hit(1, 2, 2000, 0.4), hit(1, 10, 10_000, 0.6)]
    moments = group_moments(hits, gap_ms=1000)
    assert spans(moments) == [(1, 0, 2000), (1, 10_000, 10_000)]
    first = moments[0]
    assert first.score == 0.9 and first.best_image_id == "1:1" and first.best.image_id == "1:1"
    assert [f.image_id for f in first.frames] == ["1:0", "1:1", "1:2"]  # time order, not score order


def test_the_gap_is_inclusive_and_zero_keeps_frames_apart() -> None:
    hits = [hit(1, 0, 0, 0.5), hit(1, 1, 500, 0.4)]
    assert spans(group_moments(hits, gap_ms=500)) == [(1, 0, 500)]
    assert spans(group_moments(hits, gap_ms=499)) == [(1, 0, 0), (1, 500, 500)]
    assert len(group_moments([hit(1, 0, 0, 0.5), hit(1, 1, 0, 0.4)], gap_ms=0)) == 1  # same instant


def test_hits_arrive_in_score_order_and_videos_never_mix() -> None:
    hits = [hit(2, 5, 5000, 0.95), hit(1, 5, 5000, 0.9), hit(2, 4, 4000, 0.3), hit(1, 6, 6000, 0.2)]
    moments = group_moments(hits, gap_ms=1500)
    assert spans(moments) == [(2, 4000, 5000), (1, 5000, 6000)]
    assert [m.score for m in moments] == [0.95, 0.9]


def test_per_video_cap_keeps_each_videos_best_moments() -> None:
    hits = [hit(1, f, f * 10_000, s) for f, s in enumerate([0.1, 0.8, 0.3, 0.7])] + [hit(2, 0, 0, 0.2)]
    moments = group_moments(hits, gap_ms=1000, per_video=2)
    assert spans(moments) == [(1, 10_000, 10_000), (1, 30_000, 30_000), (2, 0, 0)]
    assert len(group_moments(hits, gap_ms=1000, per_video=None)) == 5
    assert spans(group_moments(hits, gap_ms=1000, per_video=2, limit=1)) == [(1, 10_000, 10_000)]


def test_a_frame_standing_for_dropped_duplicates_stretches_its_moment() -> None:
    """Frame 0 stands for 0..5 s (its near-duplicates were dropped): the frame at 6 s is 1 s after
    that span, so one moment, running to the later of the two ends."""
    hits = [hit(1, 0, 0, 0.8, span_end=5000), hit(1, 6, 6000, 0.5), hit(1, 9, 9000, 0.4)]
    assert spans(group_moments(hits, gap_ms=1000)) == [(1, 0, 6000), (1, 9000, 9000)]
    assert spans(group_moments([hit(1, 0, 0, 0.8, span_end=5000)], gap_ms=1000)) == [(1, 0, 5000)]


def test_untimed_hits_are_moments_of_their_own() -> None:
    moments = group_moments([hit(1, 0, None, 0.3), hit(1, 1, None, 0.6), hit(1, 2, 0, 0.5)], gap_ms=10_000)
    assert [(m.best_image_id, m.start_ms, m.end_ms) for m in moments] == [("1:1", None, None), ("1:2", 0, 0), ("1:0", None, None)]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="gap_ms"):
        group_moments([], gap_ms=-1)
    with pytest.raises(ValueError, match="per_video"):
        group_moments([], per_video=0)
    assert group_moments([]) == []
