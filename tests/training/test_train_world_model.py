"""The trainer, run for a few steps on the tiny architecture: it writes a loadable local-dir folder
with provenance, its loss is sound, and it repeats itself given the seed. (It never retrains the
shipped model.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from resources.embedding.weights import load_clip
from training.config import CONFIG_FILE, PROVENANCE_KEY, WEIGHTS_FILE, TrainConfig
from training.train_world_model import (
    caption_contrastive_loss,
    lr_at,
    parse_args,
    read_provenance,
    train,
)
from training.world import CAPTIONS


def tiny_config(out: Path, **overrides: object) -> TrainConfig:
    settings: dict[str, object] = dict(
        model="framesearch-tiny", steps=3, batch_size=8, warmup_steps=1, log_every=1,
        eval_examples=8, eval_frames=2, eval_frame_size=(320, 180), out=str(out), warm_frac=0.5,
    )
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, dict[str, object]]:
    config = tiny_config(tmp_path_factory.mktemp("world") / "model")
    return config, train(config, log=lambda line: None)


def test_writes_a_local_dir_that_loads_with_provenance(trained: tuple[TrainConfig, dict[str, object]]) -> None:
    config, result = trained
    folder = Path(config.out)
    assert {CONFIG_FILE, WEIGHTS_FILE, "training.json", "README.md"} <= {p.name for p in folder.iterdir()}
    stored = json.loads((folder / CONFIG_FILE).read_text())
    assert stored["model_cfg"] == open_clip.get_model_config("framesearch-tiny") and stored["preprocess_cfg"]["size"] == 64

    provenance = read_provenance(folder)
    assert provenance["kind"] == "synthetic-world" and provenance["steps"] == 3 and provenance["seed"] == 0
    assert provenance["script"] == "training/train_world_model.py"
    assert "knows only the 36 captions" in str(provenance["description"])
    assert 0.0 <= float(provenance["caption_accuracy"]) <= 1.0  # type: ignore[arg-type]
    assert {"train_seconds", "cpu"} <= provenance.keys()
    from safetensors import safe_open

    with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as handle:
        assert PROVENANCE_KEY in (handle.metadata() or {})
        assert all(handle.get_tensor(k).dtype == torch.float16 for k in handle.keys())

    clip = load_clip("framesearch-tiny", f"local-dir:{folder}")  # the product's loader
    assert not clip.weights_random and clip.image_size == 64
    with torch.inference_mode():
        text = clip.model.encode_text(clip.tokenizer(list(CAPTIONS)), normalize=True)
        image = clip.model.encode_image(torch.zeros(1, 3, 64, 64), normalize=True)
    assert text.dtype == torch.float32 and text.shape == (36, 64) and torch.isfinite(image).all()

    figures = json.loads((folder / "training.json").read_text())
    assert figures["eval"] == result["eval"] and len(figures["history"]) == 3
    assert "knows only the 36 captions" in (folder / "README.md").read_text()


def test_training_is_reproducible(trained: tuple[TrainConfig, dict[str, object]], tmp_path: Path) -> None:
    config, result = trained
    again = train(tiny_config(tmp_path / "again"), log=lambda line: None)
    assert [h["loss"] for h in again["history"]] == [h["loss"] for h in result["history"]]  # type: ignore[index]
    from safetensors.torch import load_file

    a, b = load_file(str(Path(config.out) / WEIGHTS_FILE)), load_file(str(tmp_path / "again" / WEIGHTS_FILE))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_loss_prefers_the_right_caption() -> None:
    text = torch.eye(4)  # (C, D) four orthogonal captions
    labels = torch.tensor([0, 1, 1, -1])  # two images of class 1, one background
    right = torch.stack([text[0], text[1], text[1], torch.full((4,), 0.5)])  # (B, D)
    wrong = torch.stack([text[2], text[3], text[0], text[1]])
    scale = torch.tensor(10.0)
    assert caption_contrastive_loss(right, text, labels, scale) < 0.1 < caption_contrastive_loss(wrong, text, labels, scale)
    assert math.isfinite(float(caption_contrastive_loss(right, text, labels, scale)))


def test_lr_schedule_and_flags() -> None:
    config = TrainConfig(steps=100, warmup_steps=10, lr=1e-3, min_lr_frac=0.1)
    lrs = np.array([lr_at(s, config) for s in range(100)])
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3) and lrs.max() <= 1e-3
    assert lrs[-1] == pytest.approx(1e-4, rel=0.05) and np.all(np.diff(lrs[10:]) <= 1e-12)
    parsed = parse_args(["--steps", "7", "--lr", "0.002", "--eval-frame-size", "640", "360"])
    assert parsed.steps == 7 and parsed.lr == 0.002 and parsed.eval_frame_size == (640, 360)
