"""Embedding video files: near-duplicates of a still scene dropped, counted and their time credited
to the kept frame; a run killed mid-video resumes by seeking past the finished chunks; a truncated
file embeds its good part and reports the rest."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow.parquet as pq
import pytest

from resources.checkpoints.dedup import DedupConfig
from resources.checkpoints.format import published_path, read_metadata
from resources.checkpoints.video_embedding import embed_video
from resources.checkpoints.video_job import SourceUnavailableError, plan_digest
from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig
from resources.frame_sources import FrameReadError, LocalFolderSource, SamplingPolicy
from tests.resources.frame_sources.test_video_sources import encode_clip, noise_frame

PATCHES = PatchConfig(window=64, stride=32)
REPO = Path(__file__).resolve().parents[3]
OFF = DedupConfig(threshold=0.0)


class CountingFile(io.RawIOBase):
    """A file that counts the bytes it hands out."""

    def __init__(self, handle: IO[bytes], counter: list[int]) -> None:
        super().__init__()
        self._handle, self._counter = handle, counter

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001 - a writable buffer
        count = self._handle.readinto(buffer)
        self._counter[0] += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()

    def close(self) -> None:
        self._handle.close()
        super().close()


class FlakySource(LocalFolderSource):
    """A real local source that counts bytes read and whose connection drops at the n-th open."""

    def __init__(self, root: Path, policy: str, fail_at_open: int | None = None) -> None:
        super().__init__(root, sampling=SamplingPolicy.parse(policy))
        self.opens, self.fail_at_open, self.bytes = 0, fail_at_open, [0]

    def open_file(self, url: str) -> IO[bytes]:
        self.opens += 1
        if self.opens == self.fail_at_open:
            raise FrameReadError(url, "connection reset", transient=True)
        return CountingFile(super().open_file(url), self.bytes)


def test_still_scenes_are_dropped_counted_and_credited(tmp_path: Path, tiny_encoder: FrameEncoder) -> None:
    encode_clip(tmp_path / "videos" / "4" / "clip.mp4")  # 1 s still red, 1 s still blue, 1 s moving square
    source = LocalFolderSource(tmp_path / "videos", sampling=SamplingPolicy.parse("fps:10"))
    refs = source.manifest(4)
    assert len(refs) == 30
    report = embed_video(4, refs, source, tiny_encoder, tmp_path / "store", PATCHES, dedup=DedupConfig(0.02))
    assert report.frames == 12 and not report.skipped  # 0, 30 and the ten frames of the moving square
    assert report.dropped == {**{f: 0 for f in range(3, 30, 3)}, **{f: 30 for f in range(33, 60, 3)}}
    assert report.span_end_ms == {0: 1000, 30: 2000}  # each still frame stands for its whole scene
    meta = read_metadata(published_path(tmp_path / "store", 4))
    assert meta["dropped"] == {str(k): v for k, v in report.dropped.items()} and meta["span_end_ms"] == {"0": 1000, "30": 2000}
    table = pq.read_table(published_path(tmp_path / "store", 4), columns=["frame_id", "timestamp_ms", "url"])
    assert table.column("frame_id").to_pylist() == [0, 30, *range(60, 90, 3)]
    assert table.column("url").to_pylist()[1].endswith("clip.mp4#frame=30&t=1.000")
    assert report.seconds["dedup"] > 0

    again = embed_video(4, refs, source, tiny_encoder, tmp_path / "store", PATCHES, dedup=DedupConfig(0.02))
    assert again.up_to_date and again.dropped == report.dropped  # restored from the footer
    everything = embed_video(4, refs, source, tiny_encoder, tmp_path / "off", PATCHES, dedup=OFF)
    assert everything.frames == 30 and not everything.dropped


def test_dedup_setting_changes_the_plan_of_video_frames_only(tmp_path: Path) -> None:
    encode_clip(tmp_path / "4" / "clip.mp4", frames=10)
    video_refs = LocalFolderSource(tmp_path, sampling=SamplingPolicy.parse("fps:10")).manifest(4)
    image_refs = [r.__class__(r.frame_id, r.timestamp_ms, f"file:///x/frame_{r.frame_id}.jpg") for r in video_refs]
    for refs, differs in ((video_refs, True), (image_refs, False)):
        plans = {plan_digest(refs, "m", PATCHES, 64, config) for config in (OFF, DedupConfig(0.02))}
        assert (len(plans) == 2) is differs
    assert plan_digest(image_refs, "m", PATCHES, 64, OFF) != plan_digest(image_refs, "m", PATCHES, 64, DedupConfig(0.02, all_frames=True))


# Run in a child process that is killed (os._exit: no cleanup, no exception handling) right after
# the second of four chunks is on disk.
KILLED_RUN = """
import os, sys
from pathlib import Path
from resources.checkpoints.dedup import DedupConfig
from resources.embedding.encoder import EncoderConfig, FrameEncoder
from resources.frame_sources import LocalFolderSource, SamplingPolicy
from resources.embedding.patches import PatchConfig
from resources.checkpoints.video_embedding import embed_video

root, store, weights = map(Path, sys.argv[1:4])
source = LocalFolderSource(root, sampling=SamplingPolicy.parse("fps:1"))
encoder = FrameEncoder.load(EncoderConfig(model="framesearch-tiny", pretrained=str(weights), batch_size=16, precision="fp32"))
kill = lambda done, total: os._exit(9) if done == 2 else None
embed_video(5, source.manifest(5), source, encoder, store, PatchConfig(window=64, stride=32), chunk_frames=2, on_chunk=kill, dedup=DedupConfig(0.0))
"""


@pytest.mark.slow
def test_killed_run_resumes_mid_video_by_seeking(tmp_path: Path, tiny_encoder: FrameEncoder, tiny_weights: Path) -> None:
    clip = encode_clip(tmp_path / "videos" / "5" / "clip.mp4", frames=200, draw=noise_frame, fps=25, gop=25)  # 8 s
    refs = FlakySource(tmp_path / "videos", "fps:1").manifest(5)
    assert [r.frame_id for r in refs] == list(range(0, 200, 25))
    store = tmp_path / "store"
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(tmp_path / "videos"), str(store), str(tiny_weights)], cwd=REPO, timeout=300)
    assert killed.returncode == 9
    assert not published_path(store, 5).exists()
    assert len(list((store / "_work" / "video_5").glob("chunk_*.parquet"))) == 2

    resumed_source = FlakySource(tmp_path / "videos", "fps:1")
    resumed = embed_video(5, refs, resumed_source, tiny_encoder, store, PATCHES, chunk_frames=2, dedup=OFF)
    assert (resumed.chunks_resumed, resumed.frames, resumed_source.opens) == (2, 8, 2)
    # Seeking to 4 s: the finished half of the file is not read (nor decoded) again.
    assert resumed_source.bytes[0] < 0.6 * clip.stat().st_size  # measured 44%: the second half and the index

    fresh = embed_video(5, refs, FlakySource(tmp_path / "videos", "fps:1"), tiny_encoder, tmp_path / "fresh", PATCHES, chunk_frames=2, dedup=OFF)
    a, b = (pq.read_table(published_path(s, 5)) for s in (store, tmp_path / "fresh"))
    assert a.column("frame_id").to_pylist() == b.column("frame_id").to_pylist()
    np.testing.assert_array_equal(np.stack(a.column("global_vector").to_numpy(zero_copy_only=False)), np.stack(b.column("global_vector").to_numpy(zero_copy_only=False)))
    assert fresh.version == resumed.version


def test_transient_failure_mid_video_keeps_finished_chunks(tmp_path: Path, tiny_encoder: FrameEncoder) -> None:
    encode_clip(tmp_path / "videos" / "5" / "clip.mp4", frames=90)
    refs = FlakySource(tmp_path / "videos", "fps:2").manifest(5)
    with pytest.raises(SourceUnavailableError, match="chunk 2/3"):
        embed_video(5, refs, FlakySource(tmp_path / "videos", "fps:2", fail_at_open=2), tiny_encoder, tmp_path / "store", PATCHES, chunk_frames=2, dedup=OFF)
    assert len(list((tmp_path / "store" / "_work" / "video_5").glob("chunk_*.parquet"))) == 1


def test_truncated_video_embeds_its_good_part(tmp_path: Path, tiny_encoder: FrameEncoder) -> None:
    path = encode_clip(tmp_path / "videos" / "6" / "cut.mkv")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    source = LocalFolderSource(tmp_path / "videos", sampling=SamplingPolicy.parse("fps:4"))
    refs = source.manifest(6)
    report = embed_video(6, refs, source, tiny_encoder, tmp_path / "store", PATCHES, dedup=OFF)
    assert report.frames >= 3 and report.frames + len(report.skipped) == len(refs)
    assert report.skipped and all("truncated or corrupt" in reason for reason in report.skipped.values())
