"""Routing between replicas, in one process: two "replicas" (their own streams, fleet,
presence and router) on one real SQLite store file, with a fake clock. The end-to-end
test on PostgreSQL is tests/e2e/test_replica_routing.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collector.auth import Principal
from collector.errors import NotFound
from collector.fleet import Fleet
from collector.pki import (
    REPLICA_NAME,
    REPLICA_UNIT,
    CertificateAuthority,
    is_replica_certificate,
)
from collector.portal.run_pages import follow_events
from collector.presence import HEARTBEAT_INTERVALS, Presence
from collector.rules import HostRef
from collector.runs.catalogue import load_catalogue
from collector.runs.model import OutputPiece, RunRecord
from collector.runs.service import RunService
from collector.server.agent_outbox import AgentRouter
from collector.server.streams import Streams
from collector.shared_files import SharedFiles
from collector.store import AgentRecord, open_store
from collector.store.writer import StoreThread
from playbooks.shipped import catalogue_dir
from proto import agent_pb2
from tests.fakes import FakeClock

INTERVAL_MS = 1000
AGENT = AgentRecord("ag-1", "acme", "web-1", 0, "01", 10**13)
ERIN = Principal("erin", "engineer")


class Wakeups:
    """The in-process stand-in for PostgreSQL NOTIFY: one event shared by both replicas."""

    def __init__(self) -> None:
        self.woken = asyncio.Event()
        self.sent = 0

    async def notify(self) -> None:
        self.sent += 1
        self.woken.set()


class Replica:
    def __init__(
        self, name: str, store: Path, root: Path, clock: FakeClock[int], wakeups: Wakeups
    ) -> None:
        """``store``: the shared store's directory; ``root``: this replica's data dir."""
        self.root = root
        self.db = StoreThread(open_store(store))
        self.streams = Streams()
        self.fleet = Fleet()
        self.presence = Presence(
            self.db, self.fleet, name, f"{name}:7450", INTERVAL_MS, clock, self.streams.agent_ids
        )
        self.router = AgentRouter(
            self.db, self.streams, self.presence, wakeups, clock, INTERVAL_MS, max_age_ms=60_000
        )
        self.files = SharedFiles(self.db, root, clock)
        self.runs = RunService(
            self.db,
            load_catalogue(catalogue_dir()),
            self.streams.send,
            root / "runs",
            clock,
            forward=self.router.send,
            files=self.files,
        )

    async def connect(self, agent_id: str) -> asyncio.Queue[agent_pb2.CollectorMessage | None]:
        stream = self.streams.open(agent_id)
        await self.presence.agent_connected(agent_id)
        await self.router.drain([agent_id])
        return stream.outbound


@pytest.fixture
def clock() -> FakeClock[int]:
    return FakeClock(1_700_000_000_000)


@pytest.fixture
def pair(tmp_path: Path, clock: FakeClock[int]) -> Iterator[tuple[Replica, Replica, Wakeups]]:
    wakeups = Wakeups()
    a = Replica("a", tmp_path / "store", tmp_path / "a", clock, wakeups)
    a.db.store.add_agent(AGENT)
    b = Replica("b", tmp_path / "store", tmp_path / "b", clock, wakeups)
    yield a, b, wakeups
    for replica in (a, b):
        replica.db.close()


def enrol(replica: Replica, prefix: str, count: int) -> list[str]:
    """Add ``count`` agents named ``{prefix}-{n}`` to the shared store; their ids."""
    agents = [f"{prefix}-{n}" for n in range(count)]
    for agent_id in agents:
        replica.db.store.add_agent(AgentRecord(agent_id, "acme", agent_id, 0, "s", 2**62))
    return agents


def message(text: str) -> agent_pb2.CollectorMessage:
    return agent_pb2.CollectorMessage(session_close=agent_pb2.SessionClose(session_id=text))


def test_b_sees_an_agent_on_a_as_connected_until_a_stops_beating(
    pair: tuple[Replica, Replica, Wakeups], clock: FakeClock[int]
) -> None:
    a, b, _ = pair

    async def scenario() -> None:
        await a.presence.beat()
        await a.connect("ag-1")
        await b.presence.beat()
        state = b.fleet.get("ag-1")  # b started before the agent enrolled: loaded now
        assert state is not None and state.connected and state.connections == 0
        clock.advance(HEARTBEAT_INTERVALS * INTERVAL_MS)  # a was killed: no more beats
        await b.presence.beat()
        state = b.fleet.get("ag-1")
        assert state is not None and not state.connected

    asyncio.run(scenario())


def test_hosts_enrolled_since_the_last_beat_are_loaded_with_one_read(
    pair: tuple[Replica, Replica, Wakeups],
) -> None:
    a, b, _ = pair
    agents = enrol(a, "ag-new", 40)
    calls: list[str] = []
    b.db.observe = lambda call, seconds: calls.append(call)

    async def scenario() -> None:
        await a.presence.beat()
        for agent_id in agents:
            await a.presence.agent_connected(agent_id)
        await b.presence.beat()

    asyncio.run(scenario())
    assert calls.count("get_agents") == 1 and "get_agent" not in calls
    for agent_id in agents:
        state = b.fleet.get(agent_id)
        assert state is not None and state.connected and state.hostname == agent_id


def test_streams_ending_together_release_their_agents_in_one_transaction(
    pair: tuple[Replica, Replica, Wakeups], clock: FakeClock[int]
) -> None:
    a, _, _ = pair
    agents = enrol(a, "ag-many", 20)

    async def scenario() -> None:
        await a.presence.beat()
        for agent_id in agents:
            await a.presence.agent_connected(agent_id)
        await asyncio.gather(*(a.presence.agent_disconnected(agent_id) for agent_id in agents))
        assert a.presence._releases.groups <= 2  # the first alone, the rest together
        now = clock()
        assert not {loc.agent_id for loc in a.db.store.live_presence(now)} & set(agents)

    asyncio.run(scenario())


def test_a_message_sent_on_b_reaches_the_agent_on_a_once(
    pair: tuple[Replica, Replica, Wakeups],
) -> None:
    a, b, wakeups = pair

    async def scenario() -> None:
        await a.presence.beat()
        outbound = await a.connect("ag-1")
        assert await b.router.send("ag-1", message("s-1")) is True
        assert wakeups.sent == 1 and outbound.empty()
        assert await a.router.drain() == 1
        assert outbound.get_nowait() == message("s-1")
        assert await a.router.drain() == 0 and await b.router.drain() == 0  # handed out once

    asyncio.run(scenario())


def test_agents_connecting_together_get_their_messages_from_one_outbox_read(
    pair: tuple[Replica, Replica, Wakeups],
) -> None:
    a, b, _ = pair
    agents = enrol(a, "ag-storm", 30)

    async def connect_on_a(agent_id: str) -> asyncio.Queue[agent_pb2.CollectorMessage | None]:
        stream = a.streams.open(agent_id)
        await a.presence.agent_connected(agent_id)
        return stream.outbound

    async def scenario() -> None:
        await a.presence.beat()
        for agent_id in agents:  # they were on a; each has a message from b waiting
            a.streams.close(a.streams.open(agent_id))
            await a.presence.agent_connected(agent_id)
            assert await b.router.send(agent_id, message(f"s-{agent_id}")) is True
        outbound = await asyncio.gather(*(connect_on_a(agent_id) for agent_id in agents))
        before = a.router.drains
        await asyncio.gather(*(a.router.drain_connected(agent_id) for agent_id in agents))
        assert a.router.drains - before <= 2  # the first alone, the rest together
        for agent_id, queue in zip(agents, outbound, strict=True):
            assert queue.get_nowait() == message(f"s-{agent_id}") and queue.empty()
        assert await a.router.drain() == 0  # each handed out once

    asyncio.run(scenario())


def test_nothing_is_queued_for_an_agent_no_live_replica_holds(
    pair: tuple[Replica, Replica, Wakeups], clock: FakeClock[int]
) -> None:
    a, b, wakeups = pair

    async def scenario() -> None:
        assert await b.router.send("ag-1", message("s-1")) is False  # never connected
        await a.presence.beat()
        await a.connect("ag-1")
        clock.advance(HEARTBEAT_INTERVALS * INTERVAL_MS)  # a died
        assert await b.router.send("ag-1", message("s-2")) is False
        assert wakeups.sent == 0
        assert b.db.store.take_agent_messages(["ag-1"], 0) == []

    asyncio.run(scenario())


def test_a_message_waits_for_the_agent_to_reconnect_to_another_replica(
    pair: tuple[Replica, Replica, Wakeups],
) -> None:
    a, b, _ = pair

    async def scenario() -> None:
        await a.presence.beat()
        await b.presence.beat()
        stream = a.streams.open("ag-1")
        await a.presence.agent_connected("ag-1")
        assert await b.router.send("ag-1", message("s-1")) is True
        a.streams.close(stream)  # the agent left a before a drained its outbox
        assert await a.router.drain(["ag-1"]) == 0  # put back, not lost
        outbound = await b.connect("ag-1")  # it reconnected to b: b hands it over
        assert outbound.get_nowait() == message("s-1")

    asyncio.run(scenario())


def test_stale_messages_are_dropped(
    pair: tuple[Replica, Replica, Wakeups], clock: FakeClock[int]
) -> None:
    a, b, _ = pair

    async def scenario() -> None:
        await a.presence.beat()
        await b.presence.beat()
        await a.connect("ag-1")
        assert await b.router.send("ag-1", message("old")) is True
        clock.advance(60_001)
        await a.presence.beat()
        assert await a.router.drain() == 0

    asyncio.run(scenario())


def test_a_run_started_on_b_runs_on_a_and_b_follows_it_to_its_output(
    pair: tuple[Replica, Replica, Wakeups], clock: FakeClock[int]
) -> None:
    a, b, _ = pair

    async def scenario() -> None:
        await a.presence.beat()
        outbound = await a.connect("ag-1")
        run = await b.runs.start("user:erin", AGENT, "cpu-load", {}, None)
        assert run.state == "sent"
        await a.router.drain()
        request = outbound.get_nowait()
        assert request is not None and request.run_request.run_id == run.run_id

        followed: list[object] = []

        async def follow() -> None:
            async for item in b.runs.follow(ERIN, run.run_id):
                followed.append(item)

        follower = asyncio.create_task(follow())
        while not followed and not follower.done():  # b has read the run as "sent" first
            await asyncio.sleep(0.01)
        host = HostRef("ag-1", "acme", "web-1")
        chunk = agent_pb2.RunOutput(run_id=run.run_id, step="top", data=b"load 0.42\n")
        await a.runs.on_agent_message(host, agent_pb2.AgentMessage(run_output=chunk))
        clock.advance(10)
        result = agent_pb2.RunResult(run_id=run.run_id, status="ok", duration_ms=5)
        await a.runs.on_agent_message(host, agent_pb2.AgentMessage(run_result=result))
        await asyncio.wait_for(follower, 10)  # b polls the store: within a poll interval

        outputs = [i.data for i in followed if isinstance(i, agent_pb2.RunOutput | OutputPiece)]
        states = [i.state for i in followed if isinstance(i, RunRecord)]
        assert outputs == [b"load 0.42\n"] and states[0] == "sent" and states[-1] == "ok"
        assert await b.runs.read_output(run.run_id) == (b"load 0.42\n", False)
        assert (a.root / "runs" / f"{run.run_id}.out").exists()
        assert not (b.root / "runs" / f"{run.run_id}.out").exists()  # b read the store's copy
        assert await b.runs.read_step_outputs(run.run_id) == {"top": b"load 0.42\n"}
        stored = b.db.store.get_shared_file(f"runs/{run.run_id}.out")
        assert stored == b"load 0.42\n"
        finished = await b.runs.get(ERIN, run.run_id)
        assert finished.output_sha256 == hashlib.sha256(b"load 0.42\n").hexdigest()

    asyncio.run(scenario())


def test_only_replica_certificates_carry_the_replica_mark() -> None:
    ca = CertificateAuthority.create()
    hour = dt.timedelta(hours=1)
    replica_pem, _ = ca.issue_replica_certificate("host:1:ab", hour)
    server_pem, _ = ca.issue_server_certificate([REPLICA_NAME], hour)
    assert is_replica_certificate(replica_pem)
    assert not is_replica_certificate(server_pem)
    assert not is_replica_certificate(b"not a certificate")
    # an agent whose CSR claims to be a replica: the CA never copies a CSR's subject
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "replica:evil"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, REPLICA_UNIT),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    agent = ca.sign_agent_csr(csr.public_bytes(serialization.Encoding.PEM), "ag-9", "acme", hour)
    assert not is_replica_certificate(agent.cert_pem)


def relayed_follower(b: Replica, a: Replica, pieces_kept: int | None = None) -> RunService:
    """B's run service, its live output relayed in process from A's ``output_pieces``
    (the gRPC relay itself: tests/e2e/test_replica_routing.py); ``pieces_kept``: the
    relay breaks after that many pieces."""

    async def remote(agent_id: str, run_id: str, offset: int) -> AsyncIterator[OutputPiece]:
        count = 0
        async for piece in a.runs.output_pieces(run_id, offset):
            if pieces_kept is not None and count >= pieces_kept:
                return
            count += 1
            yield piece

    async def remote_output(
        agent_id: str, run_id: str, offset: int
    ) -> AsyncIterator[OutputPiece] | None:
        return remote(agent_id, run_id, offset)

    return RunService(
        b.db,
        load_catalogue(catalogue_dir()),
        b.streams.send,
        b.root / "runs",
        b.runs._clock_ms,
        forward=b.router.send,
        files=b.files,
        remote_output=remote_output,
    )


async def _start_on_b_run_on_a(a: Replica, b: RunService) -> RunRecord:
    await a.presence.beat()
    await a.connect("ag-1")
    run = await b.start("user:erin", AGENT, "cpu-load", {}, None)
    await a.router.drain()
    return run


@pytest.mark.parametrize("pieces_kept", [None, 1])
def test_b_shows_output_of_a_run_on_a_live_and_each_byte_once(
    pair: tuple[Replica, Replica, Wakeups], clock: FakeClock[int], pieces_kept: int | None
) -> None:
    """The first chunk reaches B's follower before the run finishes; whether the relay
    lasts (None) or breaks after one piece (1), the output ends up complete, once."""
    a, b, _ = pair
    follower_b = relayed_follower(b, a, pieces_kept)
    host = HostRef("ag-1", "acme", "web-1")

    async def scenario() -> None:
        run = await _start_on_b_run_on_a(a, follower_b)
        seen: asyncio.Queue[object] = asyncio.Queue()

        async def follow() -> None:
            async for item in follower_b.follow(ERIN, run.run_id):
                seen.put_nowait(item)

        follower = asyncio.create_task(follow())
        first = await asyncio.wait_for(seen.get(), 5)
        assert isinstance(first, RunRecord)
        for step, data in (("top", b"load 0.42\n"), ("top", b"load 0.43\n"), ("df", b"/ 12%\n")):
            chunk = agent_pb2.RunOutput(run_id=run.run_id, step=step, data=data)
            await a.runs.on_agent_message(host, agent_pb2.AgentMessage(run_output=chunk))
            if data == b"load 0.42\n":  # live: the run has not finished, so no shared copy
                item = await asyncio.wait_for(seen.get(), 5)
                assert isinstance(item, OutputPiece) and item.data == b"load 0.42\n"
                assert item.step == "top" and item.offset == 0
        result = agent_pb2.RunResult(run_id=run.run_id, status="ok", duration_ms=5)
        await a.runs.on_agent_message(host, agent_pb2.AgentMessage(run_result=result))
        await asyncio.wait_for(follower, 10)
        items = [first, item]
        while not seen.empty():
            items.append(seen.get_nowait())
        pieces = [i for i in items if isinstance(i, OutputPiece)]
        assert b"".join(p.data for p in pieces) == b"load 0.42\nload 0.43\n/ 12%\n"
        assert [p.offset for p in pieces] == sorted({p.offset for p in pieces})
        assert pieces[-1].step == "df"
        last = items[-1]
        assert isinstance(last, RunRecord) and last.state == "ok"

    asyncio.run(scenario())


def test_a_relay_asked_for_an_unknown_run_refuses_it(
    pair: tuple[Replica, Replica, Wakeups],
) -> None:
    a, _, _ = pair

    async def scenario() -> None:
        with pytest.raises(NotFound):
            async for _ in a.runs.output_pieces("run-nope", 0):
                pass

    asyncio.run(scenario())


def test_the_portal_on_b_shows_a_run_on_a_live_from_its_offset(
    pair: tuple[Replica, Replica, Wakeups], clock: FakeClock[int]
) -> None:
    """/runs/ID/live on B (``follow_events``): relayed output from the browser's byte
    offset on (a reload with ?from=N gets nothing twice), then done."""
    a, b, _ = pair
    follower_b = relayed_follower(b, a)
    host = HostRef("ag-1", "acme", "web-1")

    async def scenario() -> None:
        run = await _start_on_b_run_on_a(a, follower_b)
        chunk = agent_pb2.RunOutput(run_id=run.run_id, step="top", data=b"seen-before\n")
        await a.runs.on_agent_message(host, agent_pb2.AgentMessage(run_output=chunk))
        messages: asyncio.Queue[str] = asyncio.Queue()

        async def watch() -> None:
            async for message in follow_events(follower_b, ERIN, run.run_id, len(b"seen-")):
                messages.put_nowait(message)

        watcher = asyncio.create_task(watch())
        first = await asyncio.wait_for(messages.get(), 5)
        assert first.startswith("event: state")  # the run as it stands
        first = await asyncio.wait_for(messages.get(), 5)
        assert first.startswith("event: output") and '"before\\n"' in first, first
        chunk = agent_pb2.RunOutput(run_id=run.run_id, step="top", data=b"live-line\n")
        await a.runs.on_agent_message(host, agent_pb2.AgentMessage(run_output=chunk))
        live = await asyncio.wait_for(messages.get(), 5)  # the run has not finished yet
        assert '"live-line\\n"' in live, live
        result = agent_pb2.RunResult(run_id=run.run_id, status="ok", duration_ms=5)
        await a.runs.on_agent_message(host, agent_pb2.AgentMessage(run_result=result))
        await asyncio.wait_for(watcher, 10)
        rest = []
        while not messages.empty():
            rest.append(messages.get_nowait())
        assert not any(m.startswith("event: output") for m in rest), rest
        assert rest[-1].startswith("event: done"), rest

    asyncio.run(scenario())
