"""The agent's own gRPC client (agent.rpc) against a real grpcio server over mutual TLS.

The server runs in this process on a thread pool, with generic handlers that deal in
raw bytes (no protobuf). A few fake TLS servers (silent, or not speaking gRPC) cover
what a grpcio server never does.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import datetime as dt
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import hyperframe.frame
import pytest

from agent.identity import new_key_and_csr
from agent.rpc import (
    Channel,
    Keepalive,
    RpcError,
    StatusCode,
    StreamCall,
    client_context,
    h2_workarounds,
    parse_proxy,
)
from agent.rpc.channel import MAX_KEEPALIVE_INTERVAL, STREAM_WINDOW
from agent.stream import KEEPALIVE
from collector.config import ServeConfig
from collector.pki import CertificateAuthority
from collector.server.app import CollectorServer
from tests.connect_proxy import ProxyProcess
from tests.support import free_port

pytestmark = pytest.mark.timeout(60)

DAY = dt.timedelta(days=1)
MiB = 1024 * 1024
HOST = "127.0.0.1"
DENIED = "agent ag-1 is not allowed: Zugriff verweigert — ä ö ü ✓ 100% /x?y=z"


def run(test: Callable[[], Awaitable[None]]) -> None:
    """Run an async test body on a fresh loop; 45 s is a hang guard, not an expectation."""
    asyncio.run(asyncio.wait_for(test(), 45))


def raw(data: bytes) -> bytes:
    return data


def method(name: str) -> str:
    return f"/test.Test/{name}"


# Certificates: the project's own CA, a server certificate for 127.0.0.1, an agent certificate.


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture(scope="module")
def server_pem(ca: CertificateAuthority) -> tuple[bytes, bytes]:
    """(cert_pem, key_pem) of the server, valid for 127.0.0.1."""
    return ca.issue_server_certificate([HOST], DAY)


@pytest.fixture(scope="module")
def client_tls(ca: CertificateAuthority) -> ssl.SSLContext:
    """Trusts the CA and presents an agent certificate with CN "ag-1"."""
    key_pem, csr_pem = new_key_and_csr("host")
    cert_pem = ca.sign_agent_csr(csr_pem, "ag-1", "acme", DAY).cert_pem
    return client_context(ca.cert_pem, cert_pem, key_pem)


# The grpcio server and its handlers.


class Server:
    """A grpcio server on 127.0.0.1 requiring client certificates, with test handlers.

    Handlers that wait do so in bounded steps and give up once ``released`` is set
    (at teardown), so no server thread outlives the test.
    """

    def __init__(
        self,
        ca: CertificateAuthority,
        server_pem: tuple[bytes, bytes],
        options: list[tuple[str, int]] | None = None,
    ) -> None:
        self.released = threading.Event()
        self.started = threading.Event()  # a waiting handler has begun
        self.saw_cancel = threading.Event()  # a handler saw its call cancelled
        self.proceed = threading.Event()  # lets DenyUnread abort
        self.peers: list[Any] = []  # auth contexts seen by Echo
        self.produced = 0  # messages the Flood handler has generated
        self.produced_by: collections.Counter[bytes] = collections.Counter()  # TaggedFlood
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="grpc-test")
        self.grpc = grpc.server(
            self._executor,
            options=[
                ("grpc.max_receive_message_length", 64 * MiB),
                ("grpc.max_send_message_length", 64 * MiB),
                # Keep grpcio's receive windows small (no bandwidth probing), so client
                # writes often wait for window in the middle of a message.
                ("grpc.http2.bdp_probe", 0),
                *(options or []),
            ],
        )
        unary = grpc.unary_unary_rpc_method_handler
        streams = grpc.stream_stream_rpc_method_handler
        handlers: dict[str, Any] = {
            "Echo": unary(self.echo),
            "Deny": unary(self.deny),
            "Sleep": unary(self.sleep),
            "Blob": unary(self.blob),
            "Hold": unary(self.hold),
            "EchoStream": streams(self.echo_stream),
            "TwoThenDeny": streams(self.two_then_deny),
            "WaitForCancel": streams(self.wait_for_cancel),
            "DenyUnread": streams(self.deny_unread),
            "Collect": streams(self.collect),
            "Flood": streams(self.flood),
            "TaggedFlood": streams(self.tagged_flood),
        }
        self.grpc.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("test.Test", handlers)]
        )
        cert_pem, key_pem = server_pem
        credentials = grpc.ssl_server_credentials(
            [(key_pem, cert_pem)], root_certificates=ca.cert_pem, require_client_auth=True
        )
        self.port = self.grpc.add_secure_port(f"{HOST}:0", credentials)
        self.grpc.start()

    def stop(self, grace: float = 0) -> None:
        """Stop serving: at once (cancelling calls), or with a grace period for in-flight calls."""
        if grace:
            self.grpc.stop(grace)
        else:
            self.released.set()
            self.grpc.stop(0).wait(10)

    def close(self) -> None:
        self.released.set()
        self.grpc.stop(0).wait(10)
        self._executor.shutdown(wait=True)

    def _wait(self, context: grpc.ServicerContext, seconds: float = 30.0) -> None:
        """Wait until the call ends, the test releases handlers, or ``seconds`` pass."""
        deadline = time.monotonic() + seconds
        while context.is_active() and not self.released.is_set():
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)

    def _watch_for_cancel(self, context: grpc.ServicerContext) -> None:
        """Set ``saw_cancel`` if the call ends while the handler is still held.

        A callback, because grpcio may never resume a generator handler whose call
        was cancelled while it was sending.
        """

        def ended() -> None:
            if not self.released.is_set():
                self.saw_cancel.set()

        context.add_callback(ended)

    # Unary handlers.

    def echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """The request back, after the client certificate's CN."""
        auth: Any = context.auth_context()  # {property: [values]} (the stubs say otherwise)
        self.peers.append(auth)
        [common_name] = auth["x509_common_name"]
        return bytes(common_name) + b":" + request

    def deny(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, DENIED)

    def sleep(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """Answers only once the client has given up (or the test releases it)."""
        self._watch_for_cancel(context)
        self.started.set()
        self._wait(context)
        return b"too late"

    def blob(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """``int(request)`` bytes."""
        return b"x" * int(request)

    def hold(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """Answers once released (``stop(grace)`` lets it finish)."""
        self.started.set()
        self.released.wait(30)
        return b"finished:" + request

    # Streaming handlers.

    def echo_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        yield from requests

    def two_then_deny(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        yield b"one"
        yield b"two"
        context.abort(grpc.StatusCode.PERMISSION_DENIED, DENIED)

    def wait_for_cancel(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        """Says "ready", then waits; records whether the client cancelled the call."""
        self._watch_for_cancel(context)
        yield b"ready"
        self._wait(context)

    def deny_unread(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        """Says "ready", never reads a request, aborts once the test sets ``proceed``."""
        yield b"ready"
        self.proceed.wait(30)
        context.abort(grpc.StatusCode.PERMISSION_DENIED, DENIED)

    def collect(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        """Reads every request; answers "value:size" per message, or "MIXED" for a torn one.

        It reads slowly, so the client's writers keep running out of flow-control window
        in the middle of a message (the moment another writer could cut in).
        """
        report = []
        for message in requests:
            time.sleep(0.002)
            intact = message == bytes([message[0]]) * len(message)
            report.append(b"%d:%d" % (message[0], len(message)) if intact else b"MIXED")
        yield b",".join(report)

    def flood(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        """``int(first request)`` messages of 1 MiB filled with their index, as fast as allowed."""
        count = int(next(requests))
        for index in range(count):
            self.produced += 1
            yield bytes([index % 256]) * MiB

    def tagged_flood(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        """First request b"TAG:COUNT": COUNT 1 MiB messages, counted in ``produced_by[TAG]``."""
        tag, count = next(requests).split(b":")
        for index in range(int(count)):
            if self.released.is_set():
                return
            self.produced_by[tag] += 1
            yield bytes([index % 256]) * MiB


@pytest.fixture
def server(ca: CertificateAuthority, server_pem: tuple[bytes, bytes]) -> Iterator[Server]:
    running = Server(ca, server_pem)
    yield running
    running.close()


async def connect(port: int, tls: ssl.SSLContext, **options: Any) -> Channel:
    return await Channel.connect(HOST, port, tls, timeout=10, **options)


# Fake servers: TLS with the real server certificate, then not gRPC.


class FakeTlsServer:
    """Accepts TLS connections on a thread; sends ``greeting``, then reads and discards.

    It selects ALPN "h2" unless ``alpn`` is False; with ``close`` it hangs up after the
    greeting instead of reading on.
    """

    def __init__(
        self, server_pem: tuple[bytes, bytes], greeting: bytes, alpn: bool, close: bool
    ) -> None:
        cert_pem, key_pem = server_pem
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if alpn:
            self._context.set_alpn_protocols(["h2"])
        self._load(cert_pem, key_pem)
        self._greeting = greeting
        self._close = close
        self._stopped = threading.Event()
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.received = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _load(self, cert_pem: bytes, key_pem: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            for path, data in ((cert, cert_pem), (key, key_pem)):
                with open(path, "wb") as file:
                    file.write(data)
            self._context.load_cert_chain(cert, key)

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                plain, _ = self._listener.accept()
            except TimeoutError:
                continue
            with plain:
                plain.settimeout(0.1)
                try:
                    with self._context.wrap_socket(plain, server_side=True) as tls:
                        self._talk(tls)
                except (OSError, ssl.SSLError):
                    continue

    def _talk(self, tls: ssl.SSLSocket) -> None:
        if self._greeting:
            tls.sendall(self._greeting)
        while not self._close and not self._stopped.is_set():
            try:
                data = tls.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            self.received += len(data)

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(10)
        self._listener.close()


FakeServerFactory = Callable[..., FakeTlsServer]


@pytest.fixture
def fake_server(server_pem: tuple[bytes, bytes]) -> Iterator[FakeServerFactory]:
    """Factory: ``fake_server(greeting=b"", alpn=True, close=False)`` starts a FakeTlsServer."""
    started: list[FakeTlsServer] = []

    def start(greeting: bytes = b"", alpn: bool = True, close: bool = False) -> FakeTlsServer:
        started.append(FakeTlsServer(server_pem, greeting, alpn, close))
        return started[-1]

    yield start
    for fake in started:
        fake.close()


# Calls that work.


def test_unary_over_mutual_tls_reaches_the_server_as_the_agent(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """A unary call returns the server's reply; the server saw the client certificate (CN ag-1)."""

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            assert await channel.unary(method("Echo"), b"hello", raw, timeout=10) == b"ag-1:hello"

    run(test)
    [peer] = server.peers
    assert peer["x509_common_name"] == [b"ag-1"]
    assert peer["transport_security_type"] == [b"ssl"]


def test_bidirectional_stream_keeps_order_then_ends_cleanly(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """300 messages each way arrive in order; read() is None once the server ends with OK."""

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            call = channel.stream(method("EchoStream"), raw)
            sent = [b"message %d" % i for i in range(300)]
            for message in sent:
                await call.write(message)
            received = [await call.read() for _ in sent]
            assert received == sent
            await call.done_writing()
            assert await call.read() is None
            assert await call.read() is None  # and stays ended

    run(test)


def test_messages_bigger_than_frames_and_windows_pass_both_ways(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """5 MiB messages (> 1 MiB frames, > 4 MiB stream window) go out and come back intact."""

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            call = channel.stream(method("EchoStream"), raw)
            for value in (1, 2, 3):
                message = bytes([value]) * (5 * MiB) + b"end %d" % value
                await call.write(message)
                assert await call.read() == message
            await call.done_writing()
            assert await call.read() is None

    run(test)


# Errors from the server.


def test_server_status_arrives_with_code_and_exact_details(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """An abort's code and its non-ASCII, percent-encoded details reach the client unchanged."""

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            with pytest.raises(RpcError) as caught:
                await channel.unary(method("Deny"), b"", raw, timeout=10)
            assert caught.value.code == StatusCode.PERMISSION_DENIED
            assert caught.value.details == DENIED

    run(test)


def test_messages_before_an_error_are_read_first(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """Messages the server sent before aborting are read, then the RpcError (repeatedly)."""

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            call = channel.stream(method("TwoThenDeny"), raw)
            await call.done_writing()
            assert await call.read() == b"one"
            assert await call.read() == b"two"
            for _ in range(2):
                with pytest.raises(RpcError) as caught:
                    await call.read()
                assert (caught.value.code, caught.value.details) == (
                    StatusCode.PERMISSION_DENIED,
                    DENIED,
                )

    run(test)


def test_unknown_method_is_unimplemented(server: Server, client_tls: ssl.SSLContext) -> None:
    """A method the server does not have fails UNIMPLEMENTED."""

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            with pytest.raises(RpcError) as caught:
                await channel.unary("/test.Test/Nope", b"", raw, timeout=10)
            assert caught.value.code == StatusCode.UNIMPLEMENTED

    run(test)


def test_deadline_exceeded_leaves_the_channel_usable(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """A unary call that outlives its timeout fails DEADLINE_EXCEEDED; the next call works."""

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            with pytest.raises(RpcError) as caught:
                await channel.unary(method("Sleep"), b"", raw, timeout=0.3)
            assert caught.value.code == StatusCode.DEADLINE_EXCEEDED
            assert await channel.unary(method("Echo"), b"again", raw, timeout=10) == b"ag-1:again"

    run(test)


def test_oversized_server_message_fails_only_that_call(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """A message over max_message_bytes fails its call RESOURCE_EXHAUSTED; others still work."""

    async def test() -> None:
        async with await connect(server.port, client_tls, max_message_bytes=1024) as channel:
            with pytest.raises(RpcError) as caught:
                await channel.unary(method("Blob"), b"4096", raw, timeout=10)
            assert caught.value.code == StatusCode.RESOURCE_EXHAUSTED
            assert await channel.unary(method("Blob"), b"1024", raw, timeout=10) == b"x" * 1024

    run(test)


# Ending calls and channels from the client side.


def test_cancel_reaches_the_server_and_ends_the_call(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """cancel() resets the stream (the handler sees it); later reads and writes fail CANCELLED."""

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            call = channel.stream(method("WaitForCancel"), raw)
            assert await call.read() == b"ready"
            call.cancel()
            assert await asyncio.to_thread(server.saw_cancel.wait, 30)
            for operation in (call.read(), call.write(b"more")):
                with pytest.raises(RpcError) as caught:
                    await operation
                assert caught.value.code == StatusCode.CANCELLED
            # The channel itself is fine.
            assert await channel.unary(method("Echo"), b"x", raw, timeout=10) == b"ag-1:x"

    run(test)


async def blocked_writer(call: StreamCall[bytes]) -> asyncio.Task[None]:
    """A task writing 32 MiB to a server that does not read: it waits for flow-control window."""
    writer = asyncio.create_task(call.write(b"w" * (32 * MiB)))
    await asyncio.sleep(1)
    assert not writer.done(), "precondition: the write should be stuck on flow control"
    return writer


async def outcome(task: asyncio.Task[None], seconds: float = 10) -> BaseException | None:
    """The task's exception (None if it returned); fails the test if it is still stuck."""
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        pytest.fail(f"the write still hangs {seconds:g} s later")
    return task.exception()


def test_cancel_releases_a_write_blocked_by_flow_control(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """cancel() while another task's write waits for window: that write fails CANCELLED."""

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            call = channel.stream(method("WaitForCancel"), raw)
            assert await call.read() == b"ready"
            writer = await blocked_writer(call)
            call.cancel()
            error = await outcome(writer)
            assert isinstance(error, RpcError) and error.code == StatusCode.CANCELLED, error

    run(test)


def test_server_ending_the_call_fails_a_blocked_write_with_its_status(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """The server aborts while a write waits for window: the write raises the call's status."""

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            call = channel.stream(method("DenyUnread"), raw)
            assert await call.read() == b"ready"
            writer = await blocked_writer(call)
            server.proceed.set()
            with pytest.raises(RpcError) as caught:
                await call.read()
            assert caught.value.code == StatusCode.PERMISSION_DENIED
            error = await outcome(writer)
            assert isinstance(error, RpcError), error
            assert (error.code, error.details) == (StatusCode.PERMISSION_DENIED, DENIED)

    run(test)


def test_cancelling_the_task_of_a_unary_call_cancels_the_call(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """A unary call whose awaiting task is cancelled is reset, so the server stops too."""

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            task = asyncio.create_task(channel.unary(method("Sleep"), b"", raw, timeout=40))
            assert await asyncio.to_thread(server.started.wait, 30)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await asyncio.to_thread(server.saw_cancel.wait, 10)

    run(test)


def test_closing_the_channel_cancels_its_open_calls(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """aclose() while a read is pending makes it (and later reads) fail CANCELLED."""

    async def test() -> None:
        channel = await connect(server.port, client_tls)
        call = channel.stream(method("WaitForCancel"), raw)
        assert await call.read() == b"ready"
        pending = asyncio.create_task(call.read())
        await asyncio.sleep(0.05)
        await channel.aclose()
        for read in (pending, call.read()):
            with pytest.raises(RpcError) as caught:
                await read
            assert caught.value.code == StatusCode.CANCELLED
        with pytest.raises(RpcError):
            channel.stream(method("Echo"), raw)

    run(test)


def test_concurrent_writers_never_interleave_messages(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """Two tasks writing 100 x 100 KiB on one call: the server gets 200 intact messages."""
    size = 100 * 1024

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            call = channel.stream(method("Collect"), raw)

            async def writer(task: int) -> None:
                for index in range(100):
                    await call.write(bytes([task * 100 + index]) * size)

            await asyncio.gather(writer(0), writer(1))
            await call.done_writing()
            report = await call.read()
            assert report is not None
            entries = report.split(b",")
            assert b"MIXED" not in entries
            values = [int(entry.split(b":")[0]) for entry in entries]
            assert all(entry.endswith(b":%d" % size) for entry in entries)
            assert [v for v in values if v < 100] == list(range(100))  # each task in order
            assert [v for v in values if v >= 100] == list(range(100, 200))
            assert await call.read() is None

    run(test)


def test_a_slow_reader_holds_back_a_fast_sender(server: Server, client_tls: ssl.SSLContext) -> None:
    """Unread messages stop the server (flow control), then everything arrives in order."""
    total = 48

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            call = channel.stream(method("Flood"), raw)
            await call.write(b"%d" % total)
            await call.done_writing()
            assert await call.read() == bytes([0]) * MiB
            await asyncio.sleep(1.5)  # not reading
            # 4 MiB stream window (+ a message or two in grpcio's hands) — nowhere near 48.
            assert server.produced < 16
            for index in range(1, total):
                assert await call.read() == bytes([index]) * MiB
            assert await call.read() is None
            assert server.produced == total

    run(test)


def test_stalled_calls_never_stop_the_other_calls(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """8 calls nobody reads (stalled tunnels), each flooded with 1 MiB messages: they fill
    only their own 4 MiB stream windows (memory bounded); unary calls and another
    streaming call moving 24 MiB each way keep flowing; the stalled calls then resume
    and deliver everything in order.

    8 x 4 MiB is twice the 16 MiB connection window: a client that returns connection
    window only when a call is read freezes here.
    """
    stalled, count = 8, 12

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            calls = []
            for index in range(stalled):
                call = channel.stream(method("TaggedFlood"), raw)
                await call.write(b"%d:%d" % (index, count))
                await call.done_writing()
                calls.append(call)

            def filled() -> bool:  # every stalled call got (about) its stream window's worth
                return all(call.buffered_bytes >= STREAM_WINDOW - MiB for call in calls)

            try:
                async with asyncio.timeout(30):
                    while not filled():
                        await asyncio.sleep(0.05)
            except TimeoutError:
                held = [call.buffered_bytes for call in calls]
                pytest.fail(f"the stalled calls stopped short of their windows: {held}")

            # Other calls flow while the 8 calls stay unread.
            for index in range(5):
                reply = await channel.unary(method("Echo"), b"ack %d" % index, raw, timeout=10)
                assert reply == b"ag-1:ack %d" % index
            other = channel.stream(method("EchoStream"), raw)
            for index in range(24):
                message = bytes([index]) * MiB
                await asyncio.wait_for(other.write(message), 10)
                assert await asyncio.wait_for(other.read(), 10) == message
            await other.done_writing()
            assert await other.read() is None

            # Memory stays bounded: each stalled call holds its stream window, not more,
            # and the server could not get far ahead of the reader.
            for call in calls:
                assert call.buffered_bytes <= STREAM_WINDOW + MiB, call.buffered_bytes
            for index in range(stalled):
                assert server.produced_by[b"%d" % index] < count, server.produced_by

            # The stalled calls resume: everything arrives, in order, then OK.
            for call in calls:
                for index in range(count):
                    assert await call.read() == bytes([index]) * MiB
                assert await call.read() is None

    run(test)


# The server or the connection fails.


def test_server_stopping_fails_a_pending_read_and_new_calls(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """server.stop(0) mid-stream: the pending read and a new call fail UNAVAILABLE, not hang.

    grpcio sends GOAWAY (NO_ERROR), GOAWAY (INTERNAL_ERROR, "Cancelling all calls"),
    then the call's trailers with status UNAVAILABLE, then closes the connection.
    """

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            call = channel.stream(method("EchoStream"), raw)
            await call.write(b"ping")
            assert await call.read() == b"ping"
            pending = asyncio.create_task(call.read())
            await asyncio.sleep(0.05)
            await asyncio.to_thread(server.stop)
            with pytest.raises(RpcError) as caught:
                await pending
            assert caught.value.code == StatusCode.UNAVAILABLE, caught.value
            with pytest.raises(RpcError) as caught:
                await channel.unary(method("Echo"), b"", raw, timeout=10)
            assert caught.value.code == StatusCode.UNAVAILABLE, caught.value

    run(test)


def test_graceful_server_stop_lets_an_inflight_call_finish(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    """stop(grace): the GOAWAY refuses new calls, but a call already running gets its reply."""

    async def test() -> None:
        async with await connect(server.port, client_tls) as channel:
            inflight = asyncio.create_task(channel.unary(method("Hold"), b"a", raw, timeout=30))
            assert await asyncio.to_thread(server.started.wait, 30)
            server.stop(grace=20)
            await asyncio.sleep(0.5)  # the server's GOAWAY arrives before the reply
            server.released.set()
            assert await inflight == b"finished:a"
            with pytest.raises(RpcError) as caught:
                channel.stream(method("Echo"), raw)
            assert caught.value.code == StatusCode.UNAVAILABLE

    run(test)


def test_client_not_trusting_the_server_fails_to_connect(
    server: Server, ca: CertificateAuthority
) -> None:
    """A server certificate from another CA: connect fails UNAVAILABLE, naming verification."""
    other = CertificateAuthority.create("some other CA")
    key_pem, csr_pem = new_key_and_csr("host")
    cert_pem = ca.sign_agent_csr(csr_pem, "ag-1", "acme", DAY).cert_pem
    tls = client_context(other.cert_pem, cert_pem, key_pem)

    async def test() -> None:
        with pytest.raises(RpcError) as caught:
            await connect(server.port, tls)
        assert caught.value.code == StatusCode.UNAVAILABLE
        assert "certificate verify failed" in caught.value.details

    run(test)


def test_missing_client_certificate_fails_instead_of_hanging(
    server: Server, ca: CertificateAuthority
) -> None:
    """No client certificate for a server requiring one: RpcError at connect or first read."""
    tls = client_context(ca.cert_pem)

    async def test() -> None:
        with pytest.raises(RpcError) as caught:
            async with await connect(server.port, tls) as channel:
                call = channel.stream(method("EchoStream"), raw)
                await call.write(b"hello")
                await call.read()
        assert caught.value.code == StatusCode.UNAVAILABLE
        assert "certificate" in caught.value.details  # tells the user where to look

    run(test)


def test_unanswered_keepalive_fails_a_pending_read(
    fake_server: FakeServerFactory, client_tls: ssl.SSLContext
) -> None:
    """A server that completes TLS, then never answers: the keepalive ping times out."""
    silent = fake_server()

    async def test() -> None:
        keepalive = Keepalive(interval=0.2, timeout=0.5)
        async with await connect(silent.port, client_tls, keepalive=keepalive) as channel:
            call = channel.stream(method("EchoStream"), raw)
            await call.write(b"hello")
            with pytest.raises(RpcError) as caught:
                await call.read()
            assert caught.value.code == StatusCode.UNAVAILABLE
            assert "keepalive" in caught.value.details

    run(test)
    assert silent.received > 0  # the client's preface and call did arrive


@pytest.mark.parametrize("then", ["stays", "hangs up"])
def test_a_server_not_speaking_grpc_fails_the_call(
    fake_server: FakeServerFactory, client_tls: ssl.SSLContext, then: str
) -> None:
    """A TLS server answering HTTP/1.1: the call fails promptly, not after a keepalive."""
    garbage = fake_server(b"HTTP/1.1 400 Bad Request\r\n\r\n", close=then == "hangs up")

    async def test() -> None:
        async with await connect(garbage.port, client_tls) as channel:  # keepalive: 30 s
            call = channel.stream(method("EchoStream"), raw)
            with pytest.raises(RpcError) as caught:
                async with asyncio.timeout(10):
                    await call.read()
            assert caught.value.code in (StatusCode.INTERNAL, StatusCode.UNAVAILABLE)

    run(test)


def test_a_tls_server_not_selecting_http2_is_refused(
    fake_server: FakeServerFactory, client_tls: ssl.SSLContext
) -> None:
    """A TLS server that does not select ALPN "h2" fails at connect (or at once), not later."""
    http1 = fake_server(alpn=False)

    async def test() -> None:
        with pytest.raises(RpcError) as caught:
            async with asyncio.timeout(10):
                async with await connect(http1.port, client_tls) as channel:  # keepalive: 30 s
                    await channel.stream(method("EchoStream"), raw).read()
        assert caught.value.code == StatusCode.UNAVAILABLE

    run(test)


@pytest.mark.parametrize(
    "data", [b"", b"abc", b"0123456789", b"0123456789a", bytes(range(256)) * 64]
)
def test_the_cheap_frame_repr_reads_as_hyperframes(data: bytes) -> None:
    """The workaround hexlifies only what it shows, and shows what hyperframe showed."""
    hexed = binascii.hexlify(data).decode("ascii")  # hyperframe: whole payload, then cut
    expected = (
        "None" if not data else "<hex:" + (hexed[:20] + "..." if len(hexed) > 20 else hexed) + ">"
    )
    assert h2_workarounds._raw_data_repr(data) == expected
    assert hyperframe.frame._raw_data_repr is h2_workarounds._raw_data_repr  # installed


# Keepalive: the server's ping policy.

PING_POLICY = [  # grpc-core's ping abuse policy, scaled down to seconds
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_ping_strikes", 2),
]


@pytest.fixture
def strict_server(ca: CertificateAuthority, server_pem: tuple[bytes, bytes]) -> Iterator[Server]:
    running = Server(ca, server_pem, options=PING_POLICY)
    yield running
    running.close()


def test_too_many_pings_backs_the_keepalive_off_for_the_next_connection(
    strict_server: Server, client_tls: ssl.SSLContext
) -> None:
    """Pinging 10 times as often as allowed: grpcio answers GOAWAY ENHANCE_YOUR_CALM
    "too_many_pings"; the channel reports it once and fails new calls, and the next
    connection's interval is doubled (capped), as grpc-core does."""
    told: list[str] = []

    async def test() -> None:
        keepalive = Keepalive(interval=0.1, timeout=5)
        async with await connect(
            strict_server.port,
            client_tls,
            keepalive=keepalive,
            on_too_many_pings=lambda: told.append("too many pings"),
        ) as channel:
            assert await channel.unary(method("Echo"), b"x", raw, timeout=10) == b"ag-1:x"
            async with asyncio.timeout(30):
                while not told:
                    await asyncio.sleep(0.05)
            with pytest.raises(RpcError) as caught:
                await channel.unary(method("Echo"), b"y", raw, timeout=10)
            assert caught.value.code == StatusCode.UNAVAILABLE
            assert "too_many_pings" in caught.value.details
        assert told == ["too many pings"]
        assert keepalive.backed_off() == Keepalive(interval=0.2, timeout=5)
        slow = Keepalive(interval=MAX_KEEPALIVE_INTERVAL * 0.75, timeout=5)
        assert slow.backed_off().interval == MAX_KEEPALIVE_INTERVAL

    run(test)


def test_pinging_no_faster_than_the_policy_allows_is_never_refused(
    strict_server: Server, client_tls: ssl.SSLContext
) -> None:
    """The same server and an interval just above its minimum: 5 pings, no complaint."""
    told: list[str] = []

    async def test() -> None:
        keepalive = Keepalive(interval=1.2, timeout=5)
        async with await connect(
            strict_server.port,
            client_tls,
            keepalive=keepalive,
            on_too_many_pings=lambda: told.append("too many pings"),
        ) as channel:
            await asyncio.sleep(6.5)
            assert await channel.unary(method("Echo"), b"x", raw, timeout=10) == b"ag-1:x"
        assert told == []

    run(test)


def test_the_agent_pings_no_more_often_than_the_collector_allows(tmp_path: Any) -> None:
    """The invariant between the collector's ping policy and the agent's keepalive.

    grpc-core counts a ping arriving sooner than min_ping_interval_without_data after
    the previous one as a strike (always, with keepalive_permit_without_calls; with
    no call open otherwise) and sends GOAWAY too_many_pings after max_ping_strikes
    (default 2). The agent pings every KEEPALIVE.interval; a second of slack covers a
    late ping followed by a punctual one. If this fails, a change to either side
    would make the collector disconnect every agent.
    """
    options = dict(CollectorServer(ServeConfig(data_dir=tmp_path))._grpc_options())
    min_ping_ms = options.get("grpc.http2.min_ping_interval_without_data_ms", 300_000)
    assert KEEPALIVE.interval * 1000 >= min_ping_ms + 1000, (KEEPALIVE, min_ping_ms)
    # The agent pings even between calls (it always has its control stream, but
    # enrolment and reconnects do not): the collector must allow that.
    assert options.get("grpc.keepalive_permit_without_calls") == 1
    assert options.get("grpc.http2.max_ping_strikes", 2) >= 1
    # The agent answers the collector's own pings and dies only after its timeout.
    assert KEEPALIVE.timeout < KEEPALIVE.interval
    assert options["grpc.keepalive_timeout_ms"] < options["grpc.keepalive_time_ms"]


# HTTP CONNECT proxies: a real proxy process on loopback.


@pytest.fixture
def proxy_factory(tmp_path: Any) -> Iterator[Callable[..., ProxyProcess]]:
    started: list[ProxyProcess] = []

    def start(status: int = 200, auth: str = "") -> ProxyProcess:
        started.append(ProxyProcess(tmp_path / f"proxy-{len(started)}.log", status, auth))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


def test_calls_go_through_a_connect_proxy_with_tls_end_to_end(
    server: Server, client_tls: ssl.SSLContext, proxy_factory: Callable[..., ProxyProcess]
) -> None:
    """Through a proxy with basic auth: the proxy saw one CONNECT to the server's port
    (authenticated); mutual TLS still reached the server (it saw the agent's CN)."""
    proxy = proxy_factory(auth="bob:p@ss:w0rd")

    async def test() -> None:
        via = parse_proxy(proxy.url("bob:p%40ss%3Aw0rd"))
        async with await connect(server.port, client_tls, proxy=via) as channel:
            assert await channel.unary(method("Echo"), b"hi", raw, timeout=10) == b"ag-1:hi"
            call = channel.stream(method("EchoStream"), raw)
            for index in range(3):
                await call.write(bytes([index]) * MiB)
                assert await call.read() == bytes([index]) * MiB

    run(test)
    assert proxy.connects() == [
        {"target": f"{HOST}:{server.port}", "status": 200, "authenticated": True}
    ]
    assert server.peers[0]["x509_common_name"] == [b"ag-1"]


@pytest.mark.parametrize(
    ("status", "auth", "credentials", "expected"),
    [
        (403, "", "", "refused CONNECT 127.0.0.1:{port}: HTTP 403 Forbidden"),
        (200, "bob:right", "bob:wrong", "HTTP 407 Proxy Authentication Required"),
    ],
)
def test_a_refusing_proxy_fails_the_connect_naming_the_proxy_and_status(
    server: Server,
    client_tls: ssl.SSLContext,
    proxy_factory: Callable[..., ProxyProcess],
    status: int,
    auth: str,
    credentials: str,
    expected: str,
) -> None:
    proxy = proxy_factory(status=status, auth=auth)

    async def test() -> None:
        with pytest.raises(RpcError) as caught:
            await connect(server.port, client_tls, proxy=parse_proxy(proxy.url(credentials)))
        assert caught.value.code == StatusCode.UNAVAILABLE
        details = caught.value.details
        assert f"the proxy http://127.0.0.1:{proxy.port}" in details, details
        assert expected.format(port=server.port) in details, details
        assert "wrong" not in details  # credentials are never shown

    run(test)
    assert len(proxy.connects()) == 1


def test_an_unreachable_proxy_is_named(server: Server, client_tls: ssl.SSLContext) -> None:
    port = free_port()  # nothing listens there

    async def test() -> None:
        with pytest.raises(RpcError) as caught:
            await connect(server.port, client_tls, proxy=parse_proxy(f"http://{HOST}:{port}"))
        assert caught.value.code == StatusCode.UNAVAILABLE
        assert f"cannot reach the proxy http://{HOST}:{port}" in caught.value.details

    run(test)
