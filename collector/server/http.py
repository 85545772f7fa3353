"""The collector's plain-HTTP face: GET pages (``/metrics``…), ``GET /healthz`` and POST webhooks.

Runs a ThreadingHTTPServer on its own threads. Page handlers are plain callables
``(query) -> (status, body, content_type)`` (``server.metrics_pages``); webhook
handlers ``(body, headers) -> (status, json_body)``; the one for Alertmanager hands
the payload to the asyncio side (see ``server.app``).

POST bodies are bounded by the bytes actually read (docs/collector-config.md):
a ``Content-Length`` of 0-``MAX_BODY_BYTES`` decimal digits is required (411 when
missing or chunked, 400 when not a number, 413 when larger, answered before any
of the body is read); the body must arrive within ``BODY_DEADLINE_SECONDS``
(408) and at most ``MAX_CONCURRENT_BODIES`` bodies are read at once (503), so an
unauthenticated sender holds at most ``MAX_CONCURRENT_BODIES * MAX_BODY_BYTES``
of the collector's memory. Every refusal closes the connection.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

PostHandler = Callable[[bytes, Mapping[str, str]], tuple[int, dict[str, Any]]]
GetReply = tuple[int, bytes, str]  # status, body, content type
GetHandler = Callable[[str], GetReply]  # called with the URL's query string
MAX_BODY_BYTES = 1 << 20
PEER_HEADER = "x-aftercare-peer"  # set by the server to the sender's address, never trusted from it
MAX_CONCURRENT_BODIES = 8
BODY_DEADLINE_SECONDS = 30.0
SOCKET_TIMEOUT_SECONDS = 10.0
_READ_CHUNK = 64 * 1024
_DIGITS = re.compile(r"[0-9]{1,19}")


class BodyRefused(Exception):
    """A POST body that is not read: ``status`` and a message for the sender."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def expected_length(headers: Mapping[str, str]) -> int:
    """The declared body size, or BodyRefused (411 missing/chunked, 400 bad, 413 large)."""
    if headers.get("transfer-encoding", "").strip():
        raise BodyRefused(411, "chunked bodies are not accepted; send Content-Length")
    raw = headers.get("content-length")
    if raw is None:
        raise BodyRefused(411, "Content-Length is required")
    raw = raw.strip()
    if not _DIGITS.fullmatch(raw):
        raise BodyRefused(
            400, f"Content-Length must be a decimal number of bytes, not {raw[:32]!r}"
        )
    length = int(raw)
    if length > MAX_BODY_BYTES:
        raise BodyRefused(413, f"body of {length} bytes is larger than {MAX_BODY_BYTES} bytes")
    return length


def read_body(rfile: Any, length: int, deadline_s: float = BODY_DEADLINE_SECONDS) -> bytes:
    """Read exactly ``length`` bytes within ``deadline_s``; BodyRefused (400/408) if not."""
    parts: list[bytes] = []
    left = length
    give_up = time.monotonic() + deadline_s
    while left > 0:
        if time.monotonic() > give_up:
            raise BodyRefused(408, f"body not received within {deadline_s:g} s")
        try:
            chunk = rfile.read1(min(left, _READ_CHUNK))
        except TimeoutError as exc:
            raise BodyRefused(408, "body not received in time") from exc
        if not chunk:
            raise BodyRefused(400, f"body ended after {length - left} of {length} bytes")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class HttpServer:
    """Serves metrics and webhooks until ``close()``."""

    def __init__(
        self,
        host: str,
        port: int,
        gets: Mapping[str, GetHandler],
        posts: Mapping[str, PostHandler],
    ) -> None:
        handler = _handler_class(dict(gets), dict(posts))
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler_class(
    gets: dict[str, GetHandler], posts: dict[str, PostHandler]
) -> type[BaseHTTPRequestHandler]:
    bodies = threading.BoundedSemaphore(MAX_CONCURRENT_BODIES)

    class Handler(BaseHTTPRequestHandler):
        server_version = "aftercare-collector"
        timeout = SOCKET_TIMEOUT_SECONDS  # a silent sender is dropped (socket timeout)

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            page = gets.get(path)
            if page is not None:
                try:
                    self._send(*page(query))
                except Exception:  # a page bug must not kill the server thread
                    log.exception("GET %s failed", path)
                    self._json(500, {"error": "internal error; see the collector log"})
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            else:
                pages = ", ".join(sorted(gets))
                self._json(404, {"error": f"no such page {path}; try {pages}"})

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            handler = posts.get(path)
            if handler is None:
                self._json(404, {"error": f"no webhook at {path}"})
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            address = str(self.client_address[0])
            headers[PEER_HEADER] = f"{'ipv6' if ':' in address else 'ipv4'}:{address}"
            if not bodies.acquire(blocking=False):
                self._refuse(503, "too many webhook bodies being received; retry later")
                return
            try:
                body = read_body(self.rfile, expected_length(headers))
            except BodyRefused as exc:
                self._refuse(exc.status, str(exc))
                return
            finally:
                bodies.release()
            try:
                status, reply = handler(body, headers)
            except Exception:  # a webhook bug must not kill the server thread
                log.exception("webhook %s failed", path)
                status, reply = 500, {"error": "internal error; see the collector log"}
            self._json(status, reply)

        def _refuse(self, status: int, message: str) -> None:
            """Answer without reading (the rest of) the body, and close the connection."""
            log.info("http POST %s refused (%d): %s", self.path[:80], status, message)
            self.close_connection = True
            self._json(status, {"error": message}, close=True)

        def _json(self, status: int, body: dict[str, Any], close: bool = False) -> None:
            data = (json.dumps(body, ensure_ascii=False) + "\n").encode()
            self._send(status, data, "application/json", close)

        def _send(self, status: int, data: bytes, content_type: str, close: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            try:
                self.wfile.write(data)
            except OSError:  # the sender went away; nothing to tell it
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http %s - " + format, self.address_string(), *args)

    return Handler
