"""AgentStream service: the per-agent control stream (ingest with acks) and certificate renewal.

Contract of ``Connect``: the first message must be a Hello; the collector answers
Welcome (with the highest sequence it already stores), then acknowledges every
batch or gap only once it is durable in the store. A sequence stored before is
acknowledged with ``duplicate=True`` and changes nothing.

Pipelining: the agent keeps several batches in flight (``stream.max_in_flight``). The
stream reads on while earlier batches wait for their group commit
(collector.server.group_commit); acks go out in the order the batches came, each once
its group is durable. At most ``MAX_PIPELINED`` batches of one stream wait at a time;
beyond that the stream stops reading (HTTP/2 flow control holds the agent back).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from collector.errors import CollectorError, InvalidRequest, UnknownAgent
from collector.fleet import Fleet
from collector.gateway.tunnels import TunnelBroker
from collector.metrics import CollectorMetrics
from collector.pki import CertificateAuthority
from collector.rules import HostRef, RuleEngine
from collector.server.batch_decode import SampleDecoder
from collector.server.group_commit import GroupCommitter
from collector.server.peer import authenticate_agent
from collector.server.streams import OpenStream, Streams
from collector.store import (
    AgentRecord,
    BatchOutcome,
    GapRecord,
    HelloRecord,
    IncomingBatch,
)
from collector.store.group_call import GroupCall
from collector.store.writer import StoreThread
from common.approval_format import FormatError, parse_fingerprint
from common.audit_checkpoint import CAPABILITY as AUDIT_WITNESS
from proto import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)

HELLO_TIMEOUT_SECONDS = 30.0
RUN_MESSAGES = frozenset({"run_update", "run_output", "run_result"})
SESSION_APPROVALS = frozenset({"signed", "collector", "local", "either", "disabled"})


class RunMessageSink(Protocol):
    """Where playbook run messages from agents go (collector.runs.service.RunService)."""

    async def on_agent_message(self, host: HostRef, message: agent_pb2.AgentMessage) -> None: ...


class SessionAgentHooks(Protocol):
    """What the control stream tells the session service (collector.sessions.SessionService)."""

    async def on_agent_message(self, host: HostRef, message: agent_pb2.AgentMessage) -> None:
        """A session message from the agent (an approval given on the host)."""
        ...

    async def agent_connected(self, agent_id: str) -> None:
        """The agent's stream is open: tell it the requests waiting for a decision."""
        ...


class ApproverAgentHooks(Protocol):
    """What the control stream asks about customer approvers (collector.approvers)."""

    async def revocations_message(self, customer: str) -> agent_pb2.CollectorMessage | None:
        """The customer's signed revocations for a host that just connected (None: none)."""
        ...


class AuditAgentHooks(Protocol):
    """What the control stream tells the audit checkpoint sender
    (collector.server.audit_checkpoints.AuditCheckpoints)."""

    async def agent_connected(self, agent_id: str, count: int, head: str) -> None: ...

    def agent_disconnected(self, agent_id: str) -> None: ...

    def on_witness(self, agent_id: str, witness: agent_pb2.AuditWitness) -> None: ...


class PresenceHooks(Protocol):
    """What the control stream tells the replica routing
    (collector.server.replicas.ReplicaRouting): which agents this replica holds."""

    @property
    def replica(self) -> str:
        """This replica's name: an agent's hello claims its presence here."""
        ...

    async def agent_connected(self, agent_id: str) -> None: ...

    def agent_disconnected(self, agent_id: str) -> None: ...


MAX_SAMPLES_PER_BATCH = 20_000
MAX_PIPELINED = 256  # batches of one stream waiting for their commit (agent default: 64)
MAX_LABEL_TEXT = 1024
MAX_SEQUENCE = 2**63 - 1  # the store's BIGINT; larger numbers are refused, not wrapped
MAX_UNIX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


class AgentStreamServicer(agent_pb2_grpc.AgentStreamServicer):
    """Serves enrolled agents over mutual TLS."""

    def __init__(
        self,
        db: StoreThread,
        ca: CertificateAuthority,
        fleet: Fleet,
        metrics: CollectorMetrics,
        engine: RuleEngine,
        streams: Streams,
        runs: RunMessageSink,
        sessions: SessionAgentHooks,
        tunnels: TunnelBroker,
        cert_ttl: dt.timedelta,
        clock_ms: Callable[[], int],
        approvers: ApproverAgentHooks,
        audit: AuditAgentHooks | None = None,
        committer: GroupCommitter | None = None,
        presence: PresenceHooks | None = None,
    ) -> None:
        self._db = db
        self._committer = committer if committer is not None else GroupCommitter(db)
        self._ca = ca
        self._fleet = fleet
        self._metrics = metrics
        self._engine = engine
        self._streams = streams
        self._runs = runs
        self._sessions = sessions
        self._tunnels = tunnels
        self._cert_ttl = cert_ttl
        self._clock_ms = clock_ms
        self._approvers = approvers
        self._audit = audit
        self._presence = presence
        self._decoder = SampleDecoder()  # used on the store writer only (in the group commit)
        self._agents: GroupCall[str, AgentRecord | None] = GroupCall(
            db, db.store.get_agents, "agent-lookups"
        )
        self._hellos: GroupCall[HelloRecord, int | None] = GroupCall(
            db,
            functools.partial(
                db.store.record_hellos, replica=presence.replica if presence else None
            ),
            "hello-group",
        )

    async def _find_agent(self, agent_id: str) -> AgentRecord | None:
        """The agent record behind a verified certificate (lookups of agents connecting
        together share one read)."""
        return await self._agents.submit(agent_id)

    async def Connect(
        self,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[agent_pb2.CollectorMessage]:
        try:
            agent = await authenticate_agent(context, self._find_agent)
        except CollectorError:
            self._metrics.rejected.labels("identity").inc()
            raise
        try:
            hello = await self._receive_hello(request_iterator)
        except InvalidRequest:
            self._metrics.rejected.labels("protocol").inc()
            raise
        async for reply in self._serve(agent, hello, request_iterator, context):
            yield reply

    async def _serve(
        self,
        agent: AgentRecord,
        hello: agent_pb2.Hello,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[agent_pb2.CollectorMessage]:
        now = self._clock_ms()
        hostname = hello.hostname.strip()[:253] or agent.hostname
        approval = hello.session_approval if hello.session_approval in SESSION_APPROVALS else ""
        last = await self._hellos.submit(
            HelloRecord(
                agent.agent_id,
                hostname,
                hello.agent_version[:64],
                now,
                approval or "disabled",
                _approval_root(hello.approval_root),
            )
        )
        if last is None:
            raise UnknownAgent(agent.agent_id)
        self._fleet.connected(agent, hostname, hello.agent_version[:64], now)
        host = HostRef(agent.agent_id, agent.customer, hostname)
        self._engine.seen(host, now)
        self._metrics.streams.inc()
        log.info(
            "agent %s (%s/%s) connected from %s",
            agent.agent_id,
            agent.customer,
            hostname,
            context.peer(),
        )
        stream = self._streams.open(agent.agent_id)
        pending: asyncio.Queue[_Pending | None] = asyncio.Queue(MAX_PIPELINED)
        reader = asyncio.create_task(self._read(host, request_iterator, stream, pending))
        acker = asyncio.create_task(self._acknowledge(host, stream, pending))
        try:
            yield agent_pb2.CollectorMessage(
                welcome=agent_pb2.Welcome(
                    agent_id=agent.agent_id, customer=agent.customer, last_sequence=last
                )
            )
            revocations = await self._approvers.revocations_message(agent.customer)
            if revocations is not None:
                yield revocations
            await self._sessions.agent_connected(agent.agent_id)
            if self._presence is not None:
                await self._presence.agent_connected(agent.agent_id)
            if self._audit is not None and AUDIT_WITNESS in hello.capabilities:
                await self._audit.agent_connected(
                    agent.agent_id, hello.audit_checkpoint_count, hello.audit_checkpoint_head
                )
            while (outgoing := await stream.outbound.get()) is not None:
                yield outgoing
            if stream.ended is not None:  # cut off by the collector (revoked)
                log.warning("ending the stream of agent %s: %s", agent.agent_id, stream.ended)
                raise stream.ended
            failed = await acker
            if failed is not None:  # the store refused a batch: end the stream, unacked
                raise failed
            error = await reader
            if error is not None:
                self._metrics.rejected.labels("protocol").inc()
                raise error
        finally:
            reader.cancel()
            acker.cancel()
            self._streams.close(stream)
            if self._audit is not None and not self._streams.connected(agent.agent_id):
                self._audit.agent_disconnected(agent.agent_id)
            if self._presence is not None and not self._streams.connected(agent.agent_id):
                self._presence.agent_disconnected(agent.agent_id)
            self._metrics.streams.dec()
            self._fleet.disconnected(agent.agent_id, self._clock_ms())
            log.info("agent %s disconnected", agent.agent_id)

    async def _receive_hello(
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage]
    ) -> agent_pb2.Hello:
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT_SECONDS)
        except (StopAsyncIteration, TimeoutError) as exc:
            raise InvalidRequest("the stream must start with a Hello message") from exc
        if first.WhichOneof("kind") != "hello":
            raise InvalidRequest("the stream must start with a Hello message")
        return first.hello

    async def _read(
        self,
        host: HostRef,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        stream: OpenStream,
        pending: asyncio.Queue[_Pending | None],
    ) -> InvalidRequest | None:
        """Handle every agent message: batches go to the group commit and their acks
        wait in ``pending``; gaps are stored here (rare). Returns the error that ends
        the stream; ``None`` on ``pending`` tells the acknowledger it has all."""
        try:
            async for message in request_iterator:
                if stream.ended is not None:  # cut off: store and acknowledge nothing more
                    return None
                item = await self._handle(host, message)
                if item is not None:
                    await pending.put(item)
        except InvalidRequest as exc:
            return exc
        finally:
            await pending.put(None)
        return None

    async def _acknowledge(
        self, host: HostRef, stream: OpenStream, pending: asyncio.Queue[_Pending | None]
    ) -> CollectorError | None:
        """Ack each batch or gap once durable, in arrival order; then end the outbound
        queue. Returns the store's error if a batch could not be stored."""
        try:
            while (item := await pending.get()) is not None:
                duplicate = not item.stored
                if item.outcome is not None:
                    outcome = await item.outcome
                    if outcome.error is not None:
                        log.warning(
                            "batch of agent %s not stored: %s", host.agent_id, outcome.error
                        )
                        if isinstance(outcome.error, CollectorError):
                            return outcome.error
                        raise outcome.error
                    duplicate = not outcome.stored
                    self._observe(host, item, outcome)
                if stream.ended is not None:
                    continue
                self._metrics.ack_latency.observe(time.perf_counter() - item.started)
                stream.outbound.put_nowait(
                    agent_pb2.CollectorMessage(
                        ack=agent_pb2.Ack(sequence=item.sequence, duplicate=duplicate)
                    )
                )
            return None
        finally:
            stream.outbound.put_nowait(None)

    def _observe(self, host: HostRef, item: _Pending, outcome: BatchOutcome) -> None:
        """Count the batch and show a stored one to the fleet view and the rules."""
        now = self._clock_ms()
        self._metrics.batches.labels("stored" if outcome.stored else "duplicate").inc()
        if outcome.stored:
            samples = outcome.samples  # a compact SampleRow: the fleet keeps it as it is
            self._metrics.samples.inc(len(samples))
            self._fleet.observed(host.agent_id, item.collected_ms, samples, now)
            self._engine.observe(host, item.collected_ms, samples)
        else:
            self._engine.seen(host, now)

    async def _handle(self, host: HostRef, message: agent_pb2.AgentMessage) -> _Pending | None:
        """Queue a batch for storage or store a gap, returning what its ack waits for;
        hand run, session and audit messages to their services."""
        started = time.perf_counter()
        kind = message.WhichOneof("kind")
        if kind == "batch":
            return self._submit_batch(host, message.batch, started)
        if kind == "gap":
            stored = await self._store_gap(host, message.gap)
            return _Pending(message.gap.sequence, started, 0, None, stored)
        if kind in RUN_MESSAGES:
            await self._runs.on_agent_message(host, message)
        elif kind == "session_approval":
            await self._sessions.on_agent_message(host, message)
        elif kind == "audit_witness":
            if self._audit is not None:
                self._audit.on_witness(host.agent_id, message.audit_witness)
        else:
            raise InvalidRequest(
                f"unknown or empty message type {kind!r} on the agent stream; "
                "the agent may be newer than this collector"
            )
        return None

    def _submit_batch(
        self, host: HostRef, batch: agent_pb2.MetricBatch, started: float
    ) -> _Pending:
        """Check the batch and queue it for the next group commit (decoded there only
        if its sequence is new)."""
        _check_batch(batch)
        incoming = IncomingBatch(
            host.agent_id,
            batch.sequence,
            batch.collected_unix_ms,
            self._clock_ms(),
            lambda: self._decoder.decode(batch, host.agent_id),
        )
        outcome = self._committer.submit(incoming, len(batch.samples))
        return _Pending(batch.sequence, started, batch.collected_unix_ms, outcome, False)

    async def _store_gap(self, host: HostRef, gap: agent_pb2.Gap) -> bool:
        _check_gap(gap)
        record = GapRecord(
            sequence=gap.sequence,
            first_lost_sequence=gap.first_lost_sequence,
            last_lost_sequence=gap.last_lost_sequence,
            lost_batches=gap.lost_batches,
            start_ms=gap.start_unix_ms,
            end_ms=gap.end_unix_ms,
            reason=gap.reason[:MAX_LABEL_TEXT],
            reported_ms=self._clock_ms(),
        )
        stored = await self._db.call(self._db.store.store_gap, host.agent_id, record)
        if stored:
            self._metrics.gaps.inc()
            self._metrics.lost_batches.inc(gap.lost_batches)
            log.warning(
                "agent %s lost %d batches (%s)", host.agent_id, gap.lost_batches, gap.reason
            )
        return bool(stored)

    async def Tunnel(  # type: ignore[override]  # reader/writer style: returns no iterator
        self,
        request_iterator: AsyncIterator[agent_pb2.TunnelFrame],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """Attach the agent's tunnel to the gateway connection waiting for it; serve
        until either side closes it."""
        try:
            agent = await authenticate_agent(context, self._find_agent)
            first = await asyncio.wait_for(context.read(), HELLO_TIMEOUT_SECONDS)
            if not isinstance(first, agent_pb2.TunnelFrame) or first.WhichOneof("kind") != "attach":
                raise InvalidRequest("a tunnel must start with a TunnelAttach frame")
            tunnel = self._tunnels.attach(agent.agent_id, first.attach, context)
        except TimeoutError as exc:
            raise InvalidRequest("no TunnelAttach frame in time") from exc

        def rpc_done(_: grpc.aio.ServicerContext[Any, Any]) -> None:
            tunnel.close()

        context.add_done_callback(rpc_done)  # type: ignore[arg-type]  # stub: plain callable
        try:
            await tunnel.closed.wait()
        finally:
            self._tunnels.detach(agent.agent_id, tunnel)

    async def RenewCertificate(
        self, request: agent_pb2.RenewRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_pb2.RenewResponse:
        agent = await authenticate_agent(context, self._find_agent)
        issued = self._ca.sign_agent_csr(
            request.csr_pem, agent.agent_id, agent.customer, self._cert_ttl
        )
        not_after_ms = int(issued.not_after.timestamp() * 1000)
        await self._db.call(
            self._db.store.update_agent_certificate, agent.agent_id, issued.serial_hex, not_after_ms
        )
        await self._db.call(
            self._db.store.append_audit,
            f"agent:{agent.agent_id}",
            "agent.certificate_renewed",
            agent.agent_id,
            {"serial": issued.serial_hex},
            self._clock_ms(),
        )
        return agent_pb2.RenewResponse(
            certificate_pem=issued.cert_pem, certificate_not_after_unix_ms=not_after_ms
        )


@dataclass(frozen=True)
class _Pending:
    """A batch or gap waiting for its ack: ``outcome`` (a batch's group commit) or,
    for a gap stored already, ``stored``."""

    sequence: int
    started: float  # perf_counter when it arrived
    collected_ms: int
    outcome: asyncio.Future[BatchOutcome] | None
    stored: bool


def _approval_root(text: str) -> str:
    """The pinned root's fingerprint from the hello; "" if none (or not a fingerprint,
    logged: the host then gets no signed-approval handling from the collector)."""
    if not text:
        return ""
    try:
        return parse_fingerprint(text)
    except FormatError:
        log.warning("agent sent an approval root that is not a fingerprint: %.80r", text)
        return ""


def _check_gap(gap: agent_pb2.Gap) -> None:
    """Refuse gaps that cannot be right (InvalidRequest names the problem)."""
    if gap.sequence == 0 or gap.last_lost_sequence < gap.first_lost_sequence:
        raise InvalidRequest("gap with an invalid sequence range")
    for name in ("sequence", "first_lost_sequence", "last_lost_sequence", "lost_batches"):
        _check_range(f"gap.{name}", getattr(gap, name), 0, MAX_SEQUENCE)
    for name in ("start_unix_ms", "end_unix_ms"):
        _check_range(f"gap.{name}", getattr(gap, name), 0, MAX_UNIX_MS)


def _check_batch(batch: agent_pb2.MetricBatch) -> None:
    """Refuse batches that cannot be right (InvalidRequest names the problem). Sample
    names are checked by the decoder, once per series (``SampleDecoder``)."""
    if batch.sequence == 0:
        raise InvalidRequest("batch without a sequence number")
    _check_range("batch.sequence", batch.sequence, 1, MAX_SEQUENCE)
    _check_range("batch.collected_unix_ms", batch.collected_unix_ms, 0, MAX_UNIX_MS)
    if len(batch.samples) > MAX_SAMPLES_PER_BATCH:
        raise InvalidRequest(
            f"batch has {len(batch.samples)} samples (max {MAX_SAMPLES_PER_BATCH})"
        )


def _check_range(field: str, value: int, low: int, high: int) -> None:
    """InvalidRequest naming ``field`` unless ``low <= value <= high``."""
    if not low <= value <= high:
        raise InvalidRequest(f"{field} = {value} is out of range ({low}..{high})")
