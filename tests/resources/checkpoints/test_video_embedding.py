"""Chunked, resumable video embedding: an interrupted run resumes without re-embedding."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from resources.checkpoints.format import published_path, read_metadata
from resources.checkpoints.video_embedding import embed_video
from resources.checkpoints.video_job import NoUsableFrameError, SourceUnavailableError
from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig, plan_patches
from resources.frame_sources import FrameRef, LocalFolderSource
from tests.conftest import make_frame

PATCHES = PatchConfig(window=64, stride=32)


class NetworkDrop(RuntimeError):
    pass


class DroppingSource(LocalFolderSource):
    """A real local source whose connection 'drops' after ``reads_before_failure`` reads."""

    def __init__(self, root: Path, reads_before_failure: int) -> None:
        super().__init__(root, fps=10.0)
        self.reads_left = reads_before_failure

    def read(self, url: str) -> bytes:
        if self.reads_left == 0:
            raise NetworkDrop("connection reset")
        self.reads_left -= 1
        return super().read(url)


def video(root: Path, video_id: int = 1, frames: int = 10) -> Path:
    folder = root / str(video_id)
    folder.mkdir(parents=True)
    for f in range(frames):
        buffer = io.BytesIO()
        Image.fromarray(make_frame(128, 96, f).permute(1, 2, 0).numpy()).save(buffer, "PNG")
        (folder / f"frame_{f:03d}.png").write_bytes(buffer.getvalue())
    return root


def test_interrupted_run_resumes_from_the_last_chunk(tmp_path: Path, tiny_encoder: FrameEncoder) -> None:
    root = video(tmp_path / "videos")
    refs = LocalFolderSource(root, fps=10.0).manifest(1)
    store = tmp_path / "store"

    with pytest.raises(NetworkDrop):
        embed_video(1, refs, DroppingSource(root, reads_before_failure=7), tiny_encoder, store, PATCHES, chunk_frames=3)
    assert not published_path(store, 1).exists()  # nothing half-done is published
    finished_chunks = sorted((store / "_work" / "video_1").glob("chunk_*.parquet"))
    assert len(finished_chunks) == 2  # frames 0-5; frame 6 was read but its chunk never finished

    resumed = embed_video(1, refs, LocalFolderSource(root, fps=10.0), tiny_encoder, store, PATCHES, chunk_frames=3)
    per_frame = 1 + len(plan_patches(128, 96, PATCHES))  # global view + patch crops
    assert resumed.chunks_resumed == 2 and resumed.chunks_total == 4
    assert resumed.images_encoded == 4 * per_frame  # only frames 6-9 were embedded again
    assert not (store / "_work" / "video_1").exists()

    fresh = embed_video(1, refs, LocalFolderSource(root, fps=10.0), tiny_encoder, tmp_path / "fresh", PATCHES, chunk_frames=3)
    assert fresh.images_encoded == 10 * per_frame
    assert pq.read_table(published_path(store, 1)).equals(pq.read_table(published_path(tmp_path / "fresh", 1)))
    assert resumed.version == fresh.version == read_metadata(published_path(store, 1))["version"]

    again = embed_video(1, refs, LocalFolderSource(root, fps=10.0), tiny_encoder, store, PATCHES, chunk_frames=3)
    assert again.up_to_date and again.images_encoded == 0 and again.version == fresh.version
    assert (again.frames, again.patches) == (fresh.frames, fresh.patches)


def test_chunks_of_another_plan_are_not_reused(tmp_path: Path, tiny_encoder: FrameEncoder) -> None:
    root = video(tmp_path / "videos", frames=6)
    refs = LocalFolderSource(root, fps=10.0).manifest(1)
    store = tmp_path / "store"
    with pytest.raises(NetworkDrop):
        embed_video(1, refs, DroppingSource(root, 4), tiny_encoder, store, PATCHES, chunk_frames=2)
    other = embed_video(1, refs, LocalFolderSource(root, fps=10.0), tiny_encoder, store, PatchConfig(window=48, stride=48), chunk_frames=2)
    assert other.chunks_resumed == 0  # patch settings changed: old chunks discarded


def test_no_usable_frame(tmp_path: Path, tiny_encoder: FrameEncoder) -> None:
    folder = tmp_path / "videos" / "2"
    folder.mkdir(parents=True)
    (folder / "frame_1.png").write_bytes(b"")
    refs = LocalFolderSource(tmp_path / "videos").manifest(2)
    with pytest.raises(NoUsableFrameError, match="frame 1: empty input"):
        embed_video(2, refs, LocalFolderSource(tmp_path / "videos"), tiny_encoder, tmp_path / "store", PATCHES)


def test_a_transient_read_error_stops_the_run_and_is_never_a_skip(tmp_path: Path, tiny_encoder: FrameEncoder) -> None:
    root = video(tmp_path / "videos", frames=7)
    source = LocalFolderSource(root, fps=10.0)
    refs = source.manifest(1)
    flaky = [*refs[:4], FrameRef(4, 400, "file:///proc/self/mem"), *refs[5:]]  # reading it fails with EIO
    store = tmp_path / "store"
    with pytest.raises(SourceUnavailableError, match=r"video 1: stopped at chunk 2/3, .*Input/output error.*re-run to resume"):
        embed_video(1, flaky, source, tiny_encoder, store, PATCHES, chunk_frames=3)
    assert not published_path(store, 1).exists()
    assert [p.name for p in sorted((store / "_work" / "video_1").glob("chunk_*"))] == ["chunk_00000.parquet"]

    # A missing file, by contrast, is a permanent problem of that frame: skipped and reported.
    gone = [*refs[:4], FrameRef(4, 400, (root / "1" / "gone.png").as_uri()), *refs[5:]]
    report = embed_video(1, gone, source, tiny_encoder, store, PATCHES, chunk_frames=3)
    assert report.frames == 6 and list(report.skipped) == [4] and "missing" in report.skipped[4]
