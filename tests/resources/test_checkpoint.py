"""Parquet checkpoints: schema, round trip of vectors and boxes, atomic write, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from resources.checkpoint import FrameRecord, read_metadata, records_to_table, vectors, write_table_atomic
from resources.encoder import FrameEmbedding, FrameEncoder
from resources.patches import PatchConfig
from tests.conftest import make_frame


def test_round_trip(tiny_encoder: FrameEncoder, tmp_path: Path) -> None:
    frames = [make_frame(320, 200, seed=s) for s in range(3)]
    embeddings = tiny_encoder.encode_frames(frames, PatchConfig(window=96, stride=48))
    records = [FrameRecord(7, 10 * i, 400 * i, f"file:///f{i}.png", 320, 200, e) for i, e in enumerate(embeddings)]
    table = records_to_table(records, tiny_encoder.info.model_id, 64, metadata={"model_id": tiny_encoder.info.model_id})
    path = tmp_path / "sub" / "video_7.parquet"
    version = write_table_atomic(table, path)
    assert [p.name for p in path.parent.iterdir()] == ["video_7.parquet"]  # no temp file left behind
    assert write_table_atomic(table, tmp_path / "copy.parquet") == version  # content, not time
    assert write_table_atomic(table.slice(0, 2), tmp_path / "part.parquet") != version

    back = pq.read_table(path)
    assert back.column("frame_id").to_pylist() == [0, 10, 20]
    np.testing.assert_array_equal(vectors(back.column("global_vector"), 64), np.stack([e.global_vector for e in embeddings]))
    patches = back.column("patch_vectors").to_pylist()
    for row, emb in zip(patches, embeddings):
        np.testing.assert_array_equal(np.asarray(row, dtype=np.float32), emb.patch_vectors)
    assert back.column("patch_boxes").to_pylist()[1] == embeddings[1].plan.core.tolist()
    assert back.column("patch_crop_boxes").to_pylist()[1] == embeddings[1].plan.padded.tolist()
    assert read_metadata(path) == {"model_id": tiny_encoder.info.model_id, "version": version}


def test_rejects_wrong_dimension_and_non_finite(tiny_encoder: FrameEncoder) -> None:
    [emb] = tiny_encoder.encode_frames([make_frame(100, 100)], PatchConfig(window=64, stride=32))
    record = FrameRecord(1, 1, None, "u", 100, 100, emb)
    with pytest.raises(ValueError, match="expected"):
        records_to_table([record], "m", 32)
    bad = FrameEmbedding(emb.global_vector.copy(), emb.patch_vectors, emb.plan)
    bad.global_vector[0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        records_to_table([FrameRecord(1, 1, None, "u", 100, 100, bad)], "m", 64)
