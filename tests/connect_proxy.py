"""A tiny HTTP CONNECT proxy for tests, run as its own process on loopback.

    python -m tests.connect_proxy --log LOG [--status 403] [--auth USER:PASSWORD]

It listens on 127.0.0.1 (a free port), writes ``{"port": N}`` as the first line of
LOG once it listens, then one JSON line per connection: the request line's target,
the status it answered and whether the client authenticated. With ``--status`` it
refuses every CONNECT with that status; with ``--auth`` it answers 407 unless the
request carries that user and password (basic). Otherwise it tunnels bytes both ways.
Only what tests need: no HTTP forwarding, no keep-alive.

``ProxyProcess`` starts and stops it from a test and reads its log.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REASONS = {200: "Connection established", 403: "Forbidden", 407: "Proxy Authentication Required"}


class ConnectProxy:
    def __init__(self, log: Path, status: int, auth: str) -> None:
        self._log = log
        self._status = status
        self._auth = auth

    def _record(self, **entry: Any) -> None:
        with self._log.open("a") as file:
            file.write(json.dumps(entry) + "\n")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.rpartition(" ")[0]
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        authorised = not self._auth or headers.get("proxy-authorization") == "Basic " + (
            base64.b64encode(self._auth.encode()).decode()
        )
        status = 405 if method != "CONNECT" else self._status
        if status == 200 and not authorised:
            status = 407
        self._record(target=target, status=status, authenticated=bool(self._auth) and authorised)
        reason = REASONS.get(status, "Refused")
        extra = 'Proxy-Authenticate: Basic realm="test"\r\n' if status == 407 else ""
        writer.write(f"HTTP/1.1 {status} {reason}\r\n{extra}\r\n".encode())
        if status != 200:
            await writer.drain()
            writer.close()
            return
        host, _, port = target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def serve(log: Path, status: int, auth: str) -> None:
    proxy = ConnectProxy(log, status, auth)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with log.open("a") as file:
        file.write(json.dumps({"port": port}) + "\n")
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--auth", default="")
    args = parser.parse_args()
    asyncio.run(serve(args.log, args.status, args.auth))


class ProxyProcess:
    """The proxy as a child process: ``url``, ``connects()`` (its log), ``stop()``."""

    def __init__(self, log: Path, status: int = 200, auth: str = "") -> None:
        self.log = log
        command = [sys.executable, "-m", "tests.connect_proxy", "--log", str(log)]
        command += ["--status", str(status), "--auth", auth]
        repo = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen(command, cwd=repo)
        deadline = time.monotonic() + 30
        while not (log.exists() and log.read_text().endswith("\n")):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the test proxy did not start")
            time.sleep(0.05)
        self.port = int(json.loads(log.read_text().splitlines()[0])["port"])

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    def connects(self) -> list[dict[str, Any]]:
        """Every CONNECT the proxy saw, oldest first."""
        return [json.loads(line) for line in self.log.read_text().splitlines()[1:]]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


if __name__ == "__main__":
    main()
