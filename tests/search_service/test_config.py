"""The service's settings: ALLOWED_S3_PREFIXES and its default from FRAMES_ROOT."""

from __future__ import annotations

import pytest

from resources.s3.urls import S3Prefix
from resources.settings import SettingsError
from search_service.config import ServiceSettings, service_settings_from_env


def test_allowed_locations_default_to_the_frames_bucket() -> None:
    settings = service_settings_from_env({"FRAMES_ROOT": "s3://frames/videos/"})
    assert settings.allowed_locations() == (S3Prefix("frames", ""),)


def test_no_s3_location_without_an_s3_frames_root() -> None:
    assert service_settings_from_env({}).allowed_locations() == ()
    assert service_settings_from_env({"FRAMES_ROOT": "/srv/frames", "ALLOWED_S3_PREFIXES": " "}).allowed_locations() == ()


def test_allowed_prefixes_from_the_environment_replace_the_default() -> None:
    settings = service_settings_from_env({
        "FRAMES_ROOT": "s3://frames/videos/", "ALLOWED_S3_PREFIXES": "s3://frames/videos, s3://queries/uploads/,",
    })
    assert settings.allowed_s3_prefixes == ("s3://frames/videos/", "s3://queries/uploads/")
    assert settings.allowed_locations() == (S3Prefix("frames", "videos/"), S3Prefix("queries", "uploads/"))


@pytest.mark.parametrize("value", ["frames/videos", "https://frames.s3.amazonaws.com/", "s3://x/", "s3://frames/../other/"])
def test_bad_prefixes_fail_at_start_up(value: str) -> None:
    with pytest.raises(SettingsError, match="ALLOWED_S3_PREFIXES"):
        service_settings_from_env({"ALLOWED_S3_PREFIXES": value})
    with pytest.raises(SettingsError, match="ALLOWED_S3_PREFIXES"):
        ServiceSettings(allowed_s3_prefixes=(value,))
