"""Issue 21: the pipeline - the one writer that removes ingest batches - compacts a video's
settled batches when it lists the video, keeping what the listing says."""

from __future__ import annotations

import time

from resources.frame_sources import FrameRef, LocalFolderSource
from resources.frame_sources.base import INGEST_DIR
from resources.vector_index.schema import point_id
from tests.assets.test_videos import index_ids, metadata, png, write_video


def test_a_run_compacts_settled_ingest_batches(pipeline) -> None:  # noqa: ANN001
    videos = pipeline.root / "videos"
    write_video(videos, 12, frames=2)
    source = LocalFolderSource(videos)
    for f in (5, 6, 7):  # three HTTP ingests, one frame each
        (videos / f"{f}.png").write_bytes(png(160, 120, f))
        source.record_frames(12, [FrameRef(f, f * 100, (videos / f"{f}.png").as_uri())])
    batch_dir = videos / "12" / INGEST_DIR
    # Made two minutes ago: settled (a batch under a minute old is left alone).
    old = time.time_ns() - 120 * 10**9
    for i, path in enumerate(sorted(batch_dir.iterdir())):
        path.rename(batch_dir / f"{old + i:020d}{path.name[20:]}")
    fresh = source.record_frames(12, [FrameRef(8, 800, (videos / "7.png").as_uri())])  # just now

    result = pipeline(12)
    assert result.success
    assert metadata(result, "frame_manifest")["frames"] == len(fresh) == 6
    assert index_ids(pipeline.root, 12) == {point_id(12, f) for f in (0, 1, 5, 6, 7, 8)}
    assert len(list(batch_dir.glob("*.jsonl"))) == 2  # the three settled ones merged; the fresh one kept
    assert source.manifest(12) == fresh
