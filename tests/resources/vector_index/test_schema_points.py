"""Index points built from a checkpoint: payloads carry what search results and moments need."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from resources.checkpoints.format import FrameRecord, records_to_table, write_table_atomic
from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig
from resources.vector_index.schema import points_from_checkpoint
from tests.conftest import make_frame


def test_points_carry_the_span_a_kept_frame_stands_for(tiny_encoder: FrameEncoder, tmp_path: Path) -> None:
    """Frames that absorbed dropped near-duplicates (the checkpoint footer's span_end_ms) carry
    span_end_ms in their payload, so moments stay continuous; the others do not."""
    frames = [make_frame(160, 120, seed=s) for s in range(3)]
    embeddings = tiny_encoder.encode_frames(frames, PatchConfig(window=96, stride=48))
    records = [FrameRecord(4, 10 * i, 400 * i, f"file:///f{i}.png", 160, 120, e) for i, e in enumerate(embeddings)]
    table = records_to_table(records, "m", 64, metadata={"model_id": "m", "span_end_ms": {"10": 1200}})
    path = tmp_path / "video_4.parquet"
    version = write_table_atomic(table, path)
    points = points_from_checkpoint(pq.read_table(path), 64, version)
    assert [p.payload.get("span_end_ms") for p in points] == [None, 1200, None]
    assert points[1].payload["timestamp_ms"] == 400 and points[1].payload["checkpoint_version"] == version
    np.testing.assert_allclose(points[2].patch_vectors, embeddings[2].patch_vectors)
