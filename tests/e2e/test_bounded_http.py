"""``POST /alertmanager`` bounds its body by the bytes actually read (issue 11, item 4).

Attacks against a real collector process over raw sockets: a negative
Content-Length, a missing one, chunked encoding and a 64 MiB body are each answered
quickly with 4xx, and the collector's memory stays put.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Collector

MiB = 1 << 20


@pytest.fixture
def webhook_collector(tmp_path: Path) -> Iterator[Collector]:
    (tmp_path / "am-token").write_text("s3cret\n")
    server = Collector(
        tmp_path / "collector", ["--alertmanager-token-file", str(tmp_path / "am-token")]
    ).start()
    yield server
    server.stop()
    print("--- collector log ---\n" + server.log_text()[-4000:])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _status_of(sock: socket.socket) -> int:
    """Read the response's status code (the server answers without the body)."""
    sock.settimeout(20)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1."), data[:200]
    return int(data.split(b" ", 2)[1])


def _post(port: int, headers: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(
        (
            "POST /alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
            f"Content-Type: application/json\r\n{headers}\r\n"
        ).encode()
    )
    return sock


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ("Content-Length: -1\r\n", 400),
        ("Content-Length: 1e9\r\n", 400),
        ("", 411),
        ("Transfer-Encoding: chunked\r\n", 411),
        (f"Content-Length: {64 * MiB}\r\n", 413),
    ],
)
def test_bad_lengths_are_refused_without_waiting_for_the_body(
    webhook_collector: Collector, headers: str, expected: int
) -> None:
    # The socket stays open and sends nothing more: the old code waited for the
    # sender to close (Content-Length: -1 meant "read to the end").
    sock = _post(webhook_collector.metrics_port, headers)
    try:
        assert _status_of(sock) == expected
    finally:
        sock.close()


def test_a_64_mib_body_does_not_grow_the_collector(webhook_collector: Collector) -> None:
    assert webhook_collector.process is not None
    pid = webhook_collector.process.pid
    before = _rss_kib(pid)
    for headers in ("Content-Length: -1\r\n", "Transfer-Encoding: chunked\r\n"):
        sock = _post(webhook_collector.metrics_port, headers)
        block = b"x" * MiB
        sent = 0
        try:
            if "chunked" in headers:
                block = f"{len(block):x}\r\n".encode() + block + b"\r\n"
            for _ in range(64):
                sock.sendall(block)
                sent += len(block)
        except OSError:
            pass  # the server answered and closed: what we want
        try:
            assert _status_of(sock) in (400, 411)
        except OSError:
            pass  # reset after the server closed: the answer may be lost, the bytes too
        finally:
            sock.close()
    growth_mib = (_rss_kib(pid) - before) / 1024
    assert growth_mib < 16, f"collector RSS grew by {growth_mib:.1f} MiB"


def test_a_truthful_small_body_reaches_the_parser(webhook_collector: Collector) -> None:
    body = b'{"alerts": "none"}'
    sock = _post(webhook_collector.metrics_port, f"Content-Length: {len(body)}\r\n")
    try:
        sock.sendall(body)
        sock.settimeout(20)
        reply = b""
        while b"missing" not in reply and (chunk := sock.recv(4096)):
            reply += chunk
        assert reply.startswith(b"HTTP/1.0 400") or reply.startswith(b"HTTP/1.1 400"), reply
        assert b"version: missing" in reply, (
            reply
        )  # the payload parser's message: the body was read
    finally:
        sock.close()


def test_a_short_body_is_refused_when_the_sender_stops(webhook_collector: Collector) -> None:
    sock = _post(webhook_collector.metrics_port, "Content-Length: 100\r\n")
    try:
        sock.sendall(b"{")
        sock.shutdown(socket.SHUT_WR)
        assert _status_of(sock) == 400
    finally:
        sock.close()
