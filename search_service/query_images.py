"""Fetch the query image of ``POST /search/image`` and ``POST /search/hybrid`` when it is given by URL.

Only S3 objects are fetched, and a URL is checked before any connection is made, because the
service fetches URLs its callers wrote (an SSRF target otherwise: cloud metadata, admin ports):

    s3://bucket/key                                    read with the boto3 client (get_object)
    https://bucket.s3[.<region>].amazonaws.com/key     unsigned: read with the boto3 client
    https://s3[.<region>].amazonaws.com/bucket/key     unsigned: read with the boto3 client
    <endpoint_url>/bucket/key                          unsigned: read with the boto3 client
    any of the http(s) forms with a query signature    pre-signed: fetched exactly as given with httpx
                                                       (no redirects, a timeout, the byte limit)

Every other URL (other hosts, link-local addresses, ``file://``, ``ftp://``, user info such as
``user:pw@host``, empty strings), every object outside the fetcher's ``allowed`` buckets and
prefixes, and every key with a ``.``/``..`` segment, an encoded separator (``%2e``, ``%2f``,
``%5c``), a backslash or a control character raises :class:`QueryImageRefused` without a
connection. The URL
forms are those of :mod:`resources.s3.urls`, and reads share their byte limit and S3 error
parsing with :mod:`resources.frame_sources`.

Each failure is a :class:`QueryImageError` whose ``status`` is the HTTP status the service should
answer and whose ``reason`` is safe to show the caller: it names the object, never credentials or
a pre-signed URL's query string.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from resources.frame_sources import (
    _CHUNK,
    _MISSING_CODES,
    FrameReadError,
    _http_error,
    _read_limited,
    _too_large,
)
from resources.s3.urls import S3Location, S3Prefix, S3UrlError, S3UrlNotAllowed, is_presigned, is_s3_host, parse_allowed_s3_url

# A phone photo is 3-12 MB; 20 MiB leaves room for large PNGs and refuses uploads of whole videos.
DEFAULT_MAX_BYTES = 20 * 1024 * 1024


class QueryImageError(Exception):
    """The query image could not be fetched. ``status`` is the HTTP status to answer with; ``reason``
    says why and is safe to show the caller (no credentials, no pre-signed query strings)."""

    status = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class QueryImageRefused(QueryImageError):
    """The URL is not one the service fetches (not S3, host not allowed, bad form); nothing was sent."""

    status = 400


class QueryImageForbidden(QueryImageRefused):
    """A well-formed S3 URL outside the locations this service reads (ALLOWED_S3_PREFIXES); nothing was sent."""

    status = 403


class QueryImageNotFound(QueryImageError):
    """The object does not exist (S3 NoSuchKey, or HTTP 404)."""

    status = 404


class QueryImageTooLarge(QueryImageError):
    """The object is larger than the fetcher's ``max_bytes``."""

    status = 413


class QueryImageUpstreamError(QueryImageError):
    """S3 refused or failed: access denied, no such bucket, bad credentials, timeouts, 5xx."""

    status = 502


class QueryImageFetcher:
    """Fetches query images from S3 URLs; safe to call from several threads.

    ``client_factory`` returns a boto3 S3 client. It is called once, on the first read that needs
    it, so a service that never gets an S3 URL never builds one (nor needs credentials). The
    client keeps its own timeouts and retries; ``timeout_s`` applies to pre-signed URLs, which
    are fetched with httpx. ``endpoint_url`` names a MinIO/LocalStack/moto endpoint: URLs on it
    parse path-style and are allowed; the client itself must already be configured for it.
    ``allowed`` lists the buckets and key prefixes that may be read (the service's
    ALLOWED_S3_PREFIXES); by default nothing is, so a fetcher never reads what it was not told to.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        *,
        allowed: Sequence[S3Prefix] = (),
        endpoint_url: str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_s: float = 30.0,
    ) -> None:
        if not (isinstance(max_bytes, int) and not isinstance(max_bytes, bool) and max_bytes > 0):
            raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
        if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        # An endpoint is usable exactly when URLs on it count as its own (http(s), a host, no user info).
        if endpoint_url is not None and not is_s3_host(endpoint_url, endpoint_url):
            raise ValueError(f"endpoint_url must be an http:// or https:// URL with a host, got {endpoint_url!r}")
        self.allowed = tuple(allowed)
        self.endpoint_url = endpoint_url
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._client_factory = client_factory
        self._client: Any = None
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()

    def fetch(self, url: str) -> bytes:
        """The bytes of the object at ``url`` (see the module docstring for the accepted forms).

        Raises :class:`QueryImageRefused` (400) before any connection for URLs that are not
        fetched, :class:`QueryImageNotFound` (404), :class:`QueryImageTooLarge` (413) and
        :class:`QueryImageUpstreamError` (502).
        """
        url, location, presigned = self._check(url)
        if presigned:
            return self._fetch_presigned(url, location)
        return self._get_object(location)

    def close(self) -> None:
        """Close the httpx client of pre-signed fetches (the boto3 client needs no closing)."""
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()

    def _check(self, url: object) -> tuple[str, S3Location, bool]:
        """The stripped URL, the object it names and whether it is pre-signed; refuses the rest."""
        try:
            location = parse_allowed_s3_url(url, self.endpoint_url, self.allowed)  # type: ignore[arg-type]
        except S3UrlNotAllowed as exc:
            raise QueryImageForbidden(str(exc)) from None
        except S3UrlError as exc:
            raise QueryImageRefused(str(exc)) from None
        url = str(url).strip()
        # A pre-signed URL is fetched as given: parse_allowed_s3_url has checked its path has no
        # dot segment, encoded separator or control character, so no client or server along the
        # way can normalise it into another object than ``location``.
        return url, location, url[:5].lower() != "s3://" and is_presigned(url)

    def _get_object(self, location: S3Location) -> bytes:
        try:
            response = self._get_client().get_object(Bucket=location.bucket, Key=location.key)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(error.get("Code") or status or "unknown")
            if code in _MISSING_CODES:
                raise QueryImageNotFound(f"no such object {location.uri} (S3 error {code})") from exc
            # The code only: S3's error details (StringToSign, the access key id) are not for callers.
            raise QueryImageUpstreamError(f"S3 error {code} reading {location.uri}") from exc
        except BotoCoreError as exc:
            # The class names the failure (EndpointConnectionError, ConnectTimeoutError, NoCredentialsError);
            # the message would name the internal endpoint, so it stays in the chained exception.
            raise QueryImageUpstreamError(f"S3 request for {location.uri} failed ({type(exc).__name__})") from exc
        body = response["Body"]
        try:
            length = response.get("ContentLength")
            if length is not None and length > self.max_bytes:
                raise QueryImageTooLarge(f"{location.uri} is {_too_large(length, self.max_bytes)}")
            try:
                return _read_limited(body.read, self.max_bytes, location.uri)
            except FrameReadError as exc:  # the only failure _read_limited raises: over the limit
                raise QueryImageTooLarge(f"{location.uri} is {exc.reason}") from None
        except (BotoCoreError, OSError) as exc:
            raise QueryImageUpstreamError(f"S3 read of {location.uri} failed ({type(exc).__name__})") from exc
        finally:
            body.close()

    def _fetch_presigned(self, url: str, location: S3Location) -> bytes:
        # Not resources.frame_sources._HttpFetcher: its single FrameReadError does not tell "too
        # large" from "refused by S3", and the service answers those with different statuses.
        try:
            with self._get_http().stream("GET", url) as response:
                if response.status_code != 200:
                    error = _http_error(url, response)
                    kind = QueryImageNotFound if error.missing else QueryImageUpstreamError
                    raise kind(f"pre-signed URL for {location.uri}: {error.reason}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise QueryImageTooLarge(f"{location.uri} is {_too_large(int(declared), self.max_bytes)}")
                chunks = response.iter_bytes(_CHUNK)
                try:
                    # The declared length may be absent (chunked) or wrong: count while streaming too.
                    return _read_limited(lambda _size: next(chunks, b""), self.max_bytes, url)
                except FrameReadError as exc:
                    raise QueryImageTooLarge(f"{location.uri} is {exc.reason}") from None
        except httpx.HTTPError as exc:
            raise QueryImageUpstreamError(f"pre-signed URL for {location.uri} failed ({type(exc).__name__})") from exc

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def _get_http(self) -> httpx.Client:
        # One client, created on first use, so connections (and TLS sessions) are reused; redirects
        # are not followed because a redirect could leave S3.
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(timeout=self.timeout_s, follow_redirects=False)
            return self._http
