"""PATCH_MODE=dense: one pass of the image tower per frame, each window read from its feature map.

ResNet towers are checked on the committed world model (real weights, so "the right window lights
up" means something); ViT towers on the tiny random model, for shape and independence only.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from resources.embedding.dense import DenseUnsupportedError, tower_kind
from resources.embedding.encoder import EncoderConfig, FrameEncoder
from resources.embedding.offline import offline_config
from resources.embedding.patches import PatchConfig, plan_patches
from resources.settings import SettingsError, patch_config_from_env
from tests.conftest import make_frame
from training.examples import windows_touching
from training.world import caption, random_frame

WORLD = Path(__file__).resolve().parents[3] / "models" / "framesearch-world"
DENSE = PatchConfig(mode="dense")


@pytest.fixture(scope="module")
def world_encoder() -> FrameEncoder:
    return FrameEncoder.load(offline_config(EncoderConfig(precision="fp32", batch_size=32), WORLD))


def test_a_window_that_is_the_whole_input_gives_the_crop_vector(world_encoder: FrameEncoder) -> None:
    size = world_encoder.image_size
    frame = make_frame(size, size, seed=4)
    whole = PatchConfig(window=size, stride=size, context_pad=0.0)
    [crop] = world_encoder.encode_patches([frame], [plan_patches(size, size, whole)])
    [dense] = world_encoder.encode_patches([frame], [plan_patches(size, size, replace(whole, mode="dense"))])
    np.testing.assert_allclose(dense, crop, atol=1e-5)


def test_dense_vectors_are_close_to_the_crops(world_encoder: FrameEncoder) -> None:
    frame = make_frame(1280, 720, seed=6)
    [crops] = world_encoder.encode_patches([frame], [plan_patches(1280, 720, PatchConfig())])
    [dense] = world_encoder.encode_patches([frame], [plan_patches(1280, 720, DENSE)])
    assert dense.shape == crops.shape == (66, world_encoder.info.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(dense, axis=1), 1.0, atol=1e-5)
    # Same windows, same pool; only the trunk's view past each window's edge differs (a crop sees
    # zero padding there): measured mean cosine 0.86 on this frame, 0.99 where a window is flat.
    cosine = (dense * crops).sum(axis=1)
    assert float(cosine.mean()) > 0.8 and float(cosine.max()) > 0.98


def test_the_window_on_a_small_object_matches_its_caption(world_encoder: FrameEncoder) -> None:
    """A wrong box scale or offset would light up windows away from the object."""
    hits = 0
    for seed in range(6):
        world = random_frame(1280, 720, np.random.default_rng([99, seed]), target=("red", "star"))
        [target] = world.boxes_of("red", "star")
        plan = plan_patches(1280, 720, DENSE)
        frame = torch.from_numpy(world.image).permute(2, 0, 1).contiguous()
        [vectors] = world_encoder.encode_patches([frame], [plan])
        [text] = world_encoder.encode_texts([caption("red", "star")])
        best = int(np.argmax(vectors @ text))
        hits += bool(windows_touching(plan.padded, target)[best])
    assert hits >= 5, hits


def test_one_model_pass_per_frame(world_encoder: FrameEncoder) -> None:
    frames = [make_frame(1920, 1080, seed=s) for s in range(2)]
    before = world_encoder.timings.images
    world_encoder.encode_patches(frames, [plan_patches(1920, 1080, DENSE)] * 2)
    assert world_encoder.timings.images - before == 2  # crops: 2 x 144
    before = world_encoder.timings.images
    world_encoder.encode_patches(frames, [plan_patches(1920, 1080, replace(DENSE, scales=(1.0, 2.0)))] * 2)
    assert world_encoder.timings.images - before == 4  # one pass per window size


def test_mixed_modes_in_one_call_keep_order(world_encoder: FrameEncoder) -> None:
    frames = [make_frame(640, 360, seed=s) for s in range(3)]
    plans = [plan_patches(640, 360, c) for c in (PatchConfig(), DENSE, PatchConfig())]
    mixed = world_encoder.encode_patches(frames, plans)
    alone = [world_encoder.encode_patches([f], [p])[0] for f, p in zip(frames, plans)]
    for a, b in zip(mixed, alone):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_vit_dense_vectors_are_unit_and_independent_of_neighbours(tiny_encoder: FrameEncoder) -> None:
    """The ClearCLIP route on the tiny random ViT: shapes, norms and determinism only (no
    pretrained ViT can be fetched here, so its quality is unmeasured)."""
    assert tower_kind(tiny_encoder.model.visual) == "vit"
    frames = [make_frame(640, 360, seed=1), make_frame(300, 500, seed=2)]
    plans = [plan_patches(f.shape[2], f.shape[1], PatchConfig(window=64, stride=32, mode="dense")) for f in frames]
    together = tiny_encoder.encode_patches(frames, plans)
    for frame, plan, vectors in zip(frames, plans, together):
        assert vectors.shape == (len(plan), tiny_encoder.info.embed_dim)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        [alone] = tiny_encoder.encode_patches([frame], [plan])
        np.testing.assert_allclose(vectors, alone, atol=1e-5)
    assert not np.allclose(together[0][0], together[0][-1])  # windows differ


def test_unsupported_towers_are_named() -> None:
    with pytest.raises(DenseUnsupportedError, match="Linear"):
        tower_kind(torch.nn.Linear(2, 2))


def test_patch_mode_setting_and_fingerprint() -> None:
    assert patch_config_from_env({}).mode == "crops"
    assert patch_config_from_env({"PATCH_MODE": "dense"}).mode == "dense"
    # crops keeps the fingerprint checkpoints were written with before the setting existed
    assert PatchConfig().fingerprint() == "w224-s112-p0.15-x1-m0"
    assert PatchConfig(mode="dense").fingerprint() == "w224-s112-p0.15-x1-m0-dense"
    with pytest.raises(SettingsError, match="PATCH_MODE"):
        patch_config_from_env({"PATCH_MODE": "tokens"})
