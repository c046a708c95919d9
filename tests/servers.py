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
