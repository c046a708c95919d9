"""HTTP/1.1 over a bare socket, for requests no well-behaved client sends: bodies that never end,
bodies that trickle, headers with stray bytes.

The sender watches the socket while it writes, the way a careful client does: once the server
has answered (or closed), it stops sending and reads the answer. ``sent`` then says how many body
bytes the server let in before answering, which is how tests prove a body was not read in full.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass
class RawResponse:
    status: int | None  # None: the server closed (or reset) without an HTTP answer
    head: bytes  # status line and headers as received
    body: bytes  # what came after the headers (up to the read limit)
    sent: int  # body bytes written before the answer came or the connection broke
    seconds: float  # from the first byte sent to the answer


def chunked(parts: Iterable[bytes]) -> Iterator[bytes]:
    """``parts`` framed as an HTTP/1.1 chunked body, with the closing zero-length chunk."""
    for part in parts:
        if part:
            yield b"%x\r\n" % len(part) + part + b"\r\n"
    yield b"0\r\n\r\n"


def repeat(block: bytes, total: int) -> Iterator[bytes]:
    """``total`` bytes made of ``block`` repeated (the last piece cut short)."""
    left = total
    while left > 0:
        yield block[:left]
        left -= len(block)


def request(
    port: int,
    head: bytes,
    body: Iterable[bytes] = (),
    *,
    timeout_s: float = 10.0,
    pause_s: float = 0.0,
    read_limit: int = 1 << 20,
) -> RawResponse:
    """Send ``head`` (request line and headers, ending in a blank line) and then ``body`` piece by
    piece, ``pause_s`` between pieces; return the server's answer as soon as there is one."""
    started = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(head)
        for piece in body:
            if _readable(sock, pause_s):
                break  # the server answered (or closed) before the body was over
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        head_bytes, rest = _read_answer(sock, started + timeout_s, read_limit)
    status = None
    if head_bytes.startswith(b"HTTP/1.1 "):
        status = int(head_bytes[9:12])
    return RawResponse(status, head_bytes, rest, sent, time.monotonic() - started)


def _readable(sock: socket.socket, wait_s: float) -> bool:
    readable, _, _ = select.select([sock], [], [], wait_s)
    return bool(readable)


def _read_answer(sock: socket.socket, deadline: float, limit: int) -> tuple[bytes, bytes]:
    """The response head and what followed it; empty when the server sent nothing."""
    data = b""
    while len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete answer within the deadline; got {data[:200]!r}")
        sock.settimeout(left)
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        data += piece
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep and _body_complete(head, rest):
            return head, rest
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _body_complete(head: bytes, rest: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value.strip())
    return False  # chunked or close-delimited: read until the server closes
