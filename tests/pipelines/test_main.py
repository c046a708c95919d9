"""The README's main job, run the way ./dev main runs it, offline: with the configured weights
out of reach it runs the offline model folder (here a stand-in laid out like
models/framesearch-world, named by OFFLINE_MODEL_DIR)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.main import main
from pipelines.sample_queries import box_overlap
from pipelines.samples import SAMPLE_QUERIES, ensure_sample_library, load_ground_truth
from resources.checkpoints.format import read_metadata, vectors
from resources.frame_sources import frame_id_from_name
from tests.conftest import WORLD_DESCRIPTION


@pytest.fixture(autouse=True)
def offline_model(world_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OFFLINE_MODEL_DIR", str(world_model_dir))
    return world_model_dir


def test_frame_id_from_name() -> None:
    assert frame_id_from_name("frame_000120.jpg") == 120
    assert frame_id_from_name("v2_f0042.png") == 42
    with pytest.raises(ValueError, match="no frame number"):
        frame_id_from_name("cover.jpg")


def test_sample_library_is_made_from_installed_media_and_the_world(tmp_path: Path) -> None:
    videos = ensure_sample_library(tmp_path)
    globe = sorted((videos / "1").glob("*.jpg"))
    assert len(globe) == 10 and Image.open(globe[0]).size == (240, 240)
    assert (videos / "1" / "manifest.csv").read_text().splitlines()[2] == "60,1000,frame_000060.jpg"  # 60 fps
    pixels = np.asarray(Image.open(globe[0]))
    assert pixels.std() > 10  # a real picture, not a blank frame
    for video_id in (2, 3):
        frames = sorted((videos / str(video_id)).glob("*.jpg"))
        assert len(frames) == 12 and Image.open(frames[0]).size == (1280, 720)
        assert (videos / str(video_id) / "manifest.csv").read_text().splitlines()[2] == "1,500,frame_000001.jpg"  # 2 fps
    truth = load_ground_truth(videos)
    assert len(truth) == 44 and truth["1:60"] == [] and truth["4:0"] == []  # the globe holds no world object
    for text in SAMPLE_QUERIES:
        holding = [image_id for image_id, objects in truth.items() if any(c == text for c, _ in objects)]
        assert 3 <= len(holding) <= 4 and all(not i.startswith("1:") for i in holding)
        sizes = sorted(box[2] for objects in truth.values() for c, box in objects if c == text)
        assert sizes[0] <= 90  # small (radius 30-45 px) in three frames; some also large in one
    for objects in truth.values():  # at most one query object per frame: "holds" is exact
        assert sum(c in SAMPLE_QUERIES for c, _ in objects) <= 1
        for _, (x, y, w, h) in objects:
            assert 0 <= x and 0 <= y and x + w <= 1280 and y + h <= 720
    # The same seeds draw the same pixels; a library of another version is redrawn.
    again = ensure_sample_library(tmp_path / "again")
    assert (again / "2" / "frame_000003.jpg").read_bytes() == (videos / "2" / "frame_000003.jpg").read_bytes()
    (videos / "2" / "ground_truth.json").write_text('{"library": "street-v0", "frames": {}}')
    (videos / "2" / "frame_000099.png").write_bytes(b"old")
    ensure_sample_library(tmp_path)
    assert not (videos / "2" / "frame_000099.png").exists() and load_ground_truth(videos) == truth


def test_box_overlap_is_over_the_smaller_box() -> None:
    assert box_overlap([0, 0, 224, 224], [100, 100, 60, 60]) == 1.0  # a small object inside the window
    assert box_overlap([100, 100, 224, 224], [0, 0, 500, 500]) == 1.0  # the window inside a large object
    assert box_overlap([0, 0, 224, 224], [194, 0, 60, 60]) == 0.5
    assert box_overlap([0, 0, 224, 224], [224, 0, 60, 60]) == 0.0


def test_main_job_writes_checkpoints_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert main(["--var", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "RANDOM" not in out and "video 1: 10 frames" in out and "video 2: 12 frames" in out and "video 3: 12 frames" in out
    assert "video 4: 10 frames" in out  # the globe clip as a video file
    assert "[main] model framesearch-world/" in out
    # The fallback is said once per main job (the encoder's warning), not again by each run.
    assert sum("using the offline model" in r.getMessage() for r in caplog.records) == 1
    assert out.count(f"[main] weights (synthetic-world): {WORLD_DESCRIPTION} (caption accuracy 0.73)") == 2
    table = pq.read_table(tmp_path / "checkpoints" / "video_2.parquet")
    assert table.num_rows == 12 and set(table.column("video_id").to_pylist()) == {2}
    assert table.column("timestamp_ms").to_pylist() == [500 * i for i in range(12)]  # 2 fps
    assert all(len(p) == 66 for p in table.column("patch_vectors").to_pylist())  # 1280x720 frames
    globals_ = vectors(table.column("global_vector"), 64)
    np.testing.assert_allclose(np.linalg.norm(globals_, axis=1), 1.0, atol=1e-5)
    footer = read_metadata(tmp_path / "checkpoints" / "video_2.parquet")
    assert footer["weights_random"] is False and footer["weights_provenance"]["kind"] == "synthetic-world"
    assert "index (embedded, collection frames_v1): 44 frames" in out
    assert "index: 10 upserted, 0 deleted" in out
    # Each sample caption: a side-by-side table of 3 rows (global, rerank at the default alpha and 0), judged
    # by the ground truth (a stand-in with random weights: marks and counts are whatever they are;
    # the structure is checked, and that every mark is the ground truth's).
    truth = load_ground_truth(tmp_path / "samples" / "videos")
    hit = r"([✓✗]) (\d+:\d+) +(-?\d\.\d{3})"
    row = re.compile(rf"^ +(\d) +{hit} +{hit} +{hit} +\[(\d+), (\d+), (\d+), (\d+)\]( [✓✗])?$")
    for text in SAMPLE_QUERIES:
        block = out[out.index(f"[main] {text!r} in "):].splitlines()
        assert re.match(r" +# +global +rerank alpha 0\.5 +rerank alpha 0 +its best patch", block[1])
        rows = [row.match(line) for line in block[2:5]]
        assert all(rows), block[2:5]
        for rank, match in enumerate(rows, 1):
            assert int(match[1]) == rank
            for mark, image_id in ((match[2], match[3]), (match[5], match[6]), (match[8], match[9])):
                assert (mark == "✓") == any(c == text for c, _ in truth[image_id])  # marks are the ground truth
            box = [int(match[i]) for i in range(11, 15)]
            assert box[2] >= 224 and box[3] >= 224 and box[0] + box[2] <= 1280 and box[1] + box[3] <= 720
            assert (match[15] is not None) == (match[8] == "✓")  # the last column's hit holds it: box judged
        counts = r"global \d/[34], rerank alpha 0\.5 \d/[34], rerank alpha 0 \d/[34]"
        assert re.match(rf"\[main\] {re.escape(repr(text))}: hits@3 {counts}; rerank alpha 0: best patch on the object \d of \d$", block[5])
    totals = r"global \d+/12, rerank alpha 0\.5 \d+/12, rerank alpha 0 \d+/12"
    assert re.search(rf"^\[main\] sample queries \(4\): hits@3 {totals}; rerank alpha 0: best patch on the object \d+ of \d+$", out, re.M)


def test_main_job_runs_given_queries_and_alpha_without_ground_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "videos" / "4"
    video.mkdir(parents=True)
    Image.new("RGB", (320, 240), (10, 120, 200)).save(video / "frame_1.png")
    args = ["--var", str(tmp_path), "--videos", str(tmp_path / "videos"), "--offline-model", "--query", "a blue square", "--alpha", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[main] 'a blue square' (no ground truth):" in out and "rerank alpha 0 " in out and "rerank alpha 0.5" not in out
    assert re.search(r"^ +1  \? 4:1 +-?\d\.\d{3} +\? 4:1 +-?\d\.\d{3} +\[\d+, \d+, \d+, \d+\]$", out, re.M)
    assert "hits@3" not in out


def test_main_job_twice_leaves_the_index_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--var", str(tmp_path), "--offline-model"]) == 0
    capsys.readouterr()
    assert main(["--var", str(tmp_path), "--offline-model"]) == 0
    out = capsys.readouterr().out
    assert out.count("index: unchanged") == 4 and out.count(", up to date ->") == 4 and "44 frames" in out


def test_main_job_skips_bad_frames_and_reports_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "videos" / "5"
    video.mkdir(parents=True)
    buffer = io.BytesIO()
    Image.new("RGB", (128, 96), (10, 120, 200)).save(buffer, "PNG")
    (video / "frame_1.png").write_bytes(buffer.getvalue())
    (video / "frame_2.png").write_bytes(b"")
    (video / "frame_3.jpg").write_bytes(b"garbage, not a jpeg")
    assert main(["--var", str(tmp_path), "--videos", str(tmp_path / "videos"), "--offline-model"]) == 0
    out = capsys.readouterr().out
    assert "skipped frame 2: empty input" in out and "skipped frame 3: not a recognized image format" in out
    assert pq.read_table(tmp_path / "checkpoints" / "video_5.parquet").num_rows == 1


def test_main_job_fails_when_a_video_has_no_usable_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tiny_weights: Path
) -> None:
    """Also: weights configured on purpose that are random still get the loud banner."""
    monkeypatch.setenv("OPENCLIP_MODEL", "framesearch-tiny")
    monkeypatch.setenv("OPENCLIP_PRETRAINED", str(tiny_weights))
    video = tmp_path / "videos" / "9"
    video.mkdir(parents=True)
    (video / "frame_1.png").write_bytes(b"\x89PNG broken")
    assert main(["--var", str(tmp_path), "--videos", str(tmp_path / "videos")]) == 1
    out = capsys.readouterr().out
    assert "video 9: FAILED: video 9: no usable frame among 1" in out
    assert out.count("!! RANDOM WEIGHTS") == 1 and "weights (" not in out  # once per main job


def test_main_job_without_the_offline_model_stops_with_what_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OFFLINE_MODEL_DIR", str(tmp_path / "framesearch-world"))
    assert main(["--var", str(tmp_path), "--videos", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "[main] no model to run:" in out and "OFFLINE_MODEL_DIR" in out and "RANDOM" not in out


def test_main_job_fills_the_generation_index_generation_names(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """INDEX_GENERATION (what `./dev generations plan` prints) sends the main job's checkpoints and
    points to that generation's folder and collection, never over the base generation's."""
    video = tmp_path / "videos" / "4"
    video.mkdir(parents=True)
    Image.new("RGB", (320, 240), (10, 120, 200)).save(video / "frame_1.png")
    monkeypatch.setenv("INDEX_GENERATION", "gtest000001")
    monkeypatch.setenv("QDRANT_COLLECTION", "frames_main")
    assert main(["--var", str(tmp_path), "--videos", str(tmp_path / "videos"), "--offline-model", "--query", "a blue square"]) == 0
    assert "collection frames_main_gtest000001" in capsys.readouterr().out
    assert (tmp_path / "checkpoints" / "generations" / "gtest000001" / "video_4.parquet").is_file()
    assert not (tmp_path / "checkpoints" / "video_4.parquet").exists()
