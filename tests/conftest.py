"""Shared fixtures: the tiny OpenCLIP model (random weights saved and loaded through the same
loader as real weights), a stand-in for the offline synthetic-world model folder, and structured
synthetic frames."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

# Tests must never reach out for weights: a closed local port makes "hub unreachable" deterministic.
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from resources.embedding.encoder import EncoderConfig, FrameEncoder  # noqa: E402
from resources.embedding.model_files import save_model_dir, save_random_weights  # noqa: E402
from resources.embedding.weights import MODEL_CONFIG_DIR, TINY_MODEL  # noqa: E402


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


WORLD_DESCRIPTION = "trained on framesearch's synthetic shapes world; knows only the 36 captions 'a {colour} {shape}'"


def save_world_standin(folder: Path, seed: int = 0) -> Path:
    """A folder laid out like the committed ``models/framesearch-world`` (open_clip local-dir,
    fp16 weights, ``framesearch.provenance`` header) holding framesearch-tiny's architecture with
    random weights: the offline-model plumbing without the minutes of training. The folder's name
    should be ``framesearch-world`` so that model ids read as they will for the real one."""
    torch.manual_seed(seed)
    model_cfg = json.loads((MODEL_CONFIG_DIR / f"{TINY_MODEL}.json").read_text())
    state = open_clip.create_model(TINY_MODEL, pretrained=None).state_dict()
    provenance = {
        "kind": "synthetic-world", "description": WORLD_DESCRIPTION, "steps": 0, "seed": seed,
        "caption_accuracy": 0.73, "train_seconds": 0.0, "cpu": "test stand-in", "script": "tests/conftest.py",
    }
    return save_model_dir(folder, model_cfg, state, provenance, dtype=torch.float16)


@pytest.fixture(scope="session")
def world_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_world_standin(tmp_path_factory.mktemp("offline") / "framesearch-world")


@pytest.fixture(scope="session")
def tiny_config(tiny_weights: Path) -> EncoderConfig:
    return EncoderConfig(model=TINY_MODEL, pretrained=str(tiny_weights), batch_size=16, precision="fp32")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_config: EncoderConfig) -> FrameEncoder:
    return FrameEncoder.load(tiny_config)


# S3 fixtures for the frame sources (and the pipeline and service tests that reuse them).
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402


@pytest.fixture(scope="session")
def moto_s3_endpoint() -> Iterator[str]:
    """A moto S3 server over real HTTP on a free local port, shared by the whole session.

    Its state lives for the session too: each test creates buckets under names of its own.
    """
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_client(moto_s3_endpoint: str) -> Any:
    """A real boto3 S3 client on the moto endpoint, with dummy credentials and region us-east-1."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=moto_s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # No retries: a failing call should fail the test at once, not after back-off.
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=16),
    )
