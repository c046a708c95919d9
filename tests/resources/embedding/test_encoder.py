"""The OpenCLIP encoder on the tiny random-weight model: shapes, norms, batch invariance,
precision; and the offline fallback to the synthetic-world model's folder."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from resources.embedding.encoder import EncoderConfig, EncoderError, FrameEncoder
from resources.embedding.model_files import save_random_weights
from resources.embedding.offline import OFFLINE_MODEL_ENV, load_encoder_or_offline, offline_model_dir
from resources.embedding.patches import PatchConfig, plan_patches
from resources.embedding.precision import cpu_has_native_bf16
from resources.embedding.weights import WeightsUnavailableError
from tests.conftest import WORLD_DESCRIPTION, make_frame

FRAMES = [make_frame(640, 360, seed=1), make_frame(300, 500, seed=2), make_frame(90, 70, seed=3)]


def assert_unit_vectors(vectors: np.ndarray, dim: int) -> None:
    assert vectors.dtype == np.float32 and vectors.shape[-1] == dim
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=-1), 1.0, atol=1e-5)


def test_info_describes_the_loaded_model(tiny_encoder: FrameEncoder, tiny_weights: Path) -> None:
    info = tiny_encoder.info
    assert info.embed_dim == 64 and info.image_size == 64
    assert info.weights_random is True and info.model_id.startswith("framesearch-tiny/random-")
    assert info.provenance.kind == "random"
    assert info.weights_source == str(tiny_weights)
    assert info.precision == "fp32" and info.device == "cpu" and info.crop_method == "resize_slice"


def test_encode_frames_shapes_and_norms(tiny_encoder: FrameEncoder) -> None:
    config = PatchConfig(window=96, stride=48)
    out = tiny_encoder.encode_frames(FRAMES, config)
    assert len(out) == 3
    for frame, emb in zip(FRAMES, out):
        expected = len(plan_patches(frame.shape[2], frame.shape[1], config))
        assert emb.global_vector.shape == (64,)
        assert emb.patch_vectors.shape == (expected, 64) and len(emb.plan) == expected
        assert_unit_vectors(emb.global_vector[None], 64)
        assert_unit_vectors(emb.patch_vectors, 64)


def test_pillow_images_and_tensors_give_the_same_vectors(tiny_encoder: FrameEncoder) -> None:
    image = Image.fromarray(FRAMES[0].permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(tiny_encoder.encode_global([image]), tiny_encoder.encode_global([FRAMES[0]]))


def _encode_with_batch_sizes(tiny_config: EncoderConfig, precision: str) -> list[tuple[np.ndarray, ...]]:
    config = PatchConfig(window=96, stride=48)
    results = []
    for batch_size in (1, 5, 64):
        encoder = FrameEncoder.load(replace(tiny_config, batch_size=batch_size, precision=precision))
        out = encoder.encode_frames(FRAMES, config)
        results.append(
            (np.stack([e.global_vector for e in out]), np.concatenate([e.patch_vectors for e in out]), encoder.encode_texts(["a", "b c", "d"]))
        )
    return results


def test_fp32_vectors_do_not_depend_on_batch_size(tiny_config: EncoderConfig) -> None:
    results = _encode_with_batch_sizes(tiny_config, "fp32")
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="CPU has no native bf16")
def test_bf16_vectors_nearly_independent_of_batch_size(tiny_config: EncoderConfig) -> None:
    """bf16 rounds every activation to 8 mantissa bits, so a last-bit difference in a GEMM's fp32
    accumulation order (which depends on the batch's row count) can flip one rounding: batch
    invariance holds to ~1e-3, not 1e-5. Same batches give bit-identical results."""
    results = _encode_with_batch_sizes(tiny_config, "bf16")
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, atol=2e-3, rtol=0)
            assert (a * b).sum(axis=1).min() > 0.9999
    again = _encode_with_batch_sizes(tiny_config, "bf16")
    for a, b in zip(results[0], again[0]):
        np.testing.assert_array_equal(a, b)


def test_texts(tiny_encoder: FrameEncoder) -> None:
    vectors = tiny_encoder.encode_texts(["a red car", "a red car", "a person on a bicycle", "x " * 500])
    assert_unit_vectors(vectors, 64)
    np.testing.assert_array_equal(vectors[0], vectors[1])
    assert not np.allclose(vectors[0], vectors[2])
    assert tiny_encoder.encode_texts([]).shape == (0, 64)


def test_empty_inputs(tiny_encoder: FrameEncoder) -> None:
    assert tiny_encoder.encode_global([]).shape == (0, 64)
    assert tiny_encoder.encode_frames([], PatchConfig()) == []


def test_rejects_malformed_frames(tiny_encoder: FrameEncoder) -> None:
    with pytest.raises(ValueError, match="uint8"):
        tiny_encoder.encode_global([torch.zeros(3, 10, 10)])
    with pytest.raises(ValueError, match="plans"):
        tiny_encoder.encode_patches(FRAMES, [])


def test_crop_methods_agree(tiny_config: EncoderConfig) -> None:
    frame = make_frame(1280, 720, seed=5)
    vectors = {}
    for method in ("resize_slice", "roi_align", "per_crop"):
        encoder = FrameEncoder.load(replace(tiny_config, crop_method=method))
        assert encoder.info.crop_method == method
        [emb] = encoder.encode_frames([frame], PatchConfig())
        vectors[method] = emb.patch_vectors
    reference = vectors["per_crop"]
    for method in ("resize_slice", "roi_align"):
        cosine = (vectors[method] * reference).sum(axis=1)
        assert cosine.min() > 0.98, (method, cosine.min())


def test_global_resize_modes_differ_as_documented(tiny_config: EncoderConfig) -> None:
    frame = make_frame(640, 360, seed=7)
    edited = frame.clone()
    edited[:, :, :40] = 0  # black out the left edge, outside a centre crop of a 16:9 frame
    for mode, should_change in (("crop", False), ("pad", True), ("squash", True)):
        encoder = FrameEncoder.load(replace(tiny_config, global_resize=mode))
        a, b = encoder.encode_global([frame, edited])
        assert (not np.allclose(a, b, atol=1e-6)) == should_change, mode


def test_timings_are_recorded(tiny_config: EncoderConfig) -> None:
    encoder = FrameEncoder.load(tiny_config)
    encoder.encode_frames(FRAMES[:1], PatchConfig(window=96, stride=48))
    assert encoder.timings.images > 1 and encoder.timings.crop_s > 0 and encoder.timings.model_s > 0


def test_non_finite_weights_raise(tiny_weights: Path, tmp_path: Path, tiny_config: EncoderConfig) -> None:
    state = load_file(str(tiny_weights))
    state["visual.proj"] = torch.full_like(state["visual.proj"], float("nan"))
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken))
    encoder = FrameEncoder.load(replace(tiny_config, pretrained=str(broken)))
    assert encoder.info.weights_random is False  # no marker: the loader cannot tell
    with pytest.raises(EncoderError, match="non-finite"):
        encoder.encode_global(FRAMES[:1])


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="CPU has no native bf16")
@pytest.mark.slow
def test_bf16_matches_fp32_on_vit_b_32(tmp_path: Path) -> None:
    """The precision auto picks on this CPU, on the default architecture: cosine >= 0.999 each."""
    weights = save_random_weights(tmp_path / "vit-b-32.safetensors", "ViT-B-32", seed=0)
    base = EncoderConfig(model="ViT-B-32", pretrained=str(weights), batch_size=8)
    fp32 = FrameEncoder.load(replace(base, precision="fp32"))
    auto = FrameEncoder.load(base)
    assert auto.info.precision == "bf16" and auto.info.precision_check_cosine >= 0.999
    frames = [make_frame(640, 360, seed=s) for s in range(3)]
    patch_config = PatchConfig(max_patches=6)
    a, b = fp32.encode_frames(frames, patch_config), auto.encode_frames(frames, patch_config)
    for x, y in zip(a, b):
        assert float(x.global_vector @ y.global_vector) >= 0.999
        assert ((x.patch_vectors * y.patch_vectors).sum(axis=1) >= 0.999).all()
    texts = ["a dog on a beach", "two people riding bicycles", "a red car"]
    assert ((fp32.encode_texts(texts) * auto.encode_texts(texts)).sum(axis=1) >= 0.999).all()


def test_low_precision_refused_when_it_disagrees(tiny_config: EncoderConfig) -> None:
    """With an impossible bar, auto precision falls back to fp32 and says why in its info."""
    if not cpu_has_native_bf16():
        pytest.skip("auto precision is fp32 on this CPU already")
    encoder = FrameEncoder.load(replace(tiny_config, precision="auto", min_cosine=1.0 + 1e-9))
    assert encoder.info.precision == "fp32" and encoder.info.precision_check_cosine is not None


def test_fp16_on_cpu_is_refused(tiny_config: EncoderConfig) -> None:
    with pytest.raises(ValueError, match="fp16"):
        FrameEncoder.load(replace(tiny_config, precision="fp16"))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"batch_size": 0}, "BATCH_SIZE"), ({"global_resize": "zoom"}, "GLOBAL_RESIZE_MODE"),
     ({"crop_method": "magic"}, "PATCH_CROP_METHOD"), ({"precision": "int4"}, "OPENCLIP_PRECISION")],
)
def test_invalid_config(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EncoderConfig(**kwargs)


def test_concurrent_calls_give_what_sequential_calls_give(tiny_encoder: FrameEncoder) -> None:
    """Issue 9, defect 2: request threads share one encoder. Each thread's vectors must be its own
    image's, bit for bit what the same call gives alone (identical batches, identical kernels)."""
    import threading

    config = PatchConfig(window=96, stride=48)
    frames = [make_frame(640, 360, seed=10 + i) for i in range(8)]
    plans = [plan_patches(f.shape[2], f.shape[1], config) for f in frames]
    expected = [tiny_encoder.encode_patches([f], [p])[0] for f, p in zip(frames, plans)]
    expected_global = [tiny_encoder.encode_global([f])[0] for f in frames]
    barrier = threading.Barrier(len(frames))
    got: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}

    def worker(i: int) -> None:
        barrier.wait()
        got[i] = [
            (tiny_encoder.encode_patches([frames[i]], [plans[i]])[0], tiny_encoder.encode_global([frames[i]])[0])
            for _ in range(4)
        ]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(frames))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == list(range(len(frames)))
    for i, runs in got.items():
        for patches, global_vector in runs:
            np.testing.assert_array_equal(patches, expected[i])
            np.testing.assert_array_equal(global_vector, expected_global[i])


# -- the offline fallback ------------------------------------------------------------------------


def _unavailable(tiny_config: EncoderConfig, tmp_path: Path) -> EncoderConfig:
    """A configuration whose weights cannot be had: a file that does not exist."""
    return replace(tiny_config, model="ViT-B-32", pretrained=str(tmp_path / "absent.safetensors"))


def test_offline_fallback_loads_the_world_model(
    tiny_config: EncoderConfig, world_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(OFFLINE_MODEL_ENV, str(world_model_dir))
    with caplog.at_level(logging.INFO, logger="resources.embedding.encoder"):
        encoder, reason = load_encoder_or_offline(_unavailable(tiny_config, tmp_path))
    assert reason is not None and "absent.safetensors" in reason
    info = encoder.info
    assert info.model_id.startswith("framesearch-world/") and info.weights_source == f"local-dir:{world_model_dir}"
    assert info.weights_random is False and info.provenance.kind == "synthetic-world"
    assert info.provenance.description == WORLD_DESCRIPTION
    assert "RANDOM" not in caplog.text
    assert any(r.levelno == logging.INFO and "synthetic-world weights" in r.getMessage() for r in caplog.records)
    assert_unit_vectors(encoder.encode_texts(["a red circle"]), 64)


def test_offline_fallback_argument_wins_over_the_environment(
    tiny_config: EncoderConfig, world_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(OFFLINE_MODEL_ENV, str(tmp_path / "nowhere"))
    encoder, _ = load_encoder_or_offline(_unavailable(tiny_config, tmp_path), world_model_dir)
    assert encoder.info.provenance.kind == "synthetic-world"


def test_configured_weights_are_used_when_they_load(tiny_config: EncoderConfig, world_model_dir: Path) -> None:
    encoder, reason = load_encoder_or_offline(tiny_config, world_model_dir)
    assert reason is None and encoder.info.model_id.startswith("framesearch-tiny/random-")


def test_no_offline_model_is_a_clear_error_not_random_weights(tiny_config: EncoderConfig, tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError) as error:
        load_encoder_or_offline(_unavailable(tiny_config, tmp_path), tmp_path / "framesearch-world")
    message = str(error.value)
    assert "offline model" in message and OFFLINE_MODEL_ENV in message and "absent.safetensors" in message


def test_offline_model_defaults_to_the_repository_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OFFLINE_MODEL_ENV, raising=False)
    repo = Path(__file__).resolve().parents[3]
    assert offline_model_dir() == repo / "models" / "framesearch-world"
    assert offline_model_dir(env={OFFLINE_MODEL_ENV: "/x/y"}) == Path("/x/y")
