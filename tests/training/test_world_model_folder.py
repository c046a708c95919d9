"""The committed offline model (models/framesearch-world) loads through the product's loader,
says what it is, and recognises the world it was trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from resources.embedding.weights import load_clip
from training.batches import to_model_input
from training.examples import training_example
from training.train_world_model import read_provenance
from training.world import CAPTIONS

FOLDER = Path(__file__).resolve().parents[2] / "models" / "framesearch-world"

pytestmark = pytest.mark.skipif(not (FOLDER / "open_clip_model.safetensors").is_file(), reason="model not trained yet")


def test_folder_is_small_and_described() -> None:
    assert sum(p.stat().st_size for p in FOLDER.iterdir()) <= 25 * 2**20
    provenance = read_provenance(FOLDER)
    assert provenance["kind"] == "synthetic-world" and provenance["script"] == "training/train_world_model.py"
    figures = json.loads((FOLDER / "training.json").read_text())
    assert figures["provenance"] == provenance and figures["config"]["steps"] == provenance["steps"]
    card = (FOLDER / "README.md").read_text()
    assert "knows only the 36 captions" in card.replace("**", "") and "not a general model" in card.replace("**", "")


def test_loads_and_recognises_single_objects() -> None:
    clip = load_clip("framesearch-world", f"local-dir:{FOLDER}")
    assert not clip.weights_random and clip.image_size == 96
    rng = np.random.default_rng(123)
    pairs = [training_example(clip.image_size, rng, kind="single") for _ in range(72)]
    inputs = to_model_input(np.stack([p[0] for p in pairs]), torch.tensor(clip.mean), torch.tensor(clip.std))
    with torch.inference_mode():
        text = clip.model.encode_text(clip.tokenizer(list(CAPTIONS)), normalize=True)  # (36, 64)
        image = clip.model.encode_image(inputs, normalize=True)  # (72, 64)
    accuracy = float(((image @ text.T).argmax(1) == torch.tensor([p[1] for p in pairs])).float().mean())
    assert accuracy > 0.9  # chance is 1/36; the card gives the held-out figure (1.000)
