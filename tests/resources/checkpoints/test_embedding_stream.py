"""Many videos through one embedding stream: batches across videos, each video still its own."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from resources.checkpoints.dedup import DedupConfig
from resources.checkpoints.embedding_stream import EmbeddingStream, VideoEmbedded, VideoFailed, VideoInput, VideoListed
from resources.checkpoints.format import published_path
from resources.checkpoints.store import CheckpointStore
from resources.checkpoints.video_embedding import embed_video
from resources.checkpoints.video_job import CheckpointRejected, NoUsableFrameError, SourceUnavailableError
from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig
from resources.frame_sources import FrameReadError, FrameRef, LocalFolderSource
from tests.conftest import make_frame

PATCHES = PatchConfig(window=64, stride=32)
OFF = DedupConfig(0.0)
FRAME_BYTES = 3 * 96 * 128


def library(root: Path, videos: int, frames: int) -> Path:
    for video_id in range(1, videos + 1):
        folder = root / str(video_id)
        folder.mkdir(parents=True)
        for f in range(frames):
            buffer = io.BytesIO()
            Image.fromarray(make_frame(128, 96, video_id * 100 + f).permute(1, 2, 0).numpy()).save(buffer, "PNG")
            (folder / f"frame_{f:03d}.png").write_bytes(buffer.getvalue())
    return root


class CountingSource(LocalFolderSource):
    """A real local source that counts its reads (and can fail one video's reads as an outage)."""

    def __init__(self, root: Path, outage_video: int | None = None) -> None:
        super().__init__(root, fps=10.0)
        self.reads, self.outage_video = 0, outage_video

    def read(self, url: str) -> bytes:
        if self.outage_video is not None and f"/{self.outage_video}/" in url:
            raise FrameReadError(url, "connection reset", transient=True)
        self.reads += 1
        return super().read(url)


@pytest.fixture
def group_sizes(tiny_encoder: FrameEncoder, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The frames of each encode_frames call the stream makes (the real encoder does the work)."""
    sizes: list[int] = []
    real = tiny_encoder.encode_frames

    def recording(frames: Sequence, *args: object, **kwargs: object):  # noqa: ANN202 - the real method's result
        sizes.append(len(frames))
        return real(frames, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tiny_encoder, "encode_frames", recording)
    return sizes


def inputs(source: LocalFolderSource, video_ids: Sequence[int]) -> list[VideoInput]:
    return [VideoInput(v, lambda v=v: source.manifest(v)) for v in video_ids]


def stream(source: LocalFolderSource, encoder: FrameEncoder, store: Path, **kwargs: object) -> EmbeddingStream:
    return EmbeddingStream(source, encoder, CheckpointStore(store), PATCHES, 10**8, chunk_frames=4, dedup=OFF, **kwargs)  # type: ignore[arg-type]


def test_batches_span_videos_and_each_checkpoint_is_what_one_video_alone_gives(
    tmp_path: Path, tiny_encoder: FrameEncoder, group_sizes: list[int],
) -> None:
    """Six videos of 3 frames, batch_size 16: the encoder sees 16 + 2 frames, not six calls of 3;
    every video is listed then embedded, in order, and its checkpoint equals embedding it alone."""
    source = CountingSource(library(tmp_path / "videos", videos=6, frames=3))
    outcomes = list(stream(source, tiny_encoder, tmp_path / "store").run(inputs(source, range(1, 7))))
    assert group_sizes == [16, 2]
    # Per video: listed before embedded; videos published in order.
    embedded = [o.video_id for o in outcomes if isinstance(o, VideoEmbedded)]
    assert embedded == list(range(1, 7))
    for v in range(1, 7):
        kinds = [type(o) for o in outcomes if o.video_id == v]
        assert kinds == [VideoListed, VideoEmbedded]
    for v in (1, 4, 6):
        alone = embed_video(v, source.manifest(v), source, tiny_encoder, tmp_path / f"alone_{v}", PATCHES, chunk_frames=4, dedup=OFF)
        together = pq.read_table(published_path(tmp_path / "store", v))
        assert together.equals(pq.read_table(published_path(tmp_path / f"alone_{v}", v)))  # bit for bit
        assert alone.version == CheckpointStore(tmp_path / "store").read_metadata(f"video_{v}.parquet")["version"]


def test_one_bad_video_fails_alone(tmp_path: Path, tiny_encoder: FrameEncoder) -> None:
    """Video 2 has no usable frame, video 3's listing raises, video 4's checkpoint is rejected:
    each fails with its own reason; videos 1 and 5 are published."""
    root = library(tmp_path / "videos", videos=5, frames=3)
    for frame in (root / "2").iterdir():
        frame.write_bytes(b"not an image")
    source = CountingSource(root)

    def reject(frames: Sequence[FrameRef]):  # noqa: ANN202
        def validate(table: object) -> None:
            raise CheckpointRejected("rows do not match")
        return validate

    def no_listing() -> list[FrameRef]:
        raise RuntimeError("listing broke")

    videos = [
        VideoInput(1, lambda: source.manifest(1)), VideoInput(2, lambda: source.manifest(2)), VideoInput(3, no_listing),
        VideoInput(4, lambda: source.manifest(4), reject), VideoInput(5, lambda: source.manifest(5)),
    ]
    outcomes = list(stream(source, tiny_encoder, tmp_path / "store").run(videos))
    final = {o.video_id: o for o in outcomes if not isinstance(o, VideoListed)}
    assert sorted(v for v, o in final.items() if isinstance(o, VideoEmbedded)) == [1, 5]
    assert isinstance(final[2], VideoFailed) and isinstance(final[2].error, NoUsableFrameError) and final[2].stage == "embed"
    assert isinstance(final[3], VideoFailed) and final[3].stage == "manifest" and "listing broke" in str(final[3].error)
    assert isinstance(final[4], VideoFailed) and isinstance(final[4].error, CheckpointRejected)
    assert not any(final[v].transient for v in (2, 3, 4))
    store = tmp_path / "store"
    assert [published_path(store, v).exists() for v in range(1, 6)] == [True, False, False, False, True]


def test_an_outage_stops_the_reading_and_keeps_what_was_read(tmp_path: Path, tiny_encoder: FrameEncoder) -> None:
    """Video 3's reads fail as transient: videos 1-2 are published, 3 fails as transient, and the
    stream reads nothing further (4 and 5 get no outcome: the caller fails them as not tried)."""
    source = CountingSource(library(tmp_path / "videos", videos=5, frames=3), outage_video=3)
    outcomes = list(stream(source, tiny_encoder, tmp_path / "store").run(inputs(source, range(1, 6))))
    final = {o.video_id: o for o in outcomes if not isinstance(o, VideoListed)}
    assert sorted(final) == [1, 2, 3]
    assert isinstance(final[3], VideoFailed) and final[3].transient and isinstance(final[3].error, SourceUnavailableError)
    assert source.reads == 6  # videos 1 and 2 only


def test_the_reader_stays_within_its_byte_budget(tmp_path: Path, tiny_encoder: FrameEncoder, group_sizes: list[int]) -> None:
    """With room for 4 frames, the reader never holds more than that (+1 frame in flight) ahead of
    the encoder, however many videos there are; groups shrink to half the budget."""
    source = CountingSource(library(tmp_path / "videos", videos=4, frames=5))
    ahead: list[int] = []
    real_read = source.read

    def read(url: str) -> bytes:
        ahead.append(source.reads - sum(group_sizes))  # frames read and not yet encoded
        return real_read(url)

    source.read = read  # type: ignore[method-assign]
    outcomes = list(stream(source, tiny_encoder, tmp_path / "store", pixel_budget=4 * FRAME_BYTES).run(inputs(source, range(1, 5))))
    assert sum(isinstance(o, VideoEmbedded) for o in outcomes) == 4
    assert max(group_sizes) == 2 and sum(group_sizes) == 20
    assert max(ahead) <= 4 + 1


def test_a_caller_that_stops_early_stops_the_reader(tmp_path: Path, tiny_encoder: FrameEncoder) -> None:
    source = CountingSource(library(tmp_path / "videos", videos=6, frames=3))
    before = threading.active_count()
    outcomes: Iterator = stream(source, tiny_encoder, tmp_path / "store", pixel_budget=2 * FRAME_BYTES).run(inputs(source, range(1, 7)))
    first = next(outcomes)
    assert isinstance(first, VideoListed) and first.video_id == 1
    outcomes.close()  # e.g. the step was interrupted
    assert threading.active_count() == before
    assert source.reads < 18  # it did not read on to the end
