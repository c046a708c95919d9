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

Keys are refused when a server or proxy could read them as another path: a ``.`` or ``..``
segment, a backslash, a control character (CR/LF would split an HTTP request), or ``%2e``,
``%2f``, ``%5c`` anywhere in the URL (S3 clients never encode those, so a URL that does is a
trick to slip a dot segment or separator past a check). ``http://endpoint/bucket/../other``
reached ``/other`` on servers that normalise paths; here it is an :class:`S3UrlError`.

:class:`S3Prefix` and :func:`check_allowed` limit URLs to configured buckets and key prefixes
(the search service's ALLOWED_S3_PREFIXES).
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

# C0 controls and DEL: never part of a URL a client should send (CR/LF split HTTP requests).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Percent-encoded '.', '/' and '\\': no S3 SDK writes them (they leave '.' and '/' as they are), and
# a server that decodes before resolving paths would see a dot segment or a separator.
_ENCODED_TRICKS = re.compile(r"%(?:2e|2f|5c)", re.IGNORECASE)


class S3UrlError(ValueError):
    """A string that is not an S3 URL of an accepted form; the message names it and what was expected."""


class S3UrlNotAllowed(S3UrlError):
    """An S3 URL outside the allowed buckets and prefixes (see :func:`check_allowed`)."""


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
    _refuse_ambiguous(url)
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
class S3Prefix:
    """An allowed S3 location: a whole ``bucket`` (``prefix == ""``) or the keys under one folder.

    A non-empty prefix always ends with ``/`` so that ``s3://b/videos`` allows ``videos/1.jpg`` but
    not ``videos-private/1.jpg``.
    """

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str) -> S3Prefix:
        """``s3://bucket`` or ``s3://bucket/some/prefix/``; raises :class:`S3UrlError` for anything else."""
        if not isinstance(text, str) or not text.strip().lower().startswith("s3://"):
            raise S3UrlError(f"allowed S3 location {text!r} must be written s3://bucket or s3://bucket/prefix/")
        location = parse_s3_url(text, allow_empty_key=True)
        prefix = location.key
        return cls(location.bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/")

    def covers(self, location: S3Location) -> bool:
        """Whether ``location`` (already parsed, so free of dot segments) lies under this prefix."""
        return location.bucket == self.bucket and location.key.startswith(self.prefix)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_prefixes(text: str) -> tuple[S3Prefix, ...]:
    """A comma-separated list of ``s3://bucket[/prefix/]`` (blank entries ignored)."""
    return tuple(S3Prefix.parse(part.strip()) for part in text.split(",") if part.strip())


def check_allowed(location: S3Location, allowed: tuple[S3Prefix, ...] | list[S3Prefix]) -> None:
    """Raise :class:`S3UrlNotAllowed` unless one of ``allowed`` covers ``location``.

    The message names the object but not the allowed locations (bucket names are the operator's).
    """
    if not allowed:
        raise S3UrlNotAllowed(
            f"{location.uri}: no S3 location is allowed; set ALLOWED_S3_PREFIXES "
            "(comma-separated s3://bucket/prefix/) or an s3:// FRAMES_ROOT"
        )
    if not any(prefix.covers(location) for prefix in allowed):
        raise S3UrlNotAllowed(f"{location.uri} is outside the S3 locations this service reads (ALLOWED_S3_PREFIXES)")


def parse_allowed_s3_url(url: str, endpoint_url: str | None, allowed: tuple[S3Prefix, ...] | list[S3Prefix]) -> S3Location:
    """The object an untrusted ``url`` names, if it is one a service may read; :class:`S3UrlError` otherwise.

    Every form of :func:`parse_s3_url` (pre-signed ones too: the query does not change the
    location) on an S3 host, without user info, with a key free of escapes that names an object
    (not a folder: no trailing ``/``), under ``allowed``.
    The checks make no connection. Error messages never carry the query string (a signature).
    """
    if not isinstance(url, str) or not url.strip():
        raise S3UrlError("empty URL: expected s3://bucket/key or an http(s) URL of an S3 object")
    url = url.strip()
    if _CONTROL.search(url):
        raise S3UrlError("control characters (CR, LF, NUL, ...) in an S3 URL are refused")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("s3", *_DEFAULT_PORTS):
        named = f"unsupported scheme {scheme + '://'!r}" if scheme else "no scheme"
        raise S3UrlError(f"URL has {named}: expected s3://bucket/key or an http(s) URL of an S3 object")
    # User info is a credential, and "https://allowed@other/" is the classic trick to make a host
    # check and the connection disagree: refused for every scheme.
    authority = re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]
    if "@" in authority:
        raise S3UrlError("URLs with user info (user:password@host) are refused")
    if scheme != "s3":
        if not is_s3_host(url, endpoint_url):
            named = "AWS S3" + (f" or the S3 endpoint {endpoint_url}" if endpoint_url else "")
            raise S3UrlError(f"URL host {authority!r} is refused: only {named} is read")
        url = re.split(r"[?#]", url, maxsplit=1)[0]
    location = parse_s3_url(url, endpoint_url)
    if location.key.endswith("/"):
        raise S3UrlError(f"{location.uri} names a folder: expected the key of an image object")
    check_allowed(location, allowed)
    return location


def public_url(url: str) -> str:
    """A stored frame URL as clients may see it: ``s3://`` as is, http(s) without user info, query
    or fragment (a pre-signed URL's signature is a credential), anything else (``file://``, server
    paths) as ``""`` - the image_id identifies the frame."""
    if not isinstance(url, str):
        return ""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "s3":
        return url
    if scheme in _DEFAULT_PORTS:
        try:
            split = urlsplit(url)
            host = split.hostname or ""
            port = f":{split.port}" if split.port else ""
        except ValueError:
            return ""
        if ":" in host:  # IPv6: urlsplit drops the brackets
            host = f"[{host}]"
        return f"{scheme}://{host}{port}{split.path}" if host else ""
    return ""


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


def _refuse_ambiguous(url: str) -> None:
    # The URL itself is not repeated: with a control character in it, it is not fit for a message.
    if _CONTROL.search(url):
        raise S3UrlError("control characters (CR, LF, NUL, ...) in an S3 URL are refused")
    # The path only: a pre-signed URL's query rightly holds %2F (X-Amz-Credential=AKID%2F2024...).
    # An s3:// key is literal, and all of it is the key.
    path = url if url[:5].lower() == "s3://" else re.split(r"[?#]", url, maxsplit=1)[0]
    if _ENCODED_TRICKS.search(path):
        raise S3UrlError(f"percent-encoded '.', '/' or '\\' (%2e, %2f, %5c) in {path!r} are refused: write them as they are")


def _location(url: str, bucket: str, key: str, region: str | None, allow_empty_key: bool) -> S3Location:
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise S3UrlError(
            f"invalid bucket name {bucket!r} in {url!r}: expected 3-255 letters, digits, '.', '-' or '_'"
        )
    # Checked on the decoded key: what the caller wrote as %xx has become the character here.
    if _CONTROL.search(key) or "\\" in key:
        raise S3UrlError(f"key of {url!r} holds a control character or a backslash")
    if any(segment in (".", "..") for segment in key.split("/")):
        raise S3UrlError(f"key of {url!r} has a '.' or '..' segment: paths that could leave the bucket or prefix are refused")
    if not key and not allow_empty_key:
        raise S3UrlError(f"empty key in {url!r}: expected a URL naming an object, e.g. s3://{bucket}/path/to/frame.jpg")
    return S3Location(bucket, key, region)


# -- The forms the HTTP API accepts, as one regular expression -------------------------------------
#
# The search service's ``s3_url`` fields are validated against :data:`S3_URL_PATTERN` and its
# OpenAPI schema states the same pattern, so a client (or a property-based tester) knows exactly
# which strings are URLs here. It is a subset of what :func:`parse_allowed_s3_url` reads - the
# canonical spellings: ``s3://bucket/key`` and the AWS virtual-hosted and path-style https forms,
# pre-signed query strings included - and every string it matches passes that parser's syntax
# checks (tested with strings generated from the pattern). It uses only what ECMA-262, Python's
# ``re`` and Rust's ``regex`` (pydantic) read alike: classes, groups, alternation, bounded repeats.

# A percent escape that decodes to neither '.', '/', '\\' (refused: see _ENCODED_TRICKS) nor a
# control character (refused in keys).
_ESCAPE = r"%(?:2[0-9A-Da-d]|[34689A-Fa-f][0-9A-Fa-f]|5[0-9ABD-Fabd-f]|7[0-9A-Ea-e])"
# Python's str.strip() removes these from both ends of a URL: a key may not end in one.
_WHITESPACE = "\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
_BUCKET_FORM = r"[A-Za-z0-9](?:[A-Za-z0-9_-]|\.[A-Za-z0-9_-]){1,126}[A-Za-z0-9]"  # no '..', 3-254 long
_HOST_BUCKET_FORM = r"[a-z0-9](?:[a-z0-9-]|\.[a-z0-9-]){1,126}[a-z0-9]"  # host names are lower case
_AWS_ENDPOINT_FORM = r"s3(?:[.-][a-z]{2}(?:-[a-z]+)+-[0-9]+)?\.amazonaws\.com"


def _key_form(char: str, last: str) -> str:
    """Keys of ``/``-separated segments, none empty, ``.`` or ``..``, the last ending in ``last``."""
    segment = rf"\.*(?:{char}|{_ESCAPE})(?:{char}|{_ESCAPE}|\.)*"
    return rf"(?:{segment}/)*(?:(?:{char}|{_ESCAPE}|\.)*{last})"


# s3:// keys are literal: anything but controls, '\\', '%' outside an escape; not ending in space.
_S3_KEY_FORM = _key_form(r"[^\x00-\x1f\x7f\\/%.]", rf"[^\x00-\x20\x7f\\/%.{_WHITESPACE}]")
# http(s) paths: RFC 3986 path characters and escapes.
_HTTP_KEY_FORM = _key_form(r"[A-Za-z0-9_~!$&'()*+,;=:@-]", r"[A-Za-z0-9_~!$&'()*+,;=:@-]")
_QUERY_FORM = r"(?:[?#][^\x00-\x1f\x7f]*)?"

S3_URL_PATTERN = (
    rf"^(?:s3://{_BUCKET_FORM}/{_S3_KEY_FORM}"
    rf"|https?://{_HOST_BUCKET_FORM}\.{_AWS_ENDPOINT_FORM}/{_HTTP_KEY_FORM}{_QUERY_FORM}"
    rf"|https?://{_AWS_ENDPOINT_FORM}/{_BUCKET_FORM}/{_HTTP_KEY_FORM}{_QUERY_FORM})$"
)
S3_URL_MAX_LENGTH = 4_096
