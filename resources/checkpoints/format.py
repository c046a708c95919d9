"""Parquet checkpoints of embedded frames: the durable record the index is loaded from.

One row per frame. Vectors are stored as fixed-size float32 lists so a reader gets them back as
contiguous ``(frames, dim)`` / ``(patches, dim)`` numpy arrays without copying row by row.
File-level metadata names the model and patch settings that produced the vectors, so stale
checkpoints can be recognised. Files are written to a temporary name and renamed into place:
a reader never sees a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from resources.embedding.encoder import FrameEmbedding

META_KEY = b"framesearch"


@dataclass(frozen=True)
class FrameRecord:
    """A frame's identity and source, with its embeddings."""

    video_id: int
    frame_id: int
    timestamp_ms: int | None
    url: str
    width: int
    height: int
    embedding: FrameEmbedding


def checkpoint_schema(dim: int, metadata: Mapping[str, object] | None = None) -> pa.Schema:
    """Arrow schema of a checkpoint holding ``dim``-dimensional vectors."""
    vector = pa.list_(pa.float32(), dim)
    box = pa.list_(pa.int32(), 4)  # x, y, w, h in frame pixels
    schema = pa.schema(
        [
            pa.field("video_id", pa.int64(), nullable=False),
            pa.field("frame_id", pa.int64(), nullable=False),
            pa.field("timestamp_ms", pa.int64()),
            pa.field("url", pa.string(), nullable=False),
            pa.field("width", pa.int32(), nullable=False),
            pa.field("height", pa.int32(), nullable=False),
            pa.field("global_vector", vector, nullable=False),
            pa.field("patch_vectors", pa.list_(vector), nullable=False),
            pa.field("patch_boxes", pa.list_(box), nullable=False),  # core window the patch stands for
            pa.field("patch_crop_boxes", pa.list_(box), nullable=False),  # padded box: the embedded pixels
            pa.field("patch_scales", pa.list_(pa.float32()), nullable=False),
            pa.field("model_id", pa.string(), nullable=False),
        ]
    )
    if metadata:
        schema = schema.with_metadata({META_KEY: json.dumps(dict(metadata), sort_keys=True).encode()})
    return schema


def _ragged(rows: Sequence[np.ndarray], value_type: pa.DataType, width: int | None = None) -> pa.Array:
    """Arrow ``list<value>`` (or ``list<fixed_size_list<value, width>>``) from per-row arrays."""
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int32)
    dtype = value_type.to_pandas_dtype()
    flat = np.concatenate([np.asarray(r, dtype=dtype).reshape(-1) for r in rows]) if rows else np.zeros(0, dtype)
    values: pa.Array = pa.array(flat, type=value_type)
    if width is not None:
        values = pa.FixedSizeListArray.from_arrays(values, width)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def records_to_table(records: Sequence[FrameRecord], model_id: str, dim: int, metadata: Mapping[str, object] | None = None) -> pa.Table:
    """Build a checkpoint table; every vector must be ``dim`` wide and finite."""
    for record in records:
        emb = record.embedding
        if emb.global_vector.shape != (dim,) or emb.patch_vectors.ndim != 2 or emb.patch_vectors.shape[1] != dim:
            raise ValueError(
                f"frame {record.video_id}:{record.frame_id} has vectors {emb.global_vector.shape}/"
                f"{emb.patch_vectors.shape}, expected ({dim},)/(patches, {dim})"
            )
        if not (np.isfinite(emb.global_vector).all() and np.isfinite(emb.patch_vectors).all()):
            raise ValueError(f"frame {record.video_id}:{record.frame_id} has non-finite vectors")
    schema = checkpoint_schema(dim, metadata)
    globals_ = np.stack([r.embedding.global_vector for r in records]) if records else np.zeros((0, dim))
    columns = [
        pa.array([r.video_id for r in records], pa.int64()),
        pa.array([r.frame_id for r in records], pa.int64()),
        pa.array([r.timestamp_ms for r in records], pa.int64()),
        pa.array([r.url for r in records], pa.string()),
        pa.array([r.width for r in records], pa.int32()),
        pa.array([r.height for r in records], pa.int32()),
        pa.FixedSizeListArray.from_arrays(pa.array(globals_.reshape(-1).astype(np.float32)), dim),
        _ragged([r.embedding.patch_vectors for r in records], pa.float32(), dim),
        _ragged([r.embedding.plan.core for r in records], pa.int32(), 4),
        _ragged([r.embedding.plan.padded for r in records], pa.int32(), 4),
        _ragged([r.embedding.plan.scale for r in records], pa.float32()),
        pa.array([model_id] * len(records), pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def published_path(store: str | Path, video_id: int) -> Path:
    """Where a video's published checkpoint lives in a checkpoint store folder."""
    return Path(store) / f"video_{video_id}.parquet"


def content_version(table: pa.Table) -> str:
    """A digest of the table's rows (not its metadata): equal content, equal version."""
    digest = hashlib.sha256()
    for name in table.column_names:
        digest.update(name.encode())
        array = table.column(name).combine_chunks()
        digest.update(str(len(array)).encode())
        for buffer in array.buffers():  # includes the child arrays' buffers of nested types
            if buffer is not None:
                digest.update(memoryview(buffer))
    return digest.hexdigest()[:16]


def write_table_atomic(table: pa.Table, path: str | Path) -> str:
    """Write ``table`` to ``path`` via a temporary file and an atomic rename; return its version.

    The version (see :func:`content_version`) is stored in the footer metadata under "version".
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    version = content_version(table)
    meta = dict(table.schema.metadata or {})
    current = json.loads(meta.get(META_KEY, b"{}"))
    meta[META_KEY] = json.dumps({**current, "version": version}, sort_keys=True).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")
    os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half of one
    return version


def read_metadata(path: str | Path) -> dict[str, object]:
    """The framesearch metadata stored in a checkpoint's footer (model id, patch settings, ...)."""
    raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def vectors(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """A ``fixed_size_list<float32, dim>`` column as a ``(rows, dim)`` float32 array."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
