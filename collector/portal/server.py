"""The portal's HTTPS listener: aiohttp in the collector's asyncio loop, beside gRPC.

TLS uses the collector's server certificate (the one agents and the CLI verify).
aiohttp was chosen over the stdlib's http.server because it runs in the same asyncio
loop as grpc.aio (the services are async), parses forms and cookies, and bounds
request bodies (``client_max_size``), with few dependencies of its own.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from aiohttp import web

from collector.errors import ConfigError

__all__ = ["WebServer"]


class WebServer:
    """Serve ``app`` over HTTPS on ``host:port`` until ``stop()``."""

    def __init__(self, app: web.Application, cert: Path, key: Path) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._context.load_cert_chain(cert, key)
        self.port = 0

    async def start(self, host: str, port: int, option: str) -> int:
        """Bind and serve; returns the bound port. ConfigError if it cannot listen."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self._context)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(
                f"{option} {host}:{port}: cannot listen ({exc.strerror or exc}); "
                "is the port in use? ('off' serves no portal)"
            ) from exc
        server = site._server  # the bound socket's port (port 0 in tests)
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()
