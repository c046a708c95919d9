"""The foundation asset, materialized for real on an ephemeral instance, and the workspace load."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from PIL import Image

from assets.sample_library import library_checkpoints
from resources.encoder import EncoderConfig
from resources.encoder_resource import EncoderResource

REPO = Path(__file__).resolve().parents[2]


def test_materialize_sample_library(tmp_path: Path, tiny_config: EncoderConfig) -> None:
    encoder = EncoderResource(model=tiny_config.model, pretrained=tiny_config.pretrained, precision="fp32")
    result = dg.materialize(
        [library_checkpoints],
        resources={"encoder": encoder},
        run_config={"ops": {"library_checkpoints": {"config": {"data_dir": str(tmp_path)}}}},
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["videos"].value == 2 and metadata["frames"].value == 16
    assert metadata["weights_random"].value is True
    assert pq.read_table(tmp_path / "checkpoints" / "video_1.parquet").num_rows == 10


def test_materialize_fails_for_a_video_without_usable_frames(tmp_path: Path, tiny_config: EncoderConfig) -> None:
    good, bad = tmp_path / "videos" / "3", tmp_path / "videos" / "4"
    good.mkdir(parents=True)
    bad.mkdir(parents=True)
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (200, 10, 10)).save(buffer, "PNG")
    (good / "f_1.png").write_bytes(buffer.getvalue())
    (bad / "f_1.png").write_bytes(b"broken")
    encoder = EncoderResource(model=tiny_config.model, pretrained=tiny_config.pretrained)
    config = {"data_dir": str(tmp_path), "videos_dir": str(tmp_path / "videos")}
    result = dg.materialize(
        [library_checkpoints], resources={"encoder": encoder},
        run_config={"ops": {"library_checkpoints": {"config": config}}}, raise_on_error=False,
    )
    assert not result.success
    assert "videos with no usable frame: [4]" in str(result.all_events)


def test_offline_fallback_reports_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resource = EncoderResource(offline_fallback=True, models_dir=str(tmp_path), precision="fp32")
    monkeypatch.setenv("OPENCLIP_PRETRAINED", str(tmp_path / "missing.safetensors"))
    assert resource.encoder.info.weights_random is True
    assert "file not found" in (resource.fallback_reason or "")


def test_workspace_loads_as_dagster_dev_loads_it() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "All code locations passed validation" in completed.stdout + completed.stderr
