"""Parquet checkpoints: schema, round trip of vectors and boxes, atomic write, validation; and the
checkpoint store, one suite run against a local folder and against S3 (moto's server over HTTP)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from resources.checkpoints.format import (
    META_KEY,
    FrameRecord,
    content_version,
    read_metadata,
    records_to_table,
    vectors,
    write_table_atomic,
)
from resources.checkpoints.store import CheckpointStore, published_key
from resources.checkpoints.video_embedding import embed_video
from resources.embedding.encoder import EncoderConfig, FrameEmbedding, FrameEncoder
from resources.embedding.patches import PatchConfig, plan_patches
from resources.frame_sources import LocalFolderSource
from resources.vector_index import VectorIndex
from resources.vector_index.follower import CheckpointFollower, sync_or_defer
from resources.vector_index.schema import IndexSchema
from tests.conftest import make_frame
from tests.resources.checkpoints.test_video_embedding import PATCHES, video


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


# --- The checkpoint store: one suite, run against a local folder and S3 (moto over HTTP) --------

DIM = 16
KILL_AFTER_READS = """
import json, os, signal, sys
from pathlib import Path
from resources.checkpoints.store import CheckpointStore
from resources.embedding.encoder import EncoderConfig, FrameEncoder
from resources.frame_sources import LocalFolderSource
from resources.embedding.patches import PatchConfig
from resources.checkpoints.video_embedding import embed_video

args = json.loads(sys.argv[1])

class DyingStore(CheckpointStore):
    def write_table(self, key, table):
        if key.endswith(args["dies_writing"]):
            os.kill(os.getpid(), signal.SIGKILL)  # no exception, no cleanup: the machine is gone
        return super().write_table(key, table)

source = LocalFolderSource(Path(args["videos"]), fps=10.0)
encoder = FrameEncoder.load(EncoderConfig(**args["encoder"]))
embed_video(1, source.manifest(1), source, encoder, DyingStore(args["store"]), PatchConfig(**args["patches"]), chunk_frames=3)
"""


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CheckpointStore:
    """An empty store: a temporary folder, or a fresh bucket on moto's S3 server reached over HTTP
    with credentials from the environment (the AWS SDK's default chain) and S3_ENDPOINT_URL."""
    if request.param == "local":
        return CheckpointStore(tmp_path / "checkpoints")
    endpoint, s3 = request.getfixturevalue("moto_s3_endpoint"), request.getfixturevalue("s3_client")
    bucket = f"checkpoints-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1"),
                        ("AWS_EC2_METADATA_DISABLED", "true"), ("S3_ENDPOINT_URL", endpoint)):
        monkeypatch.setenv(name, value)
    return CheckpointStore(f"s3://{bucket}/framesearch/checkpoints/")


def random_table(video_id: int, frames: int, seed: int) -> pa.Table:
    """A checkpoint table of random unit vectors (the format, without a model)."""
    rng = np.random.default_rng(seed)
    plan = plan_patches(200, 100, PatchConfig(window=64, stride=64))
    records = []
    for f in range(frames):
        g, p = rng.normal(size=DIM).astype(np.float32), rng.normal(size=(len(plan), DIM)).astype(np.float32)
        emb = FrameEmbedding(g / np.linalg.norm(g), p / np.linalg.norm(p, axis=1, keepdims=True), plan)
        records.append(FrameRecord(video_id, f, 100 * f, f"file:///v{video_id}/{f}.png", 200, 100, emb))
    return records_to_table(records, "test-model", DIM, metadata={"model_id": "test-model"})


def test_store_round_trip_versions_and_listing(store: CheckpointStore) -> None:
    table = random_table(7, 4, seed=0)
    version = store.write_table(published_key(7), table)
    assert store.write_table("copy/video_7.parquet", table) == version  # content, not time
    store.write_json("manifests/video_7.json", {"frames": 4})
    store.write_table("_work/video_8/chunk_00000.parquet", random_table(8, 1, seed=1))
    assert store.read_metadata(published_key(7)) == {"model_id": "test-model", "version": version}
    back = store.read_table(published_key(7))
    assert back.replace_schema_metadata(None).equals(table.replace_schema_metadata(None))
    assert content_version(back) == version
    assert set(store.published()) == {7}  # chunks, copies and manifests are not published checkpoints
    keys = sorted(o.key for o in store.list(recursive=True))
    assert keys == ["_work/video_8/chunk_00000.parquet", "copy/video_7.parquet", "manifests/video_7.json", "video_7.parquet"]
    store.delete_prefix("_work/video_8")
    store.delete_prefix("_work/video_9")  # missing is fine
    assert store.list("_work", recursive=True) == [] and store.read_json("absent.json") is None
    assert store.uri("video_7.parquet").startswith("s3://" if store.is_s3 else str(store.root))


def test_a_reader_never_sees_half_a_checkpoint(store: CheckpointStore) -> None:
    """A writer replaces a checkpoint over and over while a reader reads it: every read is one
    version whole (its rows hash to the version in its own footer)."""
    tables = [random_table(1, frames, seed=frames) for frames in (40, 3)]  # different sizes on purpose
    versions = {store.write_table(published_key(1), tables[0]), content_version(tables[1])}
    stop = threading.Event()

    def keep_publishing() -> None:
        n = 0
        while not stop.is_set():
            store.write_table(published_key(1), tables[n % 2])
            n += 1

    writer = threading.Thread(target=keep_publishing)
    writer.start()
    try:
        seen, deadline = set(), time.monotonic() + 2.0
        while time.monotonic() < deadline or len(seen) < 2:
            table = store.read_table(published_key(1))
            meta = json.loads(table.schema.metadata[META_KEY])
            assert content_version(table) == meta["version"] and meta["version"] in versions
            assert store.read_metadata(published_key(1))["version"] in versions
            seen.add(meta["version"])
            assert time.monotonic() < deadline + 10, "the reader never saw both versions"
    finally:
        stop.set()
        writer.join()


@pytest.mark.slow
def test_a_run_killed_mid_video_resumes_from_the_stored_chunks(store: CheckpointStore, tmp_path: Path, tiny_config: EncoderConfig, tiny_encoder: FrameEncoder) -> None:
    """A process SIGKILLed while writing the third of four chunks leaves two finished chunks and
    nothing published; the next run embeds only the rest and publishes what a fresh run does.
    (The encoder takes frames in groups that span chunks, so a crash loses at most one group.)"""
    root = video(tmp_path / "videos")
    args = {
        "videos": str(root), "store": store.root, "dies_writing": "chunk_00002.parquet",  # chunks 0-1 finished
        "encoder": {"model": tiny_config.model, "pretrained": tiny_config.pretrained, "batch_size": tiny_config.batch_size, "precision": tiny_config.precision},
        "patches": {"window": PATCHES.window, "stride": PATCHES.stride},
    }
    child = subprocess.run([sys.executable, "-c", KILL_AFTER_READS, json.dumps(args)], cwd=Path(__file__).parents[3], capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert not store.exists(published_key(1))  # nothing half-done is published
    assert sorted(o.key for o in store.list("_work/video_1")) == [
        "_work/video_1/chunk_00000.parquet", "_work/video_1/chunk_00001.parquet", "_work/video_1/plan.json"]

    source = LocalFolderSource(root, fps=10.0)
    refs = source.manifest(1)
    resumed = embed_video(1, refs, source, tiny_encoder, store, PATCHES, chunk_frames=3)
    per_frame = 1 + len(plan_patches(128, 96, PATCHES))  # global view + patch crops
    assert (resumed.chunks_resumed, resumed.chunks_total, resumed.images_encoded) == (2, 4, 4 * per_frame)
    assert store.list("_work", recursive=True) == []  # the work chunks are removed once published
    fresh = embed_video(1, refs, source, tiny_encoder, tmp_path / "fresh", PATCHES, chunk_frames=3)
    assert resumed.version == fresh.version == store.read_metadata(published_key(1))["version"]
    assert resumed.checkpoint == store.uri(published_key(1))
    # Staleness check against the stored footer: the same plan is up to date, nothing is embedded.
    again = embed_video(1, refs, source, tiny_encoder, store, PATCHES, chunk_frames=3)
    assert again.up_to_date and again.images_encoded == 0 and again.version == fresh.version


def test_the_follower_reads_the_store(store: CheckpointStore, tmp_path: Path) -> None:
    with VectorIndex.open(IndexSchema("frames_store", DIM), path=tmp_path / "qdrant") as index:
        follower = CheckpointFollower(index, store.root)  # CHECKPOINT_DIR as the service passes it
        assert follower.poll() == []
        v1 = store.write_table(published_key(1), random_table(1, 5, seed=1))
        store.write_table(published_key(2), random_table(2, 3, seed=2))
        assert {(r.video_id, r.points) for r in follower.poll()} == {(1, 5), (2, 3)}
        assert index.count(1, v1) == 5 and follower.poll() == [] and follower.lag_seconds() < 5
        store.write_table(published_key(1), random_table(1, 2, seed=3))  # replaced: video 1 shrinks
        [result] = follower.poll()
        assert (result.video_id, result.deleted, index.count(1)) == (1, 3, 2)
        store.fs.delete_file(store.path(published_key(2)))
        follower.poll()
        assert index.count(2) == 0 and index.count(1) == 2
    # The pipeline's path (index_sync): sync one video straight from the store when it can open the index.
    v3 = store.write_table(published_key(3), random_table(3, 4, seed=4))
    result = sync_or_defer(lambda: VectorIndex.open(IndexSchema("frames_store", DIM), path=tmp_path / "qdrant"), 3, store)
    assert result is not None and (result.video_id, result.points, result.version) == (3, 4, v3)
