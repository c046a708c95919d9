"""S3_URL_PATTERN, the URL forms the HTTP API accepts: every string it matches is a URL the
parser reads, and the spellings it leaves out are the ones the parser refuses (or rare ones)."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from resources.s3.urls import S3_URL_PATTERN, S3UrlNotAllowed, parse_allowed_s3_url
from search_service.schemas import Url

PATTERN = re.compile(S3_URL_PATTERN)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(PATTERN, fullmatch=True))
def test_every_url_the_pattern_matches_is_one_the_parser_reads(url: str) -> None:
    # Nothing is allowed here, so a URL the parser reads ends in S3UrlNotAllowed - never in a
    # complaint about its form.
    with pytest.raises(S3UrlNotAllowed):
        parse_allowed_s3_url(url, None, [])


@pytest.mark.parametrize("url", [
    "s3://frames/video-1/000001.jpg",
    "s3://my.bucket/a folder/frame 1.png",
    "s3://Legacy_Bucket/key?with#literal%20chars",
    "https://frames.s3.amazonaws.com/video-1/000001.jpg",
    "https://frames.s3.eu-west-1.amazonaws.com/v/1.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20260101&X-Amz-Signature=ab12",
    "http://s3.amazonaws.com/frames/v/%C3%A9t%C3%A9.jpg",
])
def test_canonical_urls_match(url: str) -> None:
    assert PATTERN.fullmatch(url)
    assert TypeAdapter(Url).validate_python(url) == url


@pytest.mark.parametrize("url", [
    "", "frames/1.jpg", "s3://", "s3://ab/key", "s3://frames/", "s3://frames/a/", "s3://frames/../x", "s3://frames/a/./b",
    "s3://frames/%2e%2e/x", "s3://frames/a\\b", "s3://frames/a\r\nb", "s3://frames/a ", "s3://frames/a\n",
    "https://evil.example/s3.amazonaws.com/b/k", "https://frames.s3.amazonaws.com.evil.example/k",
    "https://user@frames.s3.amazonaws.com/k", "http://169.254.169.254/latest/meta-data", "file:///etc/passwd",
])
def test_other_strings_are_refused_by_the_api(url: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Url).validate_python(url)
