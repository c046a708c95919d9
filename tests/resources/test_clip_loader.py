"""Weight resolution: file paths, local-dir folders, hub tags offline, clear errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from resources.clip_loader import (
    TINY_MODEL,
    WeightsUnavailableError,
    load_clip,
    main,
    resolve_weights,
    save_random_weights,
)


def test_load_from_file_path_marks_random_weights(tiny_weights: Path) -> None:
    clip = load_clip(TINY_MODEL, str(tiny_weights))
    assert clip.weights_random is True
    assert clip.model_id.startswith(f"{TINY_MODEL}/random-") and clip.image_size == 64
    assert clip.model.training is False


def test_model_id_is_stable_for_the_same_weights(tmp_path: Path) -> None:
    a = save_random_weights(tmp_path / "a.safetensors", seed=3)
    b = save_random_weights(tmp_path / "b.safetensors", seed=3)
    c = save_random_weights(tmp_path / "c.safetensors", seed=4)
    ids = [load_clip(TINY_MODEL, str(p)).model_id for p in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]


def test_local_dir_with_a_weights_file(tiny_weights: Path, tmp_path: Path) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "open_clip_model.safetensors").write_bytes(tiny_weights.read_bytes())
    resolved = resolve_weights(TINY_MODEL, f"local-dir:{folder}")
    assert resolved.pretrained == str(folder / "open_clip_model.safetensors")
    assert load_clip(TINY_MODEL, f"local-dir:{folder}").weights_random is True


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="file not found"):
        resolve_weights("ViT-B-32", str(tmp_path / "nope.safetensors"))


def test_missing_local_dir_is_reported(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="folder not found"):
        resolve_weights("ViT-B-32", f"local-dir:{tmp_path / 'nope'}")
    with pytest.raises(WeightsUnavailableError, match="no weights file"):
        resolve_weights("ViT-B-32", f"local-dir:{tmp_path}")


def test_unknown_tag_lists_the_known_ones() -> None:
    with pytest.raises(WeightsUnavailableError, match="laion2b_s34b_b79k"):
        resolve_weights("ViT-B-32", "no_such_tag")


def test_unknown_model() -> None:
    with pytest.raises(WeightsUnavailableError, match="unknown OPENCLIP_MODEL"):
        resolve_weights("ViT-Z-99", "laion2b_s34b_b79k")


def test_unreachable_hub_fails_fast_and_says_how_to_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: unreachable, at once
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        load_clip("ViT-B-32", "laion2b_s34b_b79k")
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "cannot be" in message and "reached" in message
    assert "OPENCLIP_PRETRAINED" in message and "make-tiny" in message


def test_corrupt_checkpoint_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="could not load"):
        load_clip(TINY_MODEL, str(bad))


def test_cli_writes_marked_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["make-tiny", str(tmp_path / "t.safetensors")]) == 0
    assert "RANDOM" in capsys.readouterr().out
    assert load_clip(TINY_MODEL, str(tmp_path / "t.safetensors")).weights_random is True
