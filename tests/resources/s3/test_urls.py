"""S3 URL parsing: every accepted form, dotted buckets, escapes, custom endpoints, errors, pre-signed
detection and the S3-host check that callers use against SSRF."""

from __future__ import annotations

import pytest

from resources.s3.urls import S3Location, S3UrlError, is_presigned, is_s3_host, parse_s3_url

ENDPOINT = "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://frames/videos/1/frame_0001.jpg", S3Location("frames", "videos/1/frame_0001.jpg", None)),
        # virtual-hosted
        ("https://frames.s3.amazonaws.com/videos/1/f.jpg", S3Location("frames", "videos/1/f.jpg", None)),
        ("https://frames.s3.eu-west-1.amazonaws.com/a/b.png", S3Location("frames", "a/b.png", "eu-west-1")),
        ("https://frames.s3-us-west-2.amazonaws.com/a/b.png", S3Location("frames", "a/b.png", "us-west-2")),
        ("https://frames.s3.dualstack.ap-southeast-2.amazonaws.com/k", S3Location("frames", "k", "ap-southeast-2")),
        ("https://frames.s3.us-gov-west-1.amazonaws.com/k", S3Location("frames", "k", "us-gov-west-1")),
        ("https://frames.s3-external-1.amazonaws.com/k", S3Location("frames", "k", "us-east-1")),
        ("http://frames.s3.amazonaws.com/k", S3Location("frames", "k", None)),
        # path-style
        ("https://s3.amazonaws.com/frames/videos/1/f.jpg", S3Location("frames", "videos/1/f.jpg", None)),
        ("https://s3.eu-central-1.amazonaws.com/frames/k.jpg", S3Location("frames", "k.jpg", "eu-central-1")),
        ("https://s3-eu-central-1.amazonaws.com/frames/k.jpg", S3Location("frames", "k.jpg", "eu-central-1")),
        ("https://s3.dualstack.us-east-1.amazonaws.com/frames/k", S3Location("frames", "k", "us-east-1")),
        ("https://s3.cn-north-1.amazonaws.com.cn/frames/k", S3Location("frames", "k", "cn-north-1")),
        # the host is case-insensitive, the key is not
        ("HTTPS://FRAMES.S3.AMAZONAWS.COM/Videos/F.JPG", S3Location("frames", "Videos/F.JPG", None)),
        # a key that ends in "/" (a folder marker) is still a key
        ("https://s3.amazonaws.com/frames/videos/", S3Location("frames", "videos/", None)),
    ],
)
def test_accepted_forms(url: str, expected: S3Location) -> None:
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("s3://my.bucket.name/k/f.jpg", None),
        ("https://s3.amazonaws.com/my.bucket.name/k/f.jpg", None),
        ("https://s3.us-west-2.amazonaws.com/my.bucket.name/k/f.jpg", "us-west-2"),
        ("https://s3-us-west-2.amazonaws.com/my.bucket.name/k/f.jpg", "us-west-2"),
        # Virtual-hosted with dots fails TLS at AWS, but must still parse to the right bucket.
        ("https://my.bucket.name.s3.amazonaws.com/k/f.jpg", None),
        ("https://my.bucket.name.s3.us-west-2.amazonaws.com/k/f.jpg", "us-west-2"),
        ("https://my.bucket.name.s3-us-west-2.amazonaws.com/k/f.jpg", "us-west-2"),
        ("https://my.bucket.name.s3.dualstack.us-west-2.amazonaws.com/k/f.jpg", "us-west-2"),
    ],
)
def test_dotted_bucket_names(url: str, region: str | None) -> None:
    assert parse_s3_url(url) == S3Location("my.bucket.name", "k/f.jpg", region)


def test_buckets_that_look_like_endpoints() -> None:
    # The endpoint is the shortest matching suffix; everything before it is the bucket.
    assert parse_s3_url("https://s3.backup.s3.amazonaws.com/k").bucket == "s3.backup"
    assert parse_s3_url("https://s3-us-east-1.s3.us-west-2.amazonaws.com/k") == S3Location("s3-us-east-1", "k", "us-west-2")
    assert parse_s3_url("https://s3.amazonaws.com/s3.us-west-2.amazonaws.com/k").bucket == "s3.us-west-2.amazonaws.com"


def test_escapes_are_decoded_and_queries_ignored() -> None:
    signed = "https://frames.s3.us-east-1.amazonaws.com/videos/my%20clip/frame%2B1%3F.jpg?X-Amz-Signature=abc&x=1#frag"
    assert parse_s3_url(signed) == S3Location("frames", "videos/my clip/frame+1?.jpg", "us-east-1")
    assert parse_s3_url("https://s3.amazonaws.com/frames/caf%C3%A9/%E2%9C%93.png").key == "café/✓.png"
    # '+' in a path is a plus, not a space (that rule belongs to form encoding).
    assert parse_s3_url("https://s3.amazonaws.com/frames/a+b.jpg").key == "a+b.jpg"


def test_s3_scheme_keys_are_literal() -> None:
    # As in the AWS CLI: s3:// keys are not percent-encoded, so '%', '?' and '#' are part of the key.
    location = parse_s3_url("s3://frames/100%25 done?/a#b.jpg")
    assert location == S3Location("frames", "100%25 done?/a#b.jpg", None)
    assert location.uri == "s3://frames/100%25 done?/a#b.jpg"
    assert parse_s3_url(location.uri) == location


def test_uri() -> None:
    assert parse_s3_url("https://frames.s3-us-west-2.amazonaws.com/a%20b/c.jpg").uri == "s3://frames/a b/c.jpg"


def test_custom_endpoint_is_path_style() -> None:
    assert parse_s3_url("http://127.0.0.1:9000/frames/videos/1/f%201.jpg", ENDPOINT) == S3Location("frames", "videos/1/f 1.jpg", None)
    # Dotted buckets and signed queries on the endpoint too.
    assert parse_s3_url("http://127.0.0.1:9000/my.bucket/k?X-Amz-Signature=x", ENDPOINT) == S3Location("my.bucket", "k", None)
    # The default port is the same origin whether written or not.
    assert parse_s3_url("https://minio.internal/frames/k", "https://minio.internal:443").key == "k"
    # An endpoint with a path prefix (a reverse proxy) is stripped before the bucket.
    assert parse_s3_url("http://gw.local/s3/frames/k", "http://gw.local/s3/") == S3Location("frames", "k", None)
    # AWS URLs still parse with an endpoint configured.
    assert parse_s3_url("https://frames.s3.amazonaws.com/k", ENDPOINT) == S3Location("frames", "k", None)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9001/frames/k",  # another port
        "https://127.0.0.1:9000/frames/k",  # another scheme
        "http://localhost:9000/frames/k",  # another host name
        "http://user@127.0.0.1:9000/frames/k",  # userinfo is never the endpoint
    ],
)
def test_endpoint_must_match_scheme_host_and_port(url: str) -> None:
    with pytest.raises(S3UrlError, match="not an S3 host"):
        parse_s3_url(url, ENDPOINT)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty S3 URL"),
        ("   ", "empty S3 URL"),
        ("s3://frames", "no key"),
        ("s3://frames/", "empty key"),
        ("https://frames.s3.amazonaws.com/", "empty key"),
        ("https://frames.s3.amazonaws.com", "empty key"),
        ("https://s3.amazonaws.com/frames", "empty key"),
        ("https://s3.amazonaws.com/frames/", "empty key"),
        ("https://s3.amazonaws.com/", "no bucket"),
        ("https://evil.example.com/frames/k", "not an S3 host"),
        ("https://frames.s3.amazonaws.com.evil.example/k", "not an S3 host"),
        ("https://s3.amazonaws.com.evil.example/frames/k", "not an S3 host"),
        ("https://s3.amazonaws.com@evil.example/frames/k", "not an S3 host"),
        ("https://s3.amazonaws.com:8443/frames/k", "not an S3 host"),
        ("https://frames.s3-website-us-east-1.amazonaws.com/k", "not an S3 host"),  # website, not the API
        ("http://127.0.0.1:9000/frames/k", "not an S3 host"),  # an endpoint only counts when configured
        ("ftp://frames/k", "unsupported scheme"),
        ("file:///tmp/frames/k", "unsupported scheme"),
        ("frames/k.jpg", "unsupported scheme"),
        ("s3:///k", "invalid bucket name"),
        ("s3://a/k", "invalid bucket name"),
        ("s3://has space/k", "invalid bucket name"),
        ("https://s3.amazonaws.com/bad..name/k", "invalid bucket name"),
        ("https://s3.amazonaws.com:99999/frames/k", "malformed URL"),
    ],
)
def test_errors_name_the_url(url: str, message: str) -> None:
    with pytest.raises(S3UrlError, match=message) as info:
        parse_s3_url(url)
    assert isinstance(info.value, ValueError)
    if url.strip():
        assert repr(url) in str(info.value)


def test_empty_key_allowed_for_prefixes() -> None:
    assert parse_s3_url("s3://frames", allow_empty_key=True) == S3Location("frames", "", None)
    assert parse_s3_url("s3://frames/", allow_empty_key=True) == S3Location("frames", "", None)
    assert parse_s3_url("http://127.0.0.1:9000/frames/", ENDPOINT, allow_empty_key=True).key == ""


def test_bad_endpoint_is_named() -> None:
    with pytest.raises(S3UrlError, match="'minio:9000'"):
        parse_s3_url("http://minio:9000/frames/k", "minio:9000")


def test_is_presigned() -> None:
    v4 = (
        "https://frames.s3.amazonaws.com/k.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20260101"
        "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=abcdef"
    )
    v2 = "https://frames.s3.amazonaws.com/k.jpg?AWSAccessKeyId=AKIA&Signature=abc%3D&Expires=1795605607"
    assert is_presigned(v4)
    assert is_presigned(v2)
    assert is_presigned("http://127.0.0.1:9000/frames/k?x-amz-signature=abc")  # names compared case-insensitively
    assert not is_presigned("https://frames.s3.amazonaws.com/k.jpg")
    assert not is_presigned("https://frames.s3.amazonaws.com/k.jpg?Signature=abc")  # v2 needs the key id too
    assert not is_presigned("https://frames.s3.amazonaws.com/X-Amz-Signature/k.jpg")  # in the path, not the query
    assert not is_presigned("s3://frames/k.jpg")


@pytest.mark.parametrize(
    "url",
    [
        "https://frames.s3.amazonaws.com/k",
        "https://frames.s3.eu-west-1.amazonaws.com/k",
        "https://frames.s3-eu-west-1.amazonaws.com/k",
        "https://frames.s3.dualstack.eu-west-1.amazonaws.com/k",
        "https://s3.amazonaws.com/frames/k",
        "https://s3.eu-west-1.amazonaws.com/frames/k",
        "https://s3-eu-west-1.amazonaws.com/frames/k",
        "https://my.bucket.name.s3.amazonaws.com/k",
        "https://s3.amazonaws.com:443/frames/k",
        "s3://frames/k",
        "http://127.0.0.1:9000/frames/k",
        "http://127.0.0.1:9000/",  # the host decides, not whether a key is named
    ],
)
def test_is_s3_host(url: str) -> None:
    assert is_s3_host(url, ENDPOINT)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/bucket/key",
        "http://169.254.169.254/latest",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest",
        "http://127.0.0.1:9001/frames/k",
        "http://localhost:9000/frames/k",
        "http://127.0.0.1:9000@169.254.169.254/latest",
        "https://frames.s3.amazonaws.com.evil.example/k",
        "https://evil.example/s3.amazonaws.com/k",
        "https://s3.amazonaws.com@evil.example/frames/k",
        "https://amazonaws.com/frames/k",
        "https://ec2.us-east-1.amazonaws.com/",
        "https://s3.amazonaws.com:8080/frames/k",
        "file:///etc/passwd",
        "gopher://s3.amazonaws.com/frames/k",
        "",
        "not a url",
        "https://s3.amazonaws.com:bad/frames/k",
    ],
)
def test_is_not_s3_host(url: str) -> None:
    assert not is_s3_host(url, ENDPOINT)


def test_endpoint_host_only_counts_when_configured() -> None:
    assert not is_s3_host("http://127.0.0.1:9000/frames/k")
    assert not is_s3_host("http://127.0.0.1:9000/frames/k", "not an endpoint")


# -- escapes, allowed locations, public URLs (issue 9, defect 4) ---------------------------------

SIGV4_QUERY = (
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=abcdef"
)


@pytest.mark.parametrize(
    "url",
    [
        # The case: a pre-signed-looking URL on the endpoint that a server resolved to /moto-api.
        "http://127.0.0.1:9000/frames/../moto-api/data.json?X-Amz-Signature=1",
        "http://127.0.0.1:9000/frames/a/../../other/k",
        "http://127.0.0.1:9000/frames/./k",
        "http://127.0.0.1:9000/frames/%2e%2e/other/k",
        "http://127.0.0.1:9000/frames/%2E%2E/other/k",
        "http://127.0.0.1:9000/frames/.%2e/other/k",
        "http://127.0.0.1:9000/frames/a%2f..%2f..%2fother/k",
        "http://127.0.0.1:9000/frames/..%5c..%5cother/k",
        "http://127.0.0.1:9000/frames/a\\..\\other/k",
        "http://127.0.0.1:9000/frames/a%5Cb",
        "https://frames.s3.amazonaws.com/../other/k",
        "https://frames.s3.amazonaws.com/videos/%2e%2e/k" + SIGV4_QUERY,
        "https://s3.amazonaws.com/frames/videos/../../other/k",
        "https://s3.amazonaws.com/frames/a/%0d%0aX-Injected:%201",
        "https://s3.amazonaws.com/frames/a%00.jpg",
        "s3://frames/../other/k",
        "s3://frames/videos/../../k",
        "s3://frames/./k",
        "s3://frames/videos/..",
        "s3://frames/a\\b",
        "s3://frames/%2e%2e/k",
        "s3://frames/a\r\nb",
        "s3://frames/a\nb",
        "s3://frames/a\x00b",
        "s3://frames/a\tb",
        "https://frames.s3.amazonaws.com/k\r\nHost: evil",
    ],
)
def test_escapes_and_control_characters_are_refused(url: str) -> None:
    with pytest.raises(S3UrlError) as info:
        parse_s3_url(url, ENDPOINT)
    assert "\r" not in str(info.value) and "\n" not in str(info.value)  # a message fit for a log line


def test_signed_queries_may_encode_slashes() -> None:
    # X-Amz-Credential holds %2F: only the path is held to the no-%2f rule.
    assert parse_s3_url("https://frames.s3.amazonaws.com/videos/1/f.jpg" + SIGV4_QUERY) == S3Location("frames", "videos/1/f.jpg")
    # Dots inside names are fine; only whole "." and ".." segments are refused.
    assert parse_s3_url("s3://frames/v/..hidden/a..b/.x/f.jpg").key == "v/..hidden/a..b/.x/f.jpg"


def test_allowed_prefixes() -> None:
    from resources.s3.urls import S3Prefix, S3UrlNotAllowed, check_allowed, parse_prefixes

    allowed = parse_prefixes(" s3://frames/videos , s3://queries ,")
    assert allowed == (S3Prefix("frames", "videos/"), S3Prefix("queries", ""))
    assert [p.uri for p in allowed] == ["s3://frames/videos/", "s3://queries/"]
    check_allowed(S3Location("frames", "videos/1/f.jpg"), allowed)
    check_allowed(S3Location("queries", "any/key.png"), allowed)
    for location in (
        S3Location("frames", "videos-private/1.jpg"),  # a prefix is a folder, not a string prefix
        S3Location("frames", "other/1.jpg"),
        S3Location("secrets", "videos/1.jpg"),
        S3Location("queriesx", "k.png"),
    ):
        with pytest.raises(S3UrlNotAllowed, match="outside the S3 locations"):
            check_allowed(location, allowed)
    with pytest.raises(S3UrlNotAllowed, match="ALLOWED_S3_PREFIXES"):
        check_allowed(S3Location("frames", "videos/1.jpg"), ())
    for bad in ("frames/videos", "https://frames.s3.amazonaws.com/videos/", "s3://fr/x", "s3://frames/../x"):
        with pytest.raises(S3UrlError):
            parse_prefixes(bad)


@pytest.mark.parametrize(
    "url",
    [
        "s3://secrets/k.png",
        "s3://frames/other/k.png",
        "https://secrets.s3.amazonaws.com/videos/k.png",
        "https://s3.eu-west-1.amazonaws.com/secrets/videos/k.png",
        "http://127.0.0.1:9000/secrets/videos/k.png" + SIGV4_QUERY,
        "http://127.0.0.1:9000/frames/videos/../other/k.png?X-Amz-Signature=1",
        "http://127.0.0.1:9000/frames/videos/%2e%2e/other/k.png",
        "https://evil.example/frames/videos/k.png",
        "https://user:pw@frames.s3.amazonaws.com/videos/k.png",
        "file:///frames/videos/k.png",
        "s3://frames/videos/",
        "   ",
    ],
)
def test_parse_allowed_refuses_every_form_outside(url: str) -> None:
    from resources.s3.urls import S3Prefix, parse_allowed_s3_url

    with pytest.raises(S3UrlError) as info:
        parse_allowed_s3_url(url, ENDPOINT, (S3Prefix("frames", "videos/"),))
    assert "abcdef" not in str(info.value) and "pw" not in str(info.value)  # no signature, no password


def test_parse_allowed_accepts_every_form_inside() -> None:
    from resources.s3.urls import S3Prefix, parse_allowed_s3_url

    allowed = (S3Prefix("frames", "videos/"),)
    for url in (
        "s3://frames/videos/1/f.jpg",
        "https://frames.s3.amazonaws.com/videos/1/f.jpg",
        "https://s3.us-west-2.amazonaws.com/frames/videos/1/f.jpg",
        "http://127.0.0.1:9000/frames/videos/1/f.jpg" + SIGV4_QUERY,
        "  s3://frames/videos/1/f.jpg\n",
    ):
        assert parse_allowed_s3_url(url, ENDPOINT, allowed).key == "videos/1/f.jpg"


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("s3://frames/videos/1/f.jpg", "s3://frames/videos/1/f.jpg"),
        ("https://frames.s3.amazonaws.com/videos/1/f.jpg" + SIGV4_QUERY, "https://frames.s3.amazonaws.com/videos/1/f.jpg"),
        ("https://user:pw@frames.s3.amazonaws.com/f.jpg#x", "https://frames.s3.amazonaws.com/f.jpg"),
        ("http://127.0.0.1:9000/frames/f.jpg", "http://127.0.0.1:9000/frames/f.jpg"),
        ("file:///srv/frames/videos/1/frame_0.png", ""),
        ("/srv/frames/videos/1/frame_0.png", ""),
        ("frame_0.png", ""),
        ("", ""),
    ],
)
def test_public_url(stored: str, shown: str) -> None:
    from resources.s3.urls import public_url

    assert public_url(stored) == shown
