"""The collector's plain-HTTP face: ``GET /metrics``, ``GET /healthz`` and POST webhooks.

Runs a ThreadingHTTPServer on its own threads. Webhook handlers are plain
callables ``(body, headers) -> (status, json_body)``; the one for Alertmanager
hands the payload to the asyncio side (see ``server.app``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

PostHandler = Callable[[bytes, Mapping[str, str]], tuple[int, dict[str, Any]]]
MAX_BODY_BYTES = 1 << 20


class HttpServer:
    """Serves metrics and webhooks until ``close()``."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, posts: Mapping[str, PostHandler]
    ) -> None:
        handler = _handler_class(registry, dict(posts))
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler_class(
    registry: CollectorRegistry, posts: dict[str, PostHandler]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "aftercare-collector"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encoder(registry), content_type)
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            else:
                self._json(404, {"error": f"no such page {path}; try /metrics"})

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            handler = posts.get(path)
            if handler is None:
                self._json(404, {"error": f"no webhook at {path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._json(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, reply = handler(body, headers)
            except Exception:  # a webhook bug must not kill the server thread
                log.exception("webhook %s failed", path)
                status, reply = 500, {"error": "internal error; see the collector log"}
            self._json(status, reply)

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = (json.dumps(body, ensure_ascii=False) + "\n").encode()
            self._send(status, data, "application/json")

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http %s - " + format, self.address_string(), *args)

    return Handler
