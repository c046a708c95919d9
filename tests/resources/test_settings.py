"""Environment variables: seed names and defaults, errors that name the variable."""

from __future__ import annotations

import pytest

from resources.embedding.encoder import EncoderConfig
from resources.embedding.patches import PatchConfig
from resources.settings import (
    SettingsError,
    encoder_config_from_env,
    index_settings_from_env,
    max_image_pixels_from_env,
    patch_config_from_env,
    run_threads_from_env,
    videos_per_run_from_env,
)


def test_defaults_are_the_seeds() -> None:
    assert patch_config_from_env({}) == PatchConfig(224, 112, 0.15, (1.0,), None)
    config = encoder_config_from_env({})
    assert (config.model, config.pretrained, config.batch_size) == ("ViT-B-32", "laion2b_s34b_b79k", 64)
    assert config == EncoderConfig()


def test_values_are_read() -> None:
    env = {
        "PATCH_WINDOW": "160", "PATCH_STRIDE": "80", "PATCH_CONTEXT_PAD": "0.2",
        "PATCH_SCALES": "0.75, 1.0,1.5", "MAX_PATCHES_PER_IMAGE": "100",
    }
    assert patch_config_from_env(env) == PatchConfig(160, 80, 0.2, (0.75, 1.0, 1.5), 100)
    config = encoder_config_from_env(
        {"OPENCLIP_MODEL": "ViT-L-14", "BATCH_SIZE": "16", "OPENCLIP_PRECISION": "fp32", "GLOBAL_RESIZE_MODE": "crop"}
    )
    assert (config.model, config.batch_size, config.precision, config.global_resize) == ("ViT-L-14", 16, "fp32", "crop")
    assert max_image_pixels_from_env({"MAX_IMAGE_PIXELS": "1000"}) == 1000


def test_unset_cap_accepts_none_and_empty() -> None:
    assert patch_config_from_env({"MAX_PATCHES_PER_IMAGE": "None"}).max_patches is None
    assert patch_config_from_env({"MAX_PATCHES_PER_IMAGE": ""}).max_patches is None


@pytest.mark.parametrize(
    "env, name",
    [
        ({"PATCH_WINDOW": "big"}, "PATCH_WINDOW"),
        ({"PATCH_STRIDE": "0"}, "PATCH_STRIDE"),
        ({"PATCH_CONTEXT_PAD": "lots"}, "PATCH_CONTEXT_PAD"),
        ({"PATCH_SCALES": "1.0,x"}, "PATCH_SCALES"),
        ({"MAX_PATCHES_PER_IMAGE": "-3"}, "MAX_PATCHES_PER_IMAGE"),
    ],
)
def test_bad_patch_values_name_the_variable(env: dict, name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        patch_config_from_env(env)


@pytest.mark.parametrize(
    "env, name",
    [({"BATCH_SIZE": "0"}, "BATCH_SIZE"), ({"BATCH_SIZE": "x"}, "BATCH_SIZE"), ({"OPENCLIP_PRECISION": "fp8"}, "OPENCLIP_PRECISION")],
)
def test_bad_encoder_values_name_the_variable(env: dict, name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        encoder_config_from_env(env)


def test_index_settings() -> None:
    assert index_settings_from_env({}).patch_search_ef == 512
    assert index_settings_from_env({"PATCH_SEARCH_EF": "4096"}).patch_search_ef == 4096
    for bad in ("0", "lots", "100000"):
        with pytest.raises(SettingsError, match="PATCH_SEARCH_EF"):
            index_settings_from_env({"PATCH_SEARCH_EF": bad})


def test_bad_pixel_limit() -> None:
    with pytest.raises(SettingsError, match="MAX_IMAGE_PIXELS"):
        max_image_pixels_from_env({"MAX_IMAGE_PIXELS": "0"})


def test_videos_per_run() -> None:
    assert videos_per_run_from_env({}) == 128
    assert videos_per_run_from_env({"VIDEOS_PER_RUN": "8"}) == 8
    for bad in ("0", "-3", "many"):
        with pytest.raises(SettingsError, match="VIDEOS_PER_RUN"):
            videos_per_run_from_env({"VIDEOS_PER_RUN": bad})


def test_a_run_shares_the_cores_with_the_queues_other_runs() -> None:
    assert run_threads_from_env({}, cores=16) is None  # one run at a time: torch's default
    assert run_threads_from_env({"FRAMESEARCH_MAX_CONCURRENT_RUNS": "1"}, cores=16) is None
    assert run_threads_from_env({"FRAMESEARCH_MAX_CONCURRENT_RUNS": "2"}, cores=2) == 1
    assert run_threads_from_env({"FRAMESEARCH_MAX_CONCURRENT_RUNS": "3"}, cores=16) == 5
    assert run_threads_from_env({"FRAMESEARCH_MAX_CONCURRENT_RUNS": "4"}, cores=2) == 1
    assert run_threads_from_env({"FRAMESEARCH_MAX_CONCURRENT_RUNS": "2", "OMP_NUM_THREADS": "4"}, cores=16) is None  # said already
