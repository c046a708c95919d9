"""Helpers for tests that talk to real servers on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http_ok(url: str, timeout_s: float = 30.0, alive: Callable[[], bool] = lambda: True) -> None:
    """Poll ``url`` until it answers 200; fail after ``timeout_s`` or as soon as ``alive()`` is False."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert alive(), f"the server behind {url} died"
        assert time.monotonic() < deadline, f"{url} did not answer 200 within {timeout_s} s"
        time.sleep(0.1)


@contextmanager
def running_uvicorn(app, make_config: Callable[[int], uvicorn.Config] | None = None) -> Iterator[str]:  # noqa: ANN001 - an ASGI app
    """Serve ``app`` with uvicorn in a thread until the block ends; yields the base URL, once healthy.

    ``make_config(port)`` builds the server's configuration (default: uvicorn's own defaults)."""
    port = free_port()
    config = make_config(port) if make_config else uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base}/healthz", alive=thread.is_alive)
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


class HangingProxy:
    """An HTTP server in front of ``upstream`` that forwards requests, or accepts them and never
    answers: a hanging endpoint. ``hang(method, path)`` decides per request (default: none);
    ``hung`` lists the ``(method, path)`` of every request left hanging. Leaving the block
    releases the hung requests by closing their connections."""

    def __init__(self, upstream: str) -> None:
        import http.server
        from urllib.parse import urlsplit

        self.upstream = urlsplit(upstream)
        self.hang: Callable[[str, str], bool] = lambda method, path: False
        self.hung: list[tuple[str, str]] = []
        self._released = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as boto3 uses it

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.hang(self.command, self.path):
                    proxy.hung.append((self.command, self.path))
                    proxy._released.wait(300)  # accepted, never answered
                    self.close_connection = True
                    return
                proxy._forward(self, body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any  # noqa: N815 - http.server's names

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _forward(self, handler, body: bytes) -> None:  # noqa: ANN001 - a BaseHTTPRequestHandler
        import http.client

        upstream = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("connection", "content-length")}
            upstream.request(handler.command, handler.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    def __enter__(self) -> HangingProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
