"""Parse every form of S3 URL into bucket, key and region: the one parser the pipeline and the search
service share.

Accepted forms (``http`` or ``https`` wherever a host appears):

    s3://bucket/key                                        (the key is taken literally, as the AWS CLI does)
    https://bucket.s3.amazonaws.com/key                    virtual-hosted
    https://bucket.s3.<region>.amazonaws.com/key
    https://bucket.s3-<region>.amazonaws.com/key           legacy dash form
    https://bucket.s3.dualstack.<region>.amazonaws.com/key
    https://s3.amazonaws.com/bucket/key                    path-style, with the same host variants
    <endpoint_url>/bucket/key                              path-style on a configured MinIO/LocalStack/moto endpoint

Keys in http(s) URLs are percent-decoded (``%20`` -> space); query strings and fragments (the
signature of a pre-signed URL) do not change the location. A host counts as S3 only when the
whole host name matches an AWS S3 endpoint, so ``bucket.s3.amazonaws.com.evil.example`` and
``evil.example/s3.amazonaws.com`` are refused: :func:`is_s3_host` is the SSRF guard of callers that
fetch URLs they did not build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

# A region name: us-east-1, eu-central-1, us-gov-west-1, ap-southeast-2, cn-north-1, us-isob-east-1.
_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d+"

# The S3 API endpoint part of a host name; the bucket of a virtual-hosted URL is whatever precedes it.
_S3_ENDPOINT = (
    r"s3(?:"
    r"-external-1"  # legacy alias of us-east-1
    rf"|[.-]dualstack\.(?P<dualstack_region>{_REGION})"
    rf"|[.-](?P<region>{_REGION})"
    r")?\.amazonaws\.com(?:\.cn)?"
)

# The bucket group is greedy, so a dotted bucket (my.s3.backup) keeps every label before the endpoint.
_AWS_HOST = re.compile(rf"^(?:(?P<bucket>.+)\.)?(?P<endpoint>{_S3_ENDPOINT})$")

# Bucket names: today's rules are 3-63 of [a-z0-9.-]; legacy us-east-1 buckets may hold upper case
# and underscores and be up to 255 long. Anything else (slashes, spaces, empty) is not a bucket.
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")

_DEFAULT_PORTS = {"http": 80, "https": 443}


class S3UrlError(ValueError):
    """A string that is not an S3 URL of an accepted form; the message names it and what was expected."""


@dataclass(frozen=True)
class S3Location:
    """One S3 object (or prefix): ``region`` is None where the URL does not say (s3://, global host, endpoint)."""

    bucket: str
    key: str
    region: str | None = None

    @property
    def uri(self) -> str:
        """The location as ``s3://bucket/key`` (the key literal, not percent-encoded)."""
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_url(url: str, endpoint_url: str | None = None, *, allow_empty_key: bool = False) -> S3Location:
    """Bucket, key and region of ``url`` in any accepted form (see the module docstring).

    ``endpoint_url`` (e.g. ``http://127.0.0.1:9000``) makes URLs on that scheme, host and port parse
    path-style. ``allow_empty_key`` accepts a bare bucket (``s3://bucket/``), for prefixes.
    """
    if not isinstance(url, str) or not url.strip():
        raise S3UrlError(f"empty S3 URL {url!r}: expected s3://bucket/key or an https S3 URL")
    url = url.strip()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "s3":
        return _parse_s3_scheme(url, allow_empty_key)
    if scheme not in _DEFAULT_PORTS:
        raise S3UrlError(
            f"unsupported scheme in {url!r}: expected s3://bucket/key or an http(s) URL of an S3 host"
        )
    parts = _split(url)
    endpoint = _endpoint_parts(endpoint_url) if endpoint_url is not None else None
    if endpoint is not None and _same_origin(parts, endpoint):
        path = parts.path
        endpoint_path = endpoint.path.rstrip("/")
        if endpoint_path:
            if not path.startswith(endpoint_path + "/"):
                raise S3UrlError(f"{url!r} is on the S3 endpoint {endpoint_url!r} but not under its path {endpoint_path!r}")
            path = path[len(endpoint_path):]
        return _path_style(url, path, None, allow_empty_key)

    match = _match_aws_host(parts)
    if match is None:
        expected = "an AWS S3 host (*.s3[.<region>].amazonaws.com)"
        if endpoint_url is not None:
            expected += f" or the S3 endpoint {endpoint_url!r}"
        raise S3UrlError(f"not an S3 host in {url!r}: expected {expected}")
    region = match.group("region") or match.group("dualstack_region")
    if region is None and match.group("endpoint").startswith("s3-external-1."):
        region = "us-east-1"
    bucket = match.group("bucket")
    if bucket is None:
        return _path_style(url, parts.path, region, allow_empty_key)
    # Virtual-hosted: the whole path is the key.
    return _location(url, bucket, unquote(parts.path[1:]), region, allow_empty_key)


def is_presigned(url: str) -> bool:
    """Whether ``url`` carries a query-string signature (SigV4 ``X-Amz-Signature``, or SigV2)."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return False
    names = {name.lower() for name, _ in parse_qsl(query, keep_blank_values=True)}
    return "x-amz-signature" in names or ("signature" in names and "awsaccesskeyid" in names)


def is_s3_host(url: str, endpoint_url: str | None = None) -> bool:
    """Whether an http(s) ``url`` points at an AWS S3 host or at ``endpoint_url``'s scheme, host and port.

    ``s3://`` URLs count as S3: they can only be read through an S3 client. Everything else,
    including link-local metadata addresses and look-alike hosts, is False.
    """
    if not isinstance(url, str):
        return False
    url = url.strip()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "s3":
        return True
    if scheme not in _DEFAULT_PORTS:
        return False
    try:
        parts = _split(url)
        if endpoint_url is not None and _same_origin(parts, _endpoint_parts(endpoint_url)):
            return True
    except S3UrlError:
        return False
    return _match_aws_host(parts) is not None


@dataclass(frozen=True)
class _Parts:
    scheme: str
    host: str
    port: int
    path: str
    has_userinfo: bool


def _split(url: str) -> _Parts:
    try:
        split = urlsplit(url)
        port = split.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise S3UrlError(f"malformed URL {url!r}: {exc}") from None
    scheme = split.scheme.lower()
    host = (split.hostname or "").rstrip(".")  # urlsplit lower-cases the host name
    if not host:
        raise S3UrlError(f"no host in {url!r}: expected http(s)://host/...")
    return _Parts(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme], split.path, "@" in split.netloc)


def _endpoint_parts(endpoint_url: str) -> _Parts:
    scheme = endpoint_url.split("://", 1)[0].lower() if "://" in endpoint_url else ""
    if scheme not in _DEFAULT_PORTS:
        raise S3UrlError(f"S3 endpoint {endpoint_url!r} must be an http:// or https:// URL")
    return _split(endpoint_url)


def _same_origin(parts: _Parts, endpoint: _Parts) -> bool:
    # Userinfo never matches: "http://127.0.0.1:9000@evil" style tricks are refused outright.
    return not parts.has_userinfo and (parts.scheme, parts.host, parts.port) == (endpoint.scheme, endpoint.host, endpoint.port)


def _match_aws_host(parts: _Parts) -> re.Match[str] | None:
    if parts.has_userinfo or parts.port != _DEFAULT_PORTS[parts.scheme]:
        return None
    return _AWS_HOST.match(parts.host)


def _parse_s3_scheme(url: str, allow_empty_key: bool) -> S3Location:
    # No URL decoding and no query splitting: "s3://b/a?b#c%20" names the key "a?b#c%20".
    rest = url[len("s3://"):]
    bucket, slash, key = rest.partition("/")
    if not slash and not allow_empty_key:
        raise S3UrlError(f"no key in {url!r}: expected s3://bucket/key")
    return _location(url, bucket, key, None, allow_empty_key)


def _path_style(url: str, path: str, region: str | None, allow_empty_key: bool) -> S3Location:
    bucket, _, key = path[1:].partition("/")
    if not bucket:
        raise S3UrlError(f"no bucket in {url!r}: expected a path-style URL host/bucket/key")
    return _location(url, unquote(bucket), unquote(key), region, allow_empty_key)


def _location(url: str, bucket: str, key: str, region: str | None, allow_empty_key: bool) -> S3Location:
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise S3UrlError(
            f"invalid bucket name {bucket!r} in {url!r}: expected 3-255 letters, digits, '.', '-' or '_'"
        )
    if not key and not allow_empty_key:
        raise S3UrlError(f"empty key in {url!r}: expected a URL naming an object, e.g. s3://{bucket}/path/to/frame.jpg")
    return S3Location(bucket, key, region)
