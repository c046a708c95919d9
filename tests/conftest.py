"""Shared fixtures: the offline tiny OpenCLIP model (random weights saved and loaded through the
same loader as real weights) and structured synthetic frames."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

# Tests must never reach out for weights: a closed local port makes "hub unreachable" deterministic.
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from resources.clip_loader import TINY_MODEL, save_random_weights  # noqa: E402
from resources.encoder import EncoderConfig, FrameEncoder  # noqa: E402


def make_frame(width: int, height: int, seed: int = 0) -> torch.Tensor:
    """A (3, H, W) uint8 frame with gradients and coloured rectangles: structure, not just noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.stack(
        [xs * 255 / max(1, width - 1), ys * 255 / max(1, height - 1), np.full_like(xs, 128.0)], axis=-1
    )
    for _ in range(6):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1, y1 = x0 + rng.integers(8, max(9, width // 3)), y0 + rng.integers(8, max(9, height // 3))
        pixels[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    pixels += rng.normal(0, 6, pixels.shape)
    array = np.clip(pixels, 0, 255).astype(np.uint8)  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_weights(tmp_path_factory.mktemp("models") / "tiny.safetensors", TINY_MODEL, seed=0)


@pytest.fixture(scope="session")
def tiny_config(tiny_weights: Path) -> EncoderConfig:
    return EncoderConfig(model=TINY_MODEL, pretrained=str(tiny_weights), batch_size=16, precision="fp32")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_config: EncoderConfig) -> FrameEncoder:
    return FrameEncoder.load(tiny_config)
