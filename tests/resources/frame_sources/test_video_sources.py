"""Video files as a frame source, on real videos encoded with PyAV here (and the h264 clip that
dagster-webserver ships): sampling policies pick the expected frames and times, a frame is found
again by seeking, S3 videos are read by ranged GETs from moto's server, truncated files keep their
good part."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pipelines.samples import dagster_world_clip
from resources.frame_sources import (
    FrameReadError,
    FrameSourceError,
    LocalFolderSource,
    S3FrameSource,
    SamplingPolicy,
    iter_frames,
    parse_video_frame_url,
    read_frame_image,
    video_decode,
)
from resources.frame_sources.s3_ranged import S3RangeReader, open_s3_object

FPS = 30
SIZE = (160, 120)


def scene_frame(index: int) -> np.ndarray:
    """Three scenes of 30 frames: a still red gradient, a still blue gradient, a moving white square."""
    width, height = SIZE
    image = np.zeros((height, width, 3), np.uint8)
    if index < 30:
        image[:, :, 0] = np.linspace(40, 220, width, dtype=np.uint8)[None, :]
    elif index < 60:
        image[:, :, 2] = np.linspace(40, 220, height, dtype=np.uint8)[:, None]
    else:
        x = 4 * (index - 60)
        image[40:80, x : x + 40] = 255
    return image


def motion_frame(index: int) -> np.ndarray:
    """A gradient that drifts and a block that moves: smooth motion, so the encoder uses B-frames."""
    ys, xs = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    image = np.stack([(xs + 2 * index) % 256, (ys + index) % 256, np.full_like(xs, 90)], -1).astype(np.uint8)
    x = (3 * index) % (SIZE[0] - 30)
    image[40:70, x : x + 30] = (250, 250, 40)
    return image


def encode_clip(path: Path, frames: int = 90, draw=scene_frame, fps: int = FPS, gop: int = 30, options: dict | None = None) -> Path:
    """Encode ``draw(i)`` for i < frames as h264 (yuv420p) into ``path`` (container from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=options or {}) as container:
        first = draw(0)
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        stream.options = {"g": str(gop), "preset": "veryfast"}
        for index in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(draw(index), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def local(root: Path, policy: str) -> LocalFolderSource:
    return LocalFolderSource(root, sampling=SamplingPolicy.parse(policy))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    encode_clip(root / "4" / "clip.mp4")
    return root


def test_fps_sampling_picks_frames_by_presentation_time(scenes: Path) -> None:
    refs = local(scenes, "fps:2").manifest(4)
    assert [(r.frame_id, r.timestamp_ms) for r in refs] == [(0, 0), (15, 500), (30, 1000), (45, 1500), (60, 2000), (75, 2500)]
    assert refs[1].url == (scenes / "4" / "clip.mp4").resolve().as_uri() + "#frame=15&t=0.500"
    assert parse_video_frame_url(refs[1].url).timestamp_ms == 500
    every = local(scenes, "every:1.5").manifest(4)  # fps 1/1.5
    assert [(r.frame_id, r.timestamp_ms) for r in every] == [(0, 0), (45, 1500)]


def test_scene_and_keyframe_sampling(scenes: Path) -> None:
    cuts = local(scenes, "scene:0.1").manifest(4)
    assert [(r.frame_id, r.timestamp_ms) for r in cuts] == [(0, 0), (30, 1000), (60, 2000)]  # the two cuts
    keys = [r.frame_id for r in local(scenes, "keyframes").manifest(4)]
    assert keys[0] == 0 and {30, 60} <= set(keys)  # gop 30; x264 may add scene-cut keyframes


def test_decoded_frames_match_a_full_decode(scenes: Path) -> None:
    source = local(scenes, "fps:2")
    refs = source.manifest(4)
    with av.open(str(scenes / "4" / "clip.mp4")) as container:
        reference = {i: f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0))}
    decoded = list(iter_frames(source, refs, thumbs=True))
    assert [d.ref for d in decoded] == refs
    for item in decoded:
        np.testing.assert_array_equal(item.pixels.permute(1, 2, 0).numpy(), reference[item.ref.frame_id])
        assert item.thumb.shape == (32, 32, 3)
    image = read_frame_image(source, refs[3].url)  # frame 45, by seeking
    np.testing.assert_array_equal(np.asarray(image), reference[45])
    assert source.read(refs[3].url)[:8] == b"\x89PNG\r\n\x1a\n"  # read() of a video frame: PNG


@pytest.mark.parametrize("margins", ["default", "none"])
def test_sparse_picks_skip_non_reference_frames_bit_for_bit(tmp_path: Path, margins: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = encode_clip(tmp_path / "1" / "clip.mp4", frames=300, draw=motion_frame, gop=150)  # 10 s with B-frames
    with av.open(str(clip)) as container:
        reference = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if margins == "none":  # skip up to the wanted frame itself: wanted B-frames are missed, then decoded again
        monkeypatch.setattr(video_decode, "SKIP_MARGIN_FRAMES", 0)
    refs = local(tmp_path, "every:2.5").manifest(1)
    assert [r.frame_id for r in refs] == [0, 75, 150, 225]
    stats: dict[str, int] = {}
    decoded = list(video_decode.decode_frames(local(tmp_path, "every:2.5").open_file, clip.as_uri(), refs, stats))
    for ref, frame in decoded:
        np.testing.assert_array_equal(frame.to_ndarray(format="rgb24"), reference[ref.frame_id])
    if margins == "default":
        assert stats["decoded"] < 200 and not stats.get("restarts")  # of the 226 frames up to the last wanted one
    else:
        assert stats["restarts"] >= 1  # and still every wanted frame, bit for bit


def test_shipped_h264_clip_by_seeking(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    clip = shutil.copy(dagster_world_clip(), tmp_path / "1" / "globe.mp4")
    source = local(tmp_path, "fps:1")
    refs = source.manifest(1)
    assert [(r.frame_id, r.timestamp_ms) for r in refs] == [(60 * k, 1000 * k) for k in range(10)]
    with av.open(str(clip)) as container:
        frame_420 = next(f for i, f in enumerate(container.decode(video=0)) if i == 420).to_ndarray(format="rgb24")
    np.testing.assert_array_equal(np.asarray(read_frame_image(source, refs[7].url)), frame_420)


def test_video_folder_rules_and_signatures(tmp_path: Path) -> None:
    encode_clip(tmp_path / "5" / "a.mkv", frames=10)
    shutil.copy(tmp_path / "5" / "a.mkv", tmp_path / "5" / "b.webm")
    with pytest.raises(FrameSourceError, match="2 video files"):
        local(tmp_path, "fps:1").manifest(5)
    (tmp_path / "5" / "b.webm").unlink()
    (tmp_path / "5" / "poster.jpg").write_bytes(b"not a frame of this video")
    assert [r.frame_id for r in local(tmp_path, "fps:1").manifest(5)] == [0]  # the poster is ignored
    one, other = local(tmp_path, "fps:1").list_videos(), local(tmp_path, "fps:2").list_videos()
    assert one != other  # another policy lists other frames: the sensor must see it
    assert one == local(tmp_path, "fps:1").list_videos()
    (tmp_path / "6").mkdir()
    (tmp_path / "6" / "clip.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(FrameSourceError, match="not a readable video") as info:
        local(tmp_path, "fps:1").manifest(6)
    assert not info.value.transient
    with pytest.raises(FrameReadError) as missing:
        read_frame_image(local(tmp_path, "fps:1"), (tmp_path / "7" / "gone.mp4").as_uri() + "#frame=0&t=0.000")
    assert missing.value.missing


@pytest.mark.parametrize(("name", "options", "kept"), [("cut.mkv", {}, 50), ("cut.mp4", {"movflags": "faststart"}, None)])
def test_truncated_video_keeps_its_good_part(tmp_path: Path, name: str, options: dict, kept: int | None) -> None:
    path = encode_clip(tmp_path / "8" / name, options=options)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    source = local(tmp_path, "fps:10")
    refs = source.manifest(8)
    results = list(iter_frames(source, refs))
    good = [r for r in results if not isinstance(r, tuple)]
    bad = [r for r in results if isinstance(r, tuple)]
    assert len(good) >= 10 and bad, "the decodable part is kept and the rest reported"
    assert [g.ref.frame_id for g in good] == [r.frame_id for r in refs[: len(good)]]  # a prefix, in order
    assert all("truncated or corrupt" in reason or "cannot be decoded" in reason for _, reason in bad), bad


def test_damaged_stretch_costs_only_the_frames_that_depend_on_it(tmp_path: Path) -> None:
    path = encode_clip(tmp_path / "2" / "clip.mp4", frames=120, draw=noise_frame, gop=15)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 20_000] = b"\xff" * 20_000  # PyAV alone stops at frame 57 of 120
    path.write_bytes(bytes(data))
    source = local(tmp_path, "fps:5")  # every 6th frame
    results = list(iter_frames(source, source.manifest(2)))
    good = [r.ref.frame_id for r in results if not isinstance(r, tuple)]
    bad = {r[0].frame_id: r[1] for r in results if isinstance(r, tuple)}
    assert bad and all("cannot be decoded here" in reason for reason in bad.values()), bad
    assert max(good) > max(bad) >= min(bad) > min(good)  # frames after the damage are decoded again
    assert len(good) + len(bad) == 20


def test_audio_running_past_the_picture_is_no_truncation(tmp_path: Path) -> None:
    (tmp_path / "3").mkdir()
    with av.open(str(tmp_path / "3" / "talk.mkv"), "w") as container:  # 1 s of video, 2 s of audio
        video, audio = container.add_stream("libx264", rate=FPS), container.add_stream("pcm_s16le", rate=8000)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for index in range(30):
            for packet in video.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * index, np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for index in range(20):
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
            samples.sample_rate, samples.pts = 8000, 800 * index
            for packet in audio.encode(samples):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    source = local(tmp_path, "fps:10")
    refs = source.manifest(3)
    assert [r.frame_id for r in refs] == list(range(0, 30, 3))  # no placeholder for a "missing" second
    assert all(not isinstance(item, tuple) for item in iter_frames(source, refs))


def test_whole_mp4_without_its_index_is_refused(tmp_path: Path) -> None:
    path = encode_clip(tmp_path / "9" / "clip.mp4")  # moov atom at the end, as most encoders write it
    path.write_bytes(path.read_bytes()[:-2000])
    with pytest.raises(FrameSourceError, match="not a readable video"):
        local(tmp_path, "fps:1").manifest(9)


def test_sampling_policy_parsing() -> None:
    assert SamplingPolicy.parse("every:2") == SamplingPolicy("fps", 0.5)
    assert SamplingPolicy.parse(" KEYFRAMES ").kind == "keyframes"
    for bad in ("fps:0", "scene:1.5", "every:0", "sometimes", "fps:"):
        with pytest.raises(ValueError):
            SamplingPolicy.parse(bad)


# --- S3, on moto's server over HTTP ----------------------------------------------------------------


def noise_frame(index: int) -> np.ndarray:
    return np.random.default_rng(index).integers(0, 256, (120, 160, 3), dtype=np.uint8)


@pytest.mark.slow
def test_s3_video_read_by_ranges(tmp_path: Path, s3_client: Any, moto_s3_endpoint: str) -> None:
    bucket = f"v-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    clip = encode_clip(tmp_path / "clip.mp4", frames=60, draw=noise_frame, gop=15)  # noise: ~0.5 MB
    s3_client.upload_file(str(clip), bucket, "lib/3/clip.mp4")
    source = S3FrameSource(s3_client, f"s3://{bucket}/lib/", endpoint_url=moto_s3_endpoint, sampling=SamplingPolicy.parse("fps:5"))
    [listing] = source.list_videos()
    refs = source.manifest(3)
    assert [(r.frame_id, r.timestamp_ms) for r in refs] == [(6 * k, 200 * k) for k in range(10)]
    assert refs[0].url == f"s3://{bucket}/lib/3/clip.mp4#frame=0&t=0.000"
    with av.open(str(clip)) as container:
        reference = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    decoded = list(iter_frames(source, refs))
    for item in decoded:
        np.testing.assert_array_equal(item.pixels.permute(1, 2, 0).numpy(), reference[item.ref.frame_id])
    np.testing.assert_array_equal(np.asarray(read_frame_image(source, refs[9].url)), reference[54])

    # Memory stays one block: a small block takes many ranged GETs, each at most the block.
    size = clip.stat().st_size
    handle = open_s3_object(s3_client, bucket, "lib/3/clip.mp4", "s3://x", block_bytes=64 * 1024)
    with av.open(handle) as container:
        assert sum(1 for _ in container.decode(video=0)) == 60
    raw: S3RangeReader = handle.raw
    assert size > 400_000 and raw.requests >= size // (64 * 1024)

    # The object replaced mid-read: the pinned ETag refuses to splice two versions (transient: re-run).
    reader = S3RangeReader(s3_client, bucket, "lib/3/clip.mp4", "s3://x")
    s3_client.put_object(Bucket=bucket, Key="lib/3/clip.mp4", Body=b"other bytes")
    with pytest.raises(FrameReadError) as changed:
        reader.readinto(bytearray(10))
    assert changed.value.transient
    assert source.list_videos() != [listing]  # the ETag changed: so does the signature
    with pytest.raises(FrameReadError) as missing:
        read_frame_image(source, f"s3://{bucket}/lib/3/gone.mp4#frame=0&t=0.000")
    assert missing.value.missing


def test_s3_unreachable_is_transient(tmp_path: Path) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    source = S3FrameSource(client, "s3://bkt/lib/", endpoint_url="http://127.0.0.1:9", sampling=SamplingPolicy())
    with pytest.raises(FrameReadError) as info:
        read_frame_image(source, "s3://bkt/lib/3/clip.mp4#frame=0&t=0.000")
    assert info.value.transient
