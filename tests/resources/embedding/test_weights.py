"""Weight resolution: file paths, local-dir folders, hub tags offline, clear errors; provenance."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from resources.embedding.model_files import main, save_model_dir, save_random_weights
from resources.embedding.weights import (
    PROVENANCE_KEY,
    TINY_MODEL,
    ResolvedWeights,
    WeightsUnavailableError,
    load_clip,
    resolve_weights,
    weights_provenance,
)
from tests.conftest import WORLD_DESCRIPTION, save_world_standin


def test_load_from_file_path_marks_random_weights(tiny_weights: Path) -> None:
    clip = load_clip(TINY_MODEL, str(tiny_weights))
    assert clip.weights_random is True and clip.provenance.kind == "random"
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
    assert "OPENCLIP_PRETRAINED" in message and "local-dir:models/framesearch-world" in message


def test_corrupt_checkpoint_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="could not load"):
        load_clip(TINY_MODEL, str(bad))


def test_cli_writes_marked_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["make-tiny", str(tmp_path / "t.safetensors")]) == 0
    assert "RANDOM" in capsys.readouterr().out
    assert load_clip(TINY_MODEL, str(tmp_path / "t.safetensors")).weights_random is True


def test_local_dir_model_with_fp16_weights_and_provenance(world_model_dir: Path) -> None:
    """The offline model's layout: config + fp16 safetensors whose header says what it is."""
    assert load_file(str(world_model_dir / "open_clip_model.safetensors"))["visual.proj"].dtype == torch.float16
    clip = load_clip("ignored-for-local-dir", f"local-dir:{world_model_dir}")
    assert all(p.dtype == torch.float32 for p in clip.model.parameters())  # cast up on load
    assert clip.weights_random is False and clip.provenance.kind == "synthetic-world"
    assert clip.provenance.description == WORLD_DESCRIPTION
    assert clip.provenance.details["caption_accuracy"] == 0.73 and clip.provenance.details["steps"] == 0
    assert clip.model_id.startswith("framesearch-world/") and len(clip.model_id.split("/")[1]) == 12
    assert clip.image_size == 64 and clip.weights_source == f"local-dir:{world_model_dir}"
    with torch.inference_mode():
        text = clip.model.encode_text(clip.tokenizer(["a red circle"]))
    assert text.shape == (1, 64) and torch.isfinite(text).all()


def test_local_dir_model_id_follows_the_weights(tmp_path: Path) -> None:
    a = save_world_standin(tmp_path / "a" / "framesearch-world", seed=1)
    b = save_world_standin(tmp_path / "b" / "framesearch-world", seed=1)
    c = save_world_standin(tmp_path / "c" / "framesearch-world", seed=2)
    ids = [load_clip("x", f"local-dir:{folder}").model_id for folder in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]


def test_recorded_architecture_names_the_model_wherever_the_folder_lies(world_model_dir: Path, tmp_path: Path) -> None:
    """The training script records ``architecture``; without it the folder's name is used."""
    state = load_file(str(world_model_dir / "open_clip_model.safetensors"))
    config = json.loads((world_model_dir / "open_clip_config.json").read_text())
    provenance = {"kind": "synthetic-world", "description": WORLD_DESCRIPTION, "architecture": "framesearch-world"}
    moved = save_model_dir(tmp_path / "offline-v2", config["model_cfg"], state, provenance)
    assert load_clip("x", f"local-dir:{moved}").model_id.startswith("framesearch-world/")
    del provenance["architecture"]
    unnamed = save_model_dir(tmp_path / "offline-v3", config["model_cfg"], state, provenance)
    assert load_clip("x", f"local-dir:{unnamed}").model_id.startswith("offline-v3/")


def test_local_dir_config_without_weights_is_refused(world_model_dir: Path, tmp_path: Path) -> None:
    """open_clip would build the model with random weights and only log it."""
    folder = tmp_path / "framesearch-world"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text((world_model_dir / "open_clip_config.json").read_text())
    with pytest.raises(WeightsUnavailableError, match="no weights file"):
        load_clip("x", f"local-dir:{folder}")


def test_bad_provenance_header_is_refused(world_model_dir: Path, tmp_path: Path) -> None:
    state = load_file(str(world_model_dir / "open_clip_model.safetensors"))
    for bad, error in (("not json", "not JSON"), (json.dumps({"kind": "magic", "description": "x"}), "kind=")):
        path = tmp_path / "bad.safetensors"
        save_file(state, str(path), metadata={PROVENANCE_KEY: bad})
        with pytest.raises(WeightsUnavailableError, match=error):
            load_clip(TINY_MODEL, str(path))


def test_files_and_tags_that_record_nothing_are_pretrained(tiny_weights: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file(load_file(str(tiny_weights)), str(plain))  # the same tensors, no header metadata
    clip = load_clip(TINY_MODEL, str(plain))
    assert clip.provenance.kind == "pretrained" and "records no provenance" in clip.provenance.description
    assert clip.model_id.startswith(f"{TINY_MODEL}/file-")
    tag = weights_provenance(ResolvedWeights("ViT-B-32", "laion2b_s34b_b79k", tag="laion2b_s34b_b79k"))
    assert tag.kind == "pretrained" and tag.description == "open_clip's published weights ViT-B-32/laion2b_s34b_b79k"
