"""HTTP CONNECT proxies for the agent's connections to the collector.

Contract: ``parse_proxy`` turns ``http://[user:password@]host:port`` into a ``Proxy``
or raises ValueError saying what is wrong; ``proxy_for`` picks the proxy for one
target: the configured one if any (it wins), else the first of the environment
variables ``grpc_proxy``, ``https_proxy``, ``HTTPS_PROXY`` that is set, unless
``no_grpc_proxy``/``no_proxy``/``NO_PROXY`` names the target. ``open_tunnel`` (asyncio)
and ``open_tunnel_socket`` (blocking) connect to the proxy, ask it to ``CONNECT`` to
the target, and return a connection on which TLS with the target starts; they raise
``ProxyError`` (an OSError) naming the proxy when it is unreachable, refuses (any
status but 2xx), or answers something that is not HTTP.

Credentials are sent as ``Proxy-Authorization: Basic``; they never appear in a
``Proxy``'s ``str``/``repr`` nor in any error message. Standard library only.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "ENVIRONMENT_VARIABLES",
    "NO_PROXY_VARIABLES",
    "Proxy",
    "ProxyError",
    "open_tunnel",
    "open_tunnel_socket",
    "parse_proxy",
    "proxy_for",
]

ENVIRONMENT_VARIABLES = ("grpc_proxy", "https_proxy", "HTTPS_PROXY")  # first set one wins
NO_PROXY_VARIABLES = ("no_grpc_proxy", "no_proxy", "NO_PROXY")
MAX_REPLY_BYTES = 16 * 1024  # the proxy's answer to CONNECT: status line and headers
USER_AGENT = "aftercare-agent"


class ProxyError(ConnectionError):
    """The proxy could not be reached or would not open the tunnel (names the proxy)."""


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy that tunnels with CONNECT; ``str`` shows it without credentials."""

    host: str
    port: int
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def connect_request(self, host: str, port: int) -> bytes:
        """The CONNECT request for ``host:port`` (with basic auth if the proxy has a user)."""
        target = _authority(host, port)
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}", f"User-Agent: {USER_AGENT}"]
        if self.username or self.password:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
            lines.append(f"Proxy-Authorization: Basic {token}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def check_reply(self, head: bytes, host: str, port: int) -> None:
        """Raise ProxyError unless ``head`` (status line and headers) is a 2xx answer."""
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        target = _authority(host, port)
        if not version.startswith("HTTP/1.") or not (len(code) == 3 and code.isdigit()):
            raise ProxyError(
                f"the proxy {self} did not answer CONNECT {target} in HTTP "
                f"(it sent {head[:60]!r}); is it an HTTP proxy?"
            )
        if not code.startswith("2"):
            hint = " (check the user and password in the proxy URL)" if code == "407" else ""
            raise ProxyError(
                f"the proxy {self} refused CONNECT {target}: "
                f"HTTP {code} {_printable(reason.strip())}{hint}".rstrip()
            )


def parse_proxy(url: str) -> Proxy:
    """``http://[user:password@]host:port`` (scheme optional) to a Proxy; ValueError if not.

    The messages never repeat the URL, which may hold a password.
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a proxy URL such as http://proxy.example:3128 ({exc})") from None
    if parts.scheme.lower() != "http":
        raise ValueError(
            f"proxy scheme {parts.scheme!r} is not supported: use http://HOST:PORT "
            "(the tunnel to the collector is TLS already)"
        )
    if not parts.hostname:
        raise ValueError("the proxy URL names no host: use http://HOST:PORT")
    if port is None:
        raise ValueError("the proxy URL names no port: use http://HOST:PORT, e.g. :3128")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the proxy URL must be just http://HOST:PORT (no path or query)")
    return Proxy(
        host=parts.hostname,
        port=port,
        username=urllib.parse.unquote(parts.username or ""),
        password=urllib.parse.unquote(parts.password or ""),
    )


def proxy_for(
    host: str, configured: str = "", environ: Mapping[str, str] | None = None
) -> Proxy | None:
    """The proxy to reach ``host`` through, or None for a direct connection.

    ``configured`` (the agent config's ``stream.proxy``) wins and applies to every
    target; otherwise the environment decides, honouring the no-proxy lists (``*``,
    host names and domain suffixes such as ``.example.com``, IP addresses, CIDR
    ranges). Raises ValueError naming the source if the chosen URL is malformed.
    """
    if configured:
        try:
            return parse_proxy(configured)
        except ValueError as exc:
            raise ValueError(f"stream.proxy: {exc}") from None
    env = os.environ if environ is None else environ
    for name in ENVIRONMENT_VARIABLES:
        value = env.get(name, "").strip()
        if not value:
            continue
        if _bypassed(host, env):
            return None
        try:
            return parse_proxy(value)
        except ValueError as exc:
            raise ValueError(f"environment variable {name}: {exc}") from None
    return None


async def open_tunnel(
    proxy: Proxy, host: str, port: int, limit: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``proxy`` and CONNECT to ``host:port``; the streams then reach the target.

    The caller bounds the time (``asyncio.timeout``); ``limit`` is the reader's buffer.
    """
    try:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port, limit=limit)
    except OSError as exc:
        raise ProxyError(f"cannot reach the proxy {proxy}: {_describe(exc)}") from exc
    try:
        writer.write(proxy.connect_request(host, port))
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_REPLY_BYTES:
            raise ProxyError(f"the proxy {proxy} sent an over-long answer to CONNECT")
        proxy.check_reply(head, host, port)
    except asyncio.IncompleteReadError as exc:
        writer.transport.abort()
        raise _hung_up(proxy, host, port) from exc
    except asyncio.LimitOverrunError as exc:
        writer.transport.abort()
        raise ProxyError(f"the proxy {proxy} sent an over-long answer to CONNECT") from exc
    except OSError as exc:
        writer.transport.abort()
        if isinstance(exc, ProxyError):
            raise
        raise ProxyError(f"connection to the proxy {proxy} failed: {_describe(exc)}") from exc
    except BaseException:  # cancelled or timed out: do not leak the socket
        writer.transport.abort()
        raise
    return reader, writer


def open_tunnel_socket(proxy: Proxy, host: str, port: int, timeout: float) -> socket.socket:
    """Blocking ``open_tunnel``: a socket connected to ``host:port`` through ``proxy``."""
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    except OSError as exc:
        raise ProxyError(f"cannot reach the proxy {proxy}: {_describe(exc)}") from exc
    try:
        sock.sendall(proxy.connect_request(host, port))
        head = bytearray()
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: nothing past the answer
            byte = sock.recv(1)
            if not byte:
                raise _hung_up(proxy, host, port)
            head += byte
            if len(head) > MAX_REPLY_BYTES:
                raise ProxyError(f"the proxy {proxy} sent an over-long answer to CONNECT")
        proxy.check_reply(bytes(head), host, port)
    except ProxyError:
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        raise ProxyError(f"connection to the proxy {proxy} failed: {_describe(exc)}") from exc
    return sock


def _bypassed(host: str, env: Mapping[str, str]) -> bool:
    """Whether a no-proxy variable (the first one set) names ``host``."""
    for name in NO_PROXY_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return any(_matches(host.strip("[]").lower(), e) for e in value.split(","))
    return False


def _matches(host: str, entry: str) -> bool:
    entry = entry.strip().lower()
    if not entry:
        return False
    if entry == "*":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        try:
            return address in ipaddress.ip_network(entry.strip("[]"), strict=False)
        except ValueError:
            return False
    domain = entry.lstrip("*").lstrip(".")
    if ":" in domain:  # "host:port": the port is not considered
        domain = domain.rsplit(":", 1)[0]
    return bool(domain) and (host == domain or host.endswith("." + domain))


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _hung_up(proxy: Proxy, host: str, port: int) -> ProxyError:
    return ProxyError(
        f"the proxy {proxy} closed the connection without answering "
        f"CONNECT {_authority(host, port)}"
    )


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
