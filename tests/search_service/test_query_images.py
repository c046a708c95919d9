"""Query images by URL, against moto's S3 server over real HTTP: s3://, path-style and pre-signed
reads, the status of each failure, the byte limit, and URLs refused before any connection."""

from __future__ import annotations

import io
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.response import StreamingBody
from botocore.stub import Stubber

from resources.s3.urls import S3Prefix
from search_service.query_images import (
    QueryImageError,
    QueryImageFetcher,
    QueryImageNotFound,
    QueryImageRefused,
    QueryImageTooLarge,
    QueryImageUpstreamError,
)

FAKE_SIGNATURE = "deadbeefcafe0123456789"


def client_like(endpoint_url: str | None, **config: Any) -> Any:
    """A boto3 S3 client with dummy credentials: one attempt, short timeouts unless ``config`` says."""
    settings: dict[str, Any] = {"retries": {"total_max_attempts": 1}, "connect_timeout": 1, "read_timeout": 1}
    settings.update(config)
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**settings),
    )


class CountingFactory:
    """A client factory that counts its calls (the fetcher must build the client lazily, once)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.client


def allow(*buckets: str) -> tuple[S3Prefix, ...]:
    """Whole buckets a fetcher may read (the service's ALLOWED_S3_PREFIXES)."""
    return tuple(S3Prefix(name) for name in buckets)


def never_called() -> Any:
    raise AssertionError("the S3 client must not be built for a refused URL")


@pytest.fixture
def bucket(s3_client: Any) -> str:
    # Moto's state lives for the whole session: every test gets buckets of its own.
    name = f"query-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener on 127.0.0.1 that no URL may reach; the kernel queues any connection to it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def assert_no_connection(listener: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        connection, _ = listener.accept()
        connection.close()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Handler(BaseHTTPRequestHandler):
    """/bucket/chunked: 1,000 bytes without a Content-Length; /bucket/redirect: 302; /bucket/broken: 503."""

    redirect_to = ""
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.requests.append(self.path)
        path = self.path.split("?", 1)[0]
        if path == "/bucket/chunked":
            self.send_response(200)
            self.end_headers()  # HTTP/1.0 and no Content-Length: the body runs until the connection closes
            for _ in range(10):
                self.wfile.write(b"x" * 100)
        elif path == "/bucket/redirect":
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = b"<Error><Code>SlowDown</Code></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def odd_endpoint(listener: socket.socket) -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that answers like no well-behaved S3 does, and the paths it was asked for."""
    handler = type("Handler", (_Handler,), {"requests": [], "redirect_to": f"http://127.0.0.1:{listener.getsockname()[1]}/stolen"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    server.shutdown()
    server.server_close()


def test_reads_s3_path_style_and_presigned_urls(s3_client: Any, moto_s3_endpoint: str, bucket: str) -> None:
    s3_client.put_object(Bucket=bucket, Key="queries/cat 1.jpg", Body=b"cat-bytes")
    factory = CountingFactory(s3_client)
    fetcher = QueryImageFetcher(factory, allowed=allow(bucket), endpoint_url=moto_s3_endpoint)
    v2_url = s3_client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "queries/cat 1.jpg"})
    v4_url = client_like(moto_s3_endpoint, signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "queries/cat 1.jpg"}, ExpiresIn=600
    )
    assert "Signature=" in v2_url and "X-Amz-Signature=" in v4_url

    assert fetcher.fetch(f"s3://{bucket}/queries/cat 1.jpg") == b"cat-bytes"
    assert fetcher.fetch(f"  {moto_s3_endpoint}/{bucket}/queries/cat%201.jpg\n") == b"cat-bytes"  # path-style, unsigned
    assert factory.calls == 1
    assert fetcher.fetch(v2_url) == b"cat-bytes"
    assert fetcher.fetch(v4_url) == b"cat-bytes"
    fetcher.close()


def test_client_is_built_lazily_once_across_threads(s3_client: Any, moto_s3_endpoint: str, bucket: str) -> None:
    s3_client.put_object(Bucket=bucket, Key="q.png", Body=b"png")
    factory = CountingFactory(s3_client)
    fetcher = QueryImageFetcher(factory, allowed=allow(bucket), endpoint_url=moto_s3_endpoint)
    assert factory.calls == 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(fetcher.fetch, [f"s3://{bucket}/q.png"] * 16)) == [b"png"] * 16
    assert factory.calls == 1


@pytest.mark.parametrize(
    ("url", "bucket", "key"),
    [
        ("https://photos.s3.amazonaws.com/q/a%20b.jpg", "photos", "q/a b.jpg"),
        ("https://photos.s3.eu-west-1.amazonaws.com/q.jpg", "photos", "q.jpg"),
        ("https://photos.s3-us-west-2.amazonaws.com/q.jpg", "photos", "q.jpg"),
        ("https://my.photos.s3.dualstack.ap-southeast-2.amazonaws.com/q.jpg", "my.photos", "q.jpg"),
        ("https://s3.amazonaws.com/photos/deep/q.jpg", "photos", "deep/q.jpg"),
        ("https://s3.us-east-2.amazonaws.com/photos/q.jpg?versionId=3", "photos", "q.jpg"),
        ("s3://photos/literal%20key?.jpg", "photos", "literal%20key?.jpg"),
    ],
)
def test_unsigned_aws_urls_are_read_with_the_client(url: str, bucket: str, key: str) -> None:
    client = client_like("http://127.0.0.1:9")  # Stubber answers: nothing is sent
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_object", {"Body": StreamingBody(io.BytesIO(b"img"), 3), "ContentLength": 3}, {"Bucket": bucket, "Key": key}
        )
        assert QueryImageFetcher(lambda: client, allowed=allow(bucket)).fetch(url) == b"img"
        stubber.assert_no_pending_responses()


def test_missing_key_is_404(s3_client: Any, moto_s3_endpoint: str, bucket: str) -> None:
    fetcher = QueryImageFetcher(lambda: s3_client, allowed=allow(bucket), endpoint_url=moto_s3_endpoint)
    signed = client_like(moto_s3_endpoint, signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "gone.jpg"}
    )
    for url in (f"s3://{bucket}/gone.jpg", f"{moto_s3_endpoint}/{bucket}/gone.jpg", signed):
        with pytest.raises(QueryImageNotFound, match="NoSuchKey") as info:
            fetcher.fetch(url)
        assert info.value.status == 404 and f"s3://{bucket}/gone.jpg" in info.value.reason
    # The signature is a credential: neither the reason nor the message carries the query string.
    signature = signed.split("X-Amz-Signature=", 1)[1].split("&", 1)[0]
    assert signature not in str(info.value) and "X-Amz-Credential" not in info.value.reason


def test_missing_bucket_is_an_upstream_error(s3_client: Any, moto_s3_endpoint: str) -> None:
    name = f"absent-{uuid.uuid4().hex[:12]}"
    fetcher = QueryImageFetcher(lambda: s3_client, allowed=allow(name), endpoint_url=moto_s3_endpoint)
    signed = s3_client.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "k.jpg"})
    for url in (f"s3://{name}/k.jpg", signed):
        with pytest.raises(QueryImageUpstreamError, match="NoSuchBucket") as info:
            fetcher.fetch(url)
        assert info.value.status == 502
        assert "Signature" not in info.value.reason


@pytest.mark.parametrize(
    ("code", "http_status", "expected"),
    [
        ("NoSuchKey", 404, QueryImageNotFound),
        ("404", 404, QueryImageNotFound),  # HEAD-style errors carry the status as the code
        ("AccessDenied", 403, QueryImageUpstreamError),
        ("403", 403, QueryImageUpstreamError),
        ("NoSuchBucket", 404, QueryImageUpstreamError),
        ("InvalidAccessKeyId", 403, QueryImageUpstreamError),
        ("SignatureDoesNotMatch", 403, QueryImageUpstreamError),
        ("InternalError", 500, QueryImageUpstreamError),
    ],
)
def test_client_error_codes(code: str, http_status: int, expected: type[QueryImageError]) -> None:
    client = client_like("http://127.0.0.1:9")
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "get_object", service_error_code=code, service_message="AKIASECRETKEYID in the details", http_status_code=http_status
        )
        with pytest.raises(expected) as info:
            QueryImageFetcher(lambda: client, allowed=allow("photos")).fetch("s3://photos/q.jpg")
    assert code in info.value.reason and "s3://photos/q.jpg" in info.value.reason
    assert "AKIASECRETKEYID" not in info.value.reason
    assert info.value.status == {QueryImageNotFound: 404, QueryImageUpstreamError: 502}[expected]


def test_over_the_byte_limit_is_413(s3_client: Any, moto_s3_endpoint: str, bucket: str) -> None:
    s3_client.put_object(Bucket=bucket, Key="big.jpg", Body=b"x" * 101)
    s3_client.put_object(Bucket=bucket, Key="fits.jpg", Body=b"x" * 100)
    fetcher = QueryImageFetcher(lambda: s3_client, allowed=allow(bucket), endpoint_url=moto_s3_endpoint, max_bytes=100)
    sign = s3_client.generate_presigned_url
    for url in (f"s3://{bucket}/big.jpg", sign("get_object", Params={"Bucket": bucket, "Key": "big.jpg"})):
        with pytest.raises(QueryImageTooLarge, match="101 bytes, over the limit of 100") as info:
            fetcher.fetch(url)
        assert info.value.status == 413
    assert fetcher.fetch(f"s3://{bucket}/fits.jpg") == b"x" * 100
    assert fetcher.fetch(sign("get_object", Params={"Bucket": bucket, "Key": "fits.jpg"})) == b"x" * 100


def test_byte_limit_holds_without_a_declared_length(odd_endpoint: tuple[str, list[str]]) -> None:
    origin, _ = odd_endpoint
    fetcher = QueryImageFetcher(never_called, allowed=allow("bucket"), endpoint_url=origin, max_bytes=100, timeout_s=5)
    with pytest.raises(QueryImageTooLarge, match="more than 100 bytes"):
        fetcher.fetch(f"{origin}/bucket/chunked?X-Amz-Signature={FAKE_SIGNATURE}")

    client = client_like("http://127.0.0.1:9")
    with Stubber(client) as stubber:  # an S3 response without ContentLength: counted while read
        stubber.add_response("get_object", {"Body": StreamingBody(io.BytesIO(b"y" * 150), 150)})
        with pytest.raises(QueryImageTooLarge, match="more than 100 bytes"):
            QueryImageFetcher(lambda: client, allowed=allow("photos"), max_bytes=100).fetch("s3://photos/q.jpg")


def test_presigned_redirects_are_not_followed(odd_endpoint: tuple[str, list[str]], listener: socket.socket) -> None:
    origin, requests = odd_endpoint
    fetcher = QueryImageFetcher(never_called, allowed=allow("bucket"), endpoint_url=origin, timeout_s=5)
    with pytest.raises(QueryImageUpstreamError, match="HTTP 302") as info:
        fetcher.fetch(f"{origin}/bucket/redirect?X-Amz-Signature={FAKE_SIGNATURE}")
    assert FAKE_SIGNATURE not in str(info.value)
    with pytest.raises(QueryImageUpstreamError, match=r"HTTP 503 \(SlowDown\)") as info:
        fetcher.fetch(f"{origin}/bucket/broken?X-Amz-Signature={FAKE_SIGNATURE}")
    assert info.value.status == 502
    assert len(requests) == 2
    assert_no_connection(listener)  # the redirect's target


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://169.254.169.254/bucket/key?X-Amz-Signature=abc",
        "https://evil.example.com/bucket/key.jpg",
        "https://bucket.s3.amazonaws.com.evil.example/key.jpg",
        "https://evil.example/s3.amazonaws.com/bucket/key.jpg",
        "https://bucket.s3.amazonaws.com:8443/key.jpg",
        "https://user:pw@bucket.s3.amazonaws.com/key.jpg",
        "https://bucket.s3.amazonaws.com@evil.example/key.jpg",
        "s3://user:pw@bucket/key.jpg",
        "file:///etc/passwd",
        "ftp://bucket.s3.amazonaws.com/key.jpg",
        "gopher://127.0.0.1:6379/_INFO",
        "/etc/passwd",
        "bucket/key.jpg",
        "s3://bucket",
        "s3://bucket/",
        "https://bucket.s3.amazonaws.com/",
        "https://s3.amazonaws.com/bucket/?X-Amz-Signature=abc",
    ],
)
def test_refused_urls_are_400_without_a_client(url: str) -> None:
    with pytest.raises(QueryImageRefused) as info:
        QueryImageFetcher(never_called, allowed=allow("bucket")).fetch(url)
    assert info.value.status == 400 and info.value.reason
    assert "pw" not in info.value.reason and "X-Amz-Signature" not in info.value.reason


def test_refused_urls_make_no_connection(moto_s3_endpoint: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    endpoint_authority = moto_s3_endpoint.split("://", 1)[1]
    factory = CountingFactory(client_like(f"http://127.0.0.1:{port}"))  # would connect to the listener if used
    fetcher = QueryImageFetcher(factory, allowed=allow("bucket"), endpoint_url=moto_s3_endpoint, timeout_s=1)
    for url in (
        f"http://127.0.0.1:{port}/bucket/key.jpg",
        f"http://127.0.0.1:{port}/bucket/key.jpg?X-Amz-Signature={FAKE_SIGNATURE}",
        f"http://{endpoint_authority}@127.0.0.1:{port}/bucket/key.jpg?X-Amz-Signature={FAKE_SIGNATURE}",
        f"https://{endpoint_authority}/bucket/key.jpg?X-Amz-Signature={FAKE_SIGNATURE}",  # endpoint host, other scheme
        f"http://localhost:{port}/bucket/key.jpg",
    ):
        with pytest.raises(QueryImageRefused):
            fetcher.fetch(url)
    assert factory.calls == 0
    assert_no_connection(listener)


def test_unreachable_endpoint_fails_fast() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    fetcher = QueryImageFetcher(lambda: client_like(endpoint), allowed=allow("photos"), endpoint_url=endpoint, timeout_s=1)
    started = time.monotonic()
    with pytest.raises(QueryImageUpstreamError, match="EndpointConnectionError") as info:
        fetcher.fetch("s3://photos/q.jpg")
    assert info.value.status == 502 and endpoint not in info.value.reason
    with pytest.raises(QueryImageUpstreamError, match="ConnectError"):
        fetcher.fetch(f"{endpoint}/photos/q.jpg?X-Amz-Signature={FAKE_SIGNATURE}")
    assert time.monotonic() - started < 10


def test_rejects_bad_settings() -> None:
    for kwargs in ({"max_bytes": 0}, {"max_bytes": True}, {"timeout_s": 0}, {"endpoint_url": "ftp://x"}, {"endpoint_url": "http://u:p@h:9"}):
        with pytest.raises(ValueError):
            QueryImageFetcher(never_called, **kwargs)


# -- allowed buckets and prefixes, escapes (issue 9, defect 4) -----------------------------------


def test_only_allowed_buckets_and_prefixes_are_read(s3_client: Any, moto_s3_endpoint: str, bucket: str) -> None:
    """The issue's case: any object the credentials reached was fetched. Now only ALLOWED_S3_PREFIXES."""
    other = f"secrets-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=other)
    s3_client.put_object(Bucket=other, Key="env.sh", Body=b"export SECRET=1")
    s3_client.put_object(Bucket=bucket, Key="q/ok.png", Body=b"png")
    s3_client.put_object(Bucket=bucket, Key="private/x.png", Body=b"private")
    factory = CountingFactory(s3_client)
    fetcher = QueryImageFetcher(factory, allowed=(S3Prefix(bucket, "q/"),), endpoint_url=moto_s3_endpoint)
    sign = client_like(moto_s3_endpoint, signature_version="s3v4").generate_presigned_url
    for url in (
        f"s3://{other}/env.sh",
        f"{moto_s3_endpoint}/{other}/env.sh",
        sign("get_object", Params={"Bucket": other, "Key": "env.sh"}),
        f"s3://{bucket}/private/x.png",
        f"s3://{bucket}/qx.png",
        sign("get_object", Params={"Bucket": bucket, "Key": "private/x.png"}),
    ):
        with pytest.raises(QueryImageRefused, match="outside the S3 locations") as info:
            fetcher.fetch(url)
        assert "export" not in info.value.reason and "X-Amz-Signature" not in info.value.reason
    assert factory.calls == 0  # refused before any client exists, let alone a request
    assert fetcher.fetch(f"s3://{bucket}/q/ok.png") == b"png"
    assert fetcher.fetch(sign("get_object", Params={"Bucket": bucket, "Key": "q/ok.png"})) == b"png"


def test_nothing_is_read_by_default() -> None:
    with pytest.raises(QueryImageRefused, match="ALLOWED_S3_PREFIXES"):
        QueryImageFetcher(never_called).fetch("s3://photos/q.jpg")


@pytest.mark.parametrize(
    "path",
    [
        "/bucket/../moto-api/data.json?X-Amz-Signature=1",  # the URL: it reached /moto-api/data.json
        "/bucket/../../moto-api/data.json?X-Amz-Signature=1",
        "/bucket/%2e%2e/moto-api/data.json?X-Amz-Signature=1",
        "/bucket/.%2E/moto-api/data.json?X-Amz-Signature=1",
        "/bucket/q/..%2f..%2fmoto-api?X-Amz-Signature=1",
        "/bucket/./moto-api?X-Amz-Signature=1",
        "/bucket/q\\..\\..\\moto-api?X-Amz-Signature=1",
        "/bucket/q/%5c..%5cmoto-api?X-Amz-Signature=1",
        "/bucket/q/a.png\r\nX-Injected: 1?X-Amz-Signature=1",
        "/bucket/q/a.png%0d%0aX-Injected:%201?X-Amz-Signature=1",
        "/bucket/q/../../moto-api",  # unsigned: would go through the boto3 client
    ],
)
def test_escapes_are_refused_before_any_request(odd_endpoint: tuple[str, list[str]], path: str) -> None:
    origin, requests = odd_endpoint
    fetcher = QueryImageFetcher(never_called, allowed=allow("bucket"), endpoint_url=origin, timeout_s=5)
    with pytest.raises(QueryImageRefused) as info:
        fetcher.fetch(origin + path)
    assert requests == []
    assert "\n" not in info.value.reason and "X-Amz-Signature" not in info.value.reason


@pytest.mark.parametrize("url", ["s3://bucket/q/../../other/k.png", "s3://bucket/q/a.png\r\nX: 1", "s3://bucket/%2e%2e/k"])
def test_s3_scheme_escapes_are_refused_before_a_client(url: str) -> None:
    with pytest.raises(QueryImageRefused):
        QueryImageFetcher(never_called, allowed=allow("bucket")).fetch(url)
