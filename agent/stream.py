"""The agent's connection to the collector: one control stream, reconnects, renewal.

Contract: every spooled message is sent until the collector acknowledges it, and
only an acknowledgement removes it from the spool (at-least-once; the collector
de-duplicates). Acks are noted without I/O and deleted with the next spool write
(``Spool.ack_later``). A batch just appended - durable already - is handed over with
``offer`` and sent from memory when it is the next in order; anything else is read
back from the spool. Reconnects back off exponentially with jitter; the client
certificate is renewed over the authenticated stream once ``renew_at_fraction`` of
its lifetime has passed.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from agent.config import StreamConfig
from agent.identity import Identity, load_identity, replace_certificate, split_endpoint
from agent.rpc import (
    Channel,
    Keepalive,
    RpcError,
    StatusCode,
    StreamCall,
    client_context,
    proxy_for,
)
from agent.spool import Spool, SpoolEntry
from common.one_thread import OneThread
from proto import agent_pb2

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

CONNECT_METHOD = "/aftercare.v1.AgentStream/Connect"
RENEW_METHOD = "/aftercare.v1.AgentStream/RenewCertificate"
TUNNEL_METHOD = "/aftercare.v1.AgentStream/Tunnel"
LIVE_BACKLOG = 1000  # run updates/results kept while disconnected
OFFERED_KEPT = 4  # newest appended entries kept in memory for sending without a read
WELCOME_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 20.0
KEEPALIVE = Keepalive(interval=30.0, timeout=10.0)  # within the collector's ping policy (tested)

ControlCall = StreamCall[agent_pb2.CollectorMessage]


class _Renewed(Exception):
    """The certificate was renewed: reconnect at once with the new one."""


@dataclass
class StreamStatus:
    """What the stream is doing, for logs and ``aftercare-agent status``."""

    connected: bool = False
    last_error: str = ""
    acked_total: int = 0
    reconnects: int = 0


class SpoolWorker:
    """Runs spool calls off the event loop, on one dedicated thread.

    The agent's cycles run here too (``agent.main_loop``: sample, encode, append), and the
    link's reads, which are rare: acks are noted with ``Spool.ack_later``, no call.
    """

    def __init__(self, path: Path, max_bytes: int, max_age_seconds: float) -> None:
        self._thread = OneThread("spool")
        self._spool: Spool = self._thread.run(
            Spool, path, max_bytes=max_bytes, max_age_seconds=max_age_seconds
        )

    @property
    def spool(self) -> Spool:
        return self._spool

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` (a bound Spool method) on the spool thread."""
        return await self._thread.call(fn, *args, **kwargs)

    def close(self) -> None:
        self._thread.run(self._spool.close)
        self._thread.shutdown()


class CollectorLink:
    """Keeps the control stream up and drains the spool into it."""

    def __init__(
        self,
        state_dir: Path,
        spool: SpoolWorker,
        config: StreamConfig,
        hello: agent_pb2.Hello,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._state_dir = state_dir
        self._spool = spool
        self._config = config
        self._hello = hello
        self._sleep = sleep
        self._new_data = asyncio.Event()
        self._offered: collections.deque[SpoolEntry] = collections.deque(maxlen=OFFERED_KEPT)
        self._must_read = True  # the spool may hold what memory does not: read it next
        self._notified = 0
        self.status = StreamStatus()
        self.on_message: Callable[[agent_pb2.CollectorMessage], None] | None = None
        self._call: ControlCall | None = None
        self._channel: Channel | None = None
        self._backlog: collections.deque[bytes] = collections.deque(maxlen=LIVE_BACKLOG)
        self.keepalive = KEEPALIVE  # doubled for later connections after "too_many_pings"

    async def send_live(self, message: agent_pb2.AgentMessage) -> None:
        """Send a message that is not spooled (run updates, output, results).

        While disconnected, updates and results wait in a small in-memory backlog
        (sent after the next welcome); output chunks are dropped — the run result
        still says how much output there was.
        """
        payload = message.SerializeToString()
        call = self._call
        if call is not None and self.status.connected:
            try:
                await call.write(payload)  # StreamCall.write never interleaves messages
                return
            except Exception:  # the stream just broke: fall through to the backlog
                log.info("live message not sent: the stream is down")
        if message.WhichOneof("kind") != "run_output":
            self._backlog.append(payload)

    def open_tunnel(self) -> StreamCall[agent_pb2.TunnelFrame]:
        """A new ``AgentStream.Tunnel`` call on the control stream's connection.

        It ends with the connection when that drops. Raises ConnectionError while not
        connected.
        """
        channel = self._channel
        if channel is None or not self.status.connected:
            raise ConnectionError("not connected to the collector")
        try:
            return channel.stream(TUNNEL_METHOD, agent_pb2.TunnelFrame.FromString)
        except RpcError as exc:
            raise ConnectionError(str(exc)) from exc

    def notify(self) -> None:
        """Something was appended to the spool: send it if connected."""
        self._must_read = True
        self._notified += 1  # a read already under way may have missed it
        self._new_data.set()

    def offer(self, entry: SpoolEntry) -> None:
        """``entry`` was just appended (and is durable): send it, from memory if it can be."""
        self._offered.append(entry)
        self._new_data.set()

    def _take_offered(self, last_sent: int, room: int) -> list[SpoolEntry]:
        """Offered entries continuing ``last_sent`` without a hole, up to ``room``.

        Empty when the next entry to send is not in memory (a backlog, a gap entry) and
        at the start of a session (``last_sent`` 0: a fresh spool may have been
        renumbered since): the caller reads the spool instead.
        """
        taken: list[SpoolEntry] = []
        if not last_sent:
            return taken
        while self._offered and len(taken) < room:
            entry = self._offered[0]
            if entry.sequence <= last_sent:
                self._offered.popleft()  # sent already (read back from the spool)
            elif entry.sequence == last_sent + 1:
                taken.append(self._offered.popleft())
                last_sent = entry.sequence
            else:
                break
        return taken

    async def run_forever(self) -> None:
        """Connect, stream, and reconnect with backoff until cancelled."""
        attempt = 0
        while True:
            identity = load_identity(self._state_dir)
            try:
                await self._session(identity)
            except _Renewed:
                attempt = 0
                continue
            except RpcError as exc:
                self._note_error(str(exc), exc.code)
            except (OSError, ConnectionError, TimeoutError) as exc:
                self._note_error(str(exc) or type(exc).__name__, None)
            except Exception as exc:  # a bug must not stop delivery for good: log and retry
                log.exception("unexpected error on the collector stream")
                self.status.last_error = repr(exc)
            if self.status.connected:
                attempt = 0  # the last session got through: start the backoff afresh
            self.status.connected = False
            self._call = None
            self._channel = None
            delay = backoff_delay(attempt, self._config.initial_backoff, self._config.max_backoff)
            attempt += 1
            self.status.reconnects += 1
            log.info("reconnecting in %.1fs", delay)
            await self._sleep(delay)

    def _note_error(self, text: str, code: StatusCode | None) -> None:
        self.status.last_error = text
        if code == StatusCode.PERMISSION_DENIED:
            log.error("collector refused this agent: %s", text)
        else:
            log.warning("collector stream failed: %s", text)

    async def _session(self, identity: Identity) -> None:
        host, port = split_endpoint(identity.agent_endpoint)
        tls = client_context(identity.ca_pem, identity.cert_pem, identity.key_pem)
        channel = await Channel.connect(
            host,
            port,
            tls,
            timeout=CONNECT_TIMEOUT_SECONDS,
            keepalive=self.keepalive,
            proxy=proxy_for(host, self._config.proxy),
            on_too_many_pings=self._back_off_keepalive,
        )
        async with channel:
            call = channel.stream(CONNECT_METHOD, agent_pb2.CollectorMessage.FromString)
            await call.write(agent_pb2.AgentMessage(hello=self._hello).SerializeToString())
            welcome = await asyncio.wait_for(call.read(), WELCOME_TIMEOUT_SECONDS)
            if welcome is None or welcome.WhichOneof("kind") != "welcome":
                raise ConnectionError("collector closed the stream without a welcome")
            await self._spool.call(
                self._spool.spool.advance_sequence, welcome.welcome.last_sequence
            )
            self._call = call
            self._channel = channel
            while self._backlog:
                await call.write(self._backlog.popleft())
            self.status.connected = True
            self.status.last_error = ""
            log.info("connected to %s as %s", identity.agent_endpoint, welcome.welcome.agent_id)
            await self._pump(call, channel, identity)

    def _back_off_keepalive(self) -> None:
        """The collector said we ping too often: ping half as often from now on."""
        self.keepalive = self.keepalive.backed_off()

    async def _pump(self, call: ControlCall, channel: Channel, identity: Identity) -> None:
        """Send, read acks and renew concurrently; return or raise when the first one stops."""
        in_flight: set[int] = set()
        window_open = asyncio.Event()
        tasks = {
            asyncio.create_task(self._send_pending(call, in_flight, window_open)),
            asyncio.create_task(self._read_acks(call, in_flight, window_open)),
            asyncio.create_task(self._renew_when_due(channel, identity)),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()
        raise ConnectionError("collector stream ended")

    async def _send_pending(
        self, call: ControlCall, in_flight: set[int], window_open: asyncio.Event
    ) -> None:
        """Write spooled messages in order, at most ``max_in_flight`` unacknowledged.

        The spool is read at the start, after ``notify``, after a full read (there may
        be more) and when the offered entries do not continue what was sent; otherwise
        the newest batches come from memory (``offer``) and nothing is read.
        """
        last_sent = 0
        limit = self._config.max_in_flight
        self._must_read = True
        while True:
            self._new_data.clear()
            room = limit - len(in_flight)
            entries = []
            if room > 0:
                if not self._must_read:
                    entries = self._take_offered(last_sent, room)
                if not entries and (self._must_read or self._offered):
                    notified = self._notified
                    entries = await self._spool.call(self._spool.spool.pending, last_sent, room)
                    self._must_read = len(entries) == room or self._notified != notified
            for entry in entries:
                in_flight.add(entry.sequence)
                await call.write(entry.payload)
                last_sent = entry.sequence
            if len(in_flight) >= limit:
                window_open.clear()
                await window_open.wait()
            elif not entries:
                await self._new_data.wait()

    async def _read_acks(
        self, call: ControlCall, in_flight: set[int], window_open: asyncio.Event
    ) -> None:
        while True:
            message = await call.read()
            if message is None:
                raise ConnectionError("collector ended the stream")
            if message.WhichOneof("kind") != "ack":
                if self.on_message is not None:
                    self.on_message(message)
                continue
            sequence = message.ack.sequence
            self._spool.spool.ack_later(sequence)
            in_flight.discard(sequence)
            self.status.acked_total += 1
            window_open.set()

    async def _renew_when_due(self, channel: Channel, identity: Identity) -> None:
        not_before, not_after = identity.cert_validity()
        due = not_before + (not_after - not_before) * self._config.renew_at_fraction
        wait = (due - dt.datetime.now(dt.UTC)).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        key_pem, csr_pem = await _key_and_csr_in_child(self._hello.hostname)
        reply = await channel.unary(
            RENEW_METHOD,
            agent_pb2.RenewRequest(csr_pem=csr_pem).SerializeToString(),
            agent_pb2.RenewResponse.FromString,
            timeout=30,
        )
        try:  # crash-safe: a stop at any point leaves the old identity or the new one
            replace_certificate(
                self._state_dir,
                key_pem,
                reply.certificate_pem,
                reply.certificate_not_after_unix_ms,
                time.time_ns() // 1_000_000,
            )
        except ValueError as exc:  # the certificate is not for our new key: keep the old
            raise ConnectionError(str(exc)) from exc
        log.info("client certificate renewed (was valid until %s)", not_after.isoformat())
        raise _Renewed


async def _key_and_csr_in_child(hostname: str) -> tuple[bytes, bytes]:
    """Run ``python -m agent.keygen`` (keeps cryptography out of this process)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.keygen", hostname, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(child.communicate(), 60)
    if child.returncode != 0:
        raise ConnectionError(f"key generation failed (exit {child.returncode})")
    pair = json.loads(out)
    return pair["key_pem"].encode(), pair["csr_pem"].encode()


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Exponential backoff with jitter: between half and all of ``initial * 2**attempt``, capped."""
    ceiling: float = min(maximum, initial * (2 ** min(attempt, 30)))
    fraction = int.from_bytes(os.urandom(4), "big") / 0x1_0000_0000  # not `random`: memory
    return ceiling / 2 + fraction * ceiling / 2
