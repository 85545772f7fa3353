"""A gRPC client channel: one HTTP/2 connection over TLS, any number of calls.

This is the agent's own small gRPC client (the collector serves with grpcio). It
speaks the gRPC-over-HTTP/2 wire protocol with the ``h2`` state machine on asyncio,
which keeps the long-running agent far lighter than grpcio's C core.

Contract: ``Channel.connect`` returns a connected channel or raises ``RpcError``
(UNAVAILABLE for refused connections, proxy refusals and TLS failures). Calls opened
with ``stream`` or made with ``unary`` end with the channel: when the connection
breaks, the server goes away, a keepalive ping goes unanswered, or the channel is
closed, every open call fails with that error. A channel is used from one event loop.

Flow control: received bytes are given back to the connection's window as soon as
they arrive, and to their stream's window only when the call's reader consumes them.
So a call nobody reads (a stalled tunnel) holds at most its stream window (plus one
partly received message) in memory and stops only its own sender; the connection
window, which every call shares, never fills up.

Keepalive: the channel pings every ``Keepalive.interval``. A server that finds that
too often answers GOAWAY ENHANCE_YOUR_CALM "too_many_pings"; like grpc-core, the
channel then reports it (``on_too_many_pings``) so the caller connects next time with
``Keepalive.backed_off()`` (the interval doubled).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import ipaddress
import logging
import math
import os
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import h2.config
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from agent.rpc.call import StreamCall
from agent.rpc.h2_workarounds import H2Connection, install_cheap_data_repr
from agent.rpc.proxy import Proxy, ProxyError, open_tunnel
from agent.rpc.status import RpcError, StatusCode

__all__ = ["MAX_KEEPALIVE_INTERVAL", "Channel", "Keepalive"]

log = logging.getLogger(__name__)
install_cheap_data_repr()

R = TypeVar("R")

USER_AGENT = b"aftercare-agent-rpc"
READ_SIZE = 256 * 1024
TLS_READ_BUFFER = 64 * 1024
"""asyncio's TLS layer allocates and zeroes a read buffer of ``SSLProtocol.max_size``
per connection, 256 KiB by default, resident as long as the connection lives; the
channel sets it to this (TLS records are at most 16 KiB), issue 17."""
STREAM_WINDOW = 4 * 1024 * 1024  # what the server may send on one call before we read it
CONNECTION_WINDOW = 16 * 1024 * 1024
MAX_FRAME_SIZE = 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_KEEPALIVE_INTERVAL = 3600.0  # the backoff after "too_many_pings" stops doubling here
TOO_MANY_PINGS = b"too_many_pings"  # grpc-core's GOAWAY debug data for ping abuse

_RESET_CODES = {
    h2.errors.ErrorCodes.CANCEL: StatusCode.CANCELLED,
    h2.errors.ErrorCodes.REFUSED_STREAM: StatusCode.UNAVAILABLE,
    h2.errors.ErrorCodes.ENHANCE_YOUR_CALM: StatusCode.RESOURCE_EXHAUSTED,
    h2.errors.ErrorCodes.INADEQUATE_SECURITY: StatusCode.PERMISSION_DENIED,
}


@dataclass(frozen=True)
class Keepalive:
    """Ping the server every ``interval`` seconds; give up after ``timeout`` without an answer."""

    interval: float = 30.0
    timeout: float = 10.0

    def backed_off(self) -> Keepalive:
        """The keepalive after a server said "too_many_pings": the interval doubled (capped)."""
        return Keepalive(min(self.interval * 2, MAX_KEEPALIVE_INTERVAL), self.timeout)


class Channel:
    """An HTTP/2 connection to one gRPC server (create with ``Channel.connect``)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        authority: str,
        keepalive: Keepalive,
        max_message_bytes: int,
        on_too_many_pings: Callable[[], None] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._authority = authority.encode()
        self._keepalive = keepalive
        self._on_too_many_pings = on_too_many_pings
        self._max_message_bytes = max_message_bytes
        self._h2 = H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self._calls: dict[int, StreamCall[object]] = {}
        self._window_open = asyncio.Event()
        self._ping_answered: asyncio.Future[None] | None = None
        self._error: RpcError | None = None  # set once: the channel is closed
        self._goaway: RpcError | None = None
        self._pinged_too_often = False
        self._server_spoke = False  # its first frame arrived and was SETTINGS
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        tls: ssl.SSLContext,
        *,
        timeout: float = 10.0,
        keepalive: Keepalive = Keepalive(),
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        proxy: Proxy | None = None,
        on_too_many_pings: Callable[[], None] | None = None,
    ) -> Channel:
        """Connect to ``host:port`` over TLS (the TLS handshake included in ``timeout``).

        With ``proxy``, the TCP connection goes to the proxy, which is asked to CONNECT
        to ``host:port``; TLS (still verified against ``host``) runs inside that tunnel.
        ``on_too_many_pings`` is called if the server complains about keepalive pings.
        """
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
        via = f" through the proxy {proxy}" if proxy is not None else ""
        try:
            async with asyncio.timeout(timeout):
                if proxy is None:
                    reader, writer = await _open_tls(host, port, tls)
                else:
                    reader, writer = await open_tunnel(proxy, host, port, READ_SIZE)
                    try:
                        await writer.start_tls(tls, server_hostname=_server_name(host))
                    except BaseException:
                        writer.transport.abort()
                        raise
        except (OSError, TimeoutError) as exc:
            where = target if isinstance(exc, ProxyError) else target + via  # it names the proxy
            raise RpcError(
                StatusCode.UNAVAILABLE, f"cannot connect to {where}: {_describe(exc)}"
            ) from exc
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            writer.transport.abort()
            raise RpcError(StatusCode.UNAVAILABLE, f"{target} did not negotiate HTTP/2 (ALPN h2)")
        channel = cls(reader, writer, target, keepalive, max_message_bytes, on_too_many_pings)
        channel._start()
        return channel

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def stream(
        self, method: str, decode: Callable[[bytes], R], timeout: float | None = None
    ) -> StreamCall[R]:
        """Start a call of ``method`` ("/package.Service/Method") and return it.

        ``decode`` turns a response message's bytes into an object (e.g. a protobuf
        class's ``FromString``); ``timeout`` is sent as the call's deadline.
        """
        self._raise_if_closed()
        if self._goaway is not None:
            raise self._goaway
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":path", method.encode()),
            (b":authority", self._authority),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (b"user-agent", USER_AGENT),
        ]
        if timeout is not None:
            headers.append((b"grpc-timeout", b"%dm" % math.ceil(timeout * 1000)))
        try:
            stream_id = self._h2.get_next_available_stream_id()
            self._h2.send_headers(stream_id, headers)
        except h2.exceptions.H2Error as exc:
            raise RpcError(StatusCode.UNAVAILABLE, f"cannot start a call: {exc!r}") from exc
        self._flush()
        call = StreamCall(self, stream_id, decode, self._max_message_bytes)
        self._calls[stream_id] = call  # type: ignore[assignment]  # R is erased here
        return call

    async def unary(
        self, method: str, request: bytes, decode: Callable[[bytes], R], timeout: float
    ) -> R:
        """Send one request, return the one reply; RpcError on any failure or the deadline."""
        call = self.stream(method, decode, timeout)
        try:
            async with asyncio.timeout(timeout):
                await call.write(request)
                await call.done_writing()
                reply = await call.read()
                if reply is None:
                    raise RpcError(StatusCode.INTERNAL, f"{method} ended without a reply")
                await call.read()  # the status: None when OK, RpcError otherwise
                return reply
        except TimeoutError:
            raise RpcError(
                StatusCode.DEADLINE_EXCEEDED, f"{method} got no answer in {timeout:g} s"
            ) from None
        finally:
            if not call.finished:  # deadline, failure, or our task cancelled: end it
                call.cancel()

    async def aclose(self) -> None:
        """Say goodbye to the server and close the connection; open calls fail CANCELLED."""
        if self._error is None:
            with contextlib.suppress(h2.exceptions.H2Error):
                self._h2.close_connection()
            self._flush()
            self._close_with(RpcError(StatusCode.CANCELLED, "the channel was closed"), abort=False)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self._writer.wait_closed()

    # What calls use (agent.rpc.call.Connection).

    async def send(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        """Send ``data`` on a stream as its flow-control windows allow, then wait for the socket."""
        offset = 0
        while offset < len(data):
            self._raise_if_closed()
            if stream_id not in self._calls:
                raise RpcError(StatusCode.CANCELLED, "the call has ended")
            self._window_open.clear()
            size = min(
                len(data) - offset, self._h2.max_outbound_frame_size, self._window(stream_id)
            )
            if size == 0:
                await self._window_open.wait()
                continue
            self._send_frame(stream_id, data[offset : offset + size], end_stream=False)
            offset += size
        if end_stream:
            self._raise_if_closed()
            self._send_frame(stream_id, b"", end_stream=True)
        try:
            await self._writer.drain()
        except OSError as exc:
            raise self._lost(f"connection lost: {_describe(exc)}") from exc
        self._raise_if_closed()

    def reset(self, stream_id: int) -> None:
        """Abort a stream (RST_STREAM CANCEL) and forget its call."""
        self._calls.pop(stream_id, None)
        self._window_open.set()  # a write waiting on this stream must notice
        if self._error is None:
            with contextlib.suppress(h2.exceptions.H2Error):
                self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            self._flush()

    def acknowledge(self, stream_id: int, size: int) -> None:
        """Give ``size`` bytes the call consumed back to its stream's window.

        (The connection's window got them back when they arrived: see ``_on_data``.)
        """
        if self._error is None:
            with contextlib.suppress(h2.exceptions.H2Error):
                self._h2.acknowledge_stream_data(size, stream_id)
            self._flush()

    # The connection's own work.

    def _start(self) -> None:
        self._h2.initiate_connection()
        self._h2.update_settings(  # in force once the server acknowledges them
            {
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
            }
        )
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - 65_535)
        self._flush()
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="rpc-read"),
            asyncio.create_task(self._keepalive_loop(), name="rpc-keepalive"),
        ]

    async def _read_loop(self) -> None:
        try:
            await self._read_preface()
            while True:
                data = await self._reader.read(READ_SIZE)
                if not data:
                    raise self._lost("the server closed the connection")
                self._dispatch(self._h2.receive_data(data))
                self._flush()
        except RpcError as error:
            self._close_with(error)
        except h2.exceptions.H2Error as exc:
            self._close_with(
                RpcError(StatusCode.INTERNAL, f"HTTP/2 protocol error from the server: {exc!r}")
            )
        except OSError as exc:
            self._close_with(self._lost(f"connection lost: {_describe(exc)}"))
        except Exception as exc:  # a bug here must not leave calls waiting forever
            log.exception("gRPC channel reader failed")
            self._close_with(RpcError(StatusCode.INTERNAL, f"gRPC client error: {exc!r}"))

    async def _read_preface(self) -> None:
        """Check that the server's first frame is SETTINGS before trusting it as HTTP/2.

        Without this, a server answering in another protocol would pass for the start
        of one huge frame and hang the calls until the keepalive gave up.
        """
        preface = b""
        while len(preface) < 9:
            data = await self._reader.read(9 - len(preface))
            if not data:
                raise self._lost("the server closed the connection")
            preface += data
        if preface[3] != 0x4 or preface[4] & 0x1 or preface[5:9] != bytes(4):
            raise RpcError(
                StatusCode.UNAVAILABLE, f"the server does not speak HTTP/2 (it sent {preface!r})"
            )
        self._server_spoke = True
        self._dispatch(self._h2.receive_data(preface))
        self._flush()

    def _lost(self, what: str) -> RpcError:
        """UNAVAILABLE for a dropped connection, with a hint if it dropped during set-up."""
        if not self._server_spoke:
            what += (
                " before the server spoke HTTP/2 (a server refusing this client's"
                " certificate does that: check it is valid and not revoked)"
            )
        return RpcError(StatusCode.UNAVAILABLE, what)

    async def _keepalive_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._error is None:
            await asyncio.sleep(self._keepalive.interval)
            if self._error is not None:
                return
            self._ping_answered = loop.create_future()
            self._h2.ping(os.urandom(8))
            self._flush()
            try:
                async with asyncio.timeout(self._keepalive.timeout):
                    await self._ping_answered
            except TimeoutError:
                seconds = self._keepalive.timeout
                self._close_with(
                    RpcError(
                        StatusCode.UNAVAILABLE,
                        f"the server did not answer a keepalive ping in {seconds:g} s",
                    )
                )

    def _dispatch(self, events: Iterable[h2.events.Event]) -> None:
        for event in events:
            if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                call = self._calls.get(event.stream_id or 0)
                if call is not None:
                    headers = dict(event.headers or [])
                    if isinstance(event, h2.events.ResponseReceived):
                        call._on_headers(headers)
                    else:
                        call._on_trailers(headers)
            elif isinstance(event, h2.events.DataReceived):
                self._on_data(event)
            elif isinstance(event, h2.events.StreamEnded):
                self._on_stream_ended(event.stream_id or 0)
            elif isinstance(event, h2.events.StreamReset):
                self._on_stream_reset(event)
            elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                self._window_open.set()
            elif isinstance(event, h2.events.PingAckReceived):
                if self._ping_answered is not None and not self._ping_answered.done():
                    self._ping_answered.set_result(None)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._on_goaway(event)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream_id = event.stream_id or 0
        size = event.flow_controlled_length or 0
        # The bytes are held by their call now (bounded by its stream window): the
        # connection's window gets them back at once, whether or not the call is read.
        self._h2.acknowledge_connection_data(size)
        call = self._calls.get(stream_id)
        if call is None:
            self.acknowledge(stream_id, size)
        else:
            call._on_data(event.data or b"", size)

    def _on_stream_ended(self, stream_id: int) -> None:
        call = self._calls.pop(stream_id, None)
        if call is not None:
            call._on_end()
        self._window_open.set()  # a sender waiting on this stream must notice

    def _on_stream_reset(self, event: h2.events.StreamReset) -> None:
        call = self._calls.pop(event.stream_id or 0, None)
        if call is not None:
            code = _RESET_CODES.get(event.error_code, StatusCode.INTERNAL)  # type: ignore[call-overload]
            call._fail(RpcError(code, f"the server reset the call ({event.error_code!r})"))
        self._window_open.set()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        """The server is going away: no new calls; calls it did not take fail now."""
        if (
            event.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
            and event.additional_data == TOO_MANY_PINGS
            and not self._pinged_too_often  # once, however often the server says it
        ):
            self._pinged_too_often = True
            log.warning(
                "the server %s says this client pings too often (too_many_pings); "
                "keepalive interval %g s will be doubled for the next connection",
                self._authority.decode(),
                self._keepalive.interval,
            )
            if self._on_too_many_pings is not None:
                self._on_too_many_pings()
        self._goaway = RpcError(
            StatusCode.UNAVAILABLE,
            f"the server is closing the connection ({event.error_code!r}"
            + (
                f": {event.additional_data.decode(errors='replace')})"
                if event.additional_data
                else ")"
            ),
        )
        last = event.last_stream_id or 0
        for stream_id in [s for s in self._calls if s > last]:
            self._calls.pop(stream_id)._fail(self._goaway)
        if not self._calls:
            self._close_with(self._goaway)

    def _window(self, stream_id: int) -> int:
        try:
            return self._h2.local_flow_control_window(stream_id)
        except h2.exceptions.H2Error as exc:
            raise RpcError(StatusCode.INTERNAL, "the call's stream is closed") from exc

    def _send_frame(self, stream_id: int, chunk: bytes, end_stream: bool) -> None:
        try:
            self._h2.send_data(stream_id, chunk, end_stream=end_stream)
        except h2.exceptions.H2Error as exc:
            raise RpcError(StatusCode.INTERNAL, "the call's stream is closed") from exc
        self._flush()

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    def _raise_if_closed(self) -> None:
        if self._error is not None:
            raise self._error

    def _close_with(self, error: RpcError, abort: bool = True) -> None:
        """End the channel once: every open call fails with ``error``; the socket closes."""
        if self._error is not None:
            return
        self._error = error
        calls, self._calls = self._calls, {}
        for call in calls.values():
            call._fail(error)
        self._window_open.set()
        if abort:
            self._writer.transport.abort()
        else:
            self._writer.close()


async def _open_tls(
    host: str, port: int, tls: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` over TLS to ``host:port`` (addresses tried in turn).

    An ASCII host name is resolved, and named to TLS, as bytes: given text, both
    ``socket.getaddrinfo`` and ``ssl`` encode it with the IDNA codec, whose modules
    (unicodedata, stringprep: about 0.4 MiB) would stay in the agent (issue 17). An IP
    address is not resolved at all, as asyncio does.
    """
    name = _server_name(host)
    if isinstance(name, str) or _is_address(host):
        return await asyncio.open_connection(
            host, port, ssl=tls, server_hostname=name, limit=READ_SIZE
        )
    loop = asyncio.get_running_loop()
    errors: list[OSError] = []
    for family, kind, proto, _, address in await loop.getaddrinfo(
        name, port, type=socket.SOCK_STREAM
    ):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(
            sock=sock, ssl=tls, server_hostname=name, limit=READ_SIZE
        )
    if len(errors) == 1:
        raise errors[0]
    raise OSError(
        f"Multiple exceptions: {', '.join(str(e) for e in errors)}"
        if errors
        else f"getaddrinfo returned no address for {host}"
    )


def _server_name(host: str) -> Any:
    """``host`` for TLS: ASCII bytes when it is ASCII (``ssl`` then skips IDNA), else text.

    Typed ``Any``: the standard library annotates ``server_hostname`` as text, while
    ``SSLContext`` takes an ASCII name as bytes as well.
    """
    return host.encode("ascii") if host.isascii() else host


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
