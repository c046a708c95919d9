"""The README's main job, run the way ./dev main runs it, offline: with the configured weights
out of reach it runs the offline model folder (here a stand-in laid out like
models/framesearch-world, named by OFFLINE_MODEL_DIR)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.main import main
from resources.frame_sources import frame_id_from_name
from pipelines.samples import ensure_sample_library
from resources.checkpoint import read_metadata, vectors
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


def test_sample_library_is_made_from_installed_media(tmp_path: Path) -> None:
    videos = ensure_sample_library(tmp_path)
    globe = sorted((videos / "1").glob("*.jpg"))
    assert len(globe) == 10 and Image.open(globe[0]).size == (240, 240)
    assert (videos / "1" / "manifest.csv").read_text().splitlines()[2] == "60,1000,frame_000060.jpg"  # 60 fps
    pixels = np.asarray(Image.open(globe[0]))
    assert pixels.std() > 10  # a real picture, not a blank frame
    assert len(list((videos / "2").glob("*.png"))) == 6


def test_main_job_writes_checkpoints_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert main(["--var", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "RANDOM" not in out and "video 1: 10 frames" in out and "video 2: 6 frames" in out
    assert "[main] model framesearch-world/" in out and "unavailable here: using the offline model" in out
    assert out.count(f"[main] weights (synthetic-world): {WORLD_DESCRIPTION} (caption accuracy 0.73)") == 2
    table = pq.read_table(tmp_path / "checkpoints" / "video_2.parquet")
    assert table.num_rows == 6 and set(table.column("video_id").to_pylist()) == {2}
    assert table.column("timestamp_ms").to_pylist() == [0, 500, 1000, 1500, 2000, 2500]  # 2 fps
    assert all(len(p) == 66 for p in table.column("patch_vectors").to_pylist())  # 1280x720 frames
    globals_ = vectors(table.column("global_vector"), 64)
    np.testing.assert_allclose(np.linalg.norm(globals_, axis=1), 1.0, atol=1e-5)
    footer = read_metadata(tmp_path / "checkpoints" / "video_2.parquet")
    assert footer["weights_random"] is False and footer["weights_provenance"]["kind"] == "synthetic-world"
    assert "index (embedded, collection frames_v1): 16 frames" in out
    assert out.count("(rerank on): 2:") + out.count("(rerank on): 1:") == 2  # ranked results printed
    assert "index: 10 upserted, 0 deleted" in out


def test_main_job_twice_leaves_the_index_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--var", str(tmp_path), "--offline-model"]) == 0
    capsys.readouterr()
    assert main(["--var", str(tmp_path), "--offline-model"]) == 0
    out = capsys.readouterr().out
    assert out.count("index: unchanged") == 2 and "16 frames" in out


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
    assert out.count("!! RANDOM WEIGHTS") == 2 and "weights (" not in out


def test_main_job_without_the_offline_model_stops_with_what_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OFFLINE_MODEL_DIR", str(tmp_path / "framesearch-world"))
    assert main(["--var", str(tmp_path), "--videos", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "[main] no model to run:" in out and "OFFLINE_MODEL_DIR" in out and "RANDOM" not in out
