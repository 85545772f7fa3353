"""A breached collector against a real agent process: it can ask, but it cannot consent.

The attacker holds the collector's data directory (its CA and server key), so the
real agent connects to the attacker's server over mutual TLS exactly as it would to
the real collector. The fake ``AgentStream`` sends signed playbook runs with forged
or mismatched approvals and a login nobody approved. The host pins the customer's
approval root (``enroll --approver-root``): each attempt is refused with the precise
reason, reported to the (fake) collector, written to the host's own ``runs.log`` /
``sessions.log``, and nothing runs (marker files). A genuinely signed approval of a
run and of a login then works, so the refusals are not a broken setup.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import text_format

from common.approval_format import RunSubject, SessionSubject
from playbooks.sign import sign_catalogue
from playbooks.signing_keys import generate_keypair
from proto import agent_pb2
from tests.consent_support import CustomerRoot, now_ms
from tests.support import Agent, Collector

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CUSTOMER = "acme"
SERVICE = "aftercare.v1.AgentStream"
WAIT = 20.0  # seconds for any one reaction of the agent

MARKER_PLAYBOOK = """name: touch-marker
version: 1.0.0
description: A mutating playbook for tests (creates a marker file).
mode: mutating
parameters:
  - name: word
    type: string
    required: true
    pattern: "[a-z]+"
steps:
  - name: touch
    exec:
      argv: ["touch", "{marker}"]
  - name: echo
    exec:
      argv: ["echo", "{{{{ word }}}}"]
"""

POLICY = """[defaults]
approval = "signed"

[sessions]
approval = "signed"
"""

Frame = agent_pb2.TunnelFrame
Context = grpc.aio.ServicerContext[Any, Any]


# -- the attacker's collector ------------------------------------------------------------


@dataclass
class TunnelRecord:
    """One Tunnel RPC the agent opened: its attach and every frame it sent after it."""

    attach: agent_pb2.TunnelAttach
    frames: list[Frame] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [str(f.WhichOneof("kind")) for f in self.frames]

    def end_reason(self) -> str | None:
        return next((f.end.reason for f in self.frames if f.WhichOneof("kind") == "end"), None)


class FakeCollector:
    """An ``AgentStream`` server with the stolen key: welcomes, acks, then sends a script.

    ``received`` holds everything the agent sent on the control stream except batches
    and gaps (those are only acknowledged). ``commands`` maps a tunnel id to the exec
    command this server tries once the agent attaches that tunnel.
    """

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.hellos: list[agent_pb2.Hello] = []
        self.received: list[agent_pb2.AgentMessage] = []
        self.acked = 0
        self.commands: dict[str, str] = {}
        self.tunnels: dict[str, TunnelRecord] = {}
        self._outgoing: asyncio.Queue[agent_pb2.CollectorMessage] | None = None

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        connect = grpc.stream_stream_rpc_method_handler(
            self._connect,
            request_deserializer=agent_pb2.AgentMessage.FromString,
            response_serializer=agent_pb2.CollectorMessage.SerializeToString,
        )
        tunnel = grpc.stream_stream_rpc_method_handler(
            self._tunnel,
            request_deserializer=Frame.FromString,
            response_serializer=Frame.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE, {"Connect": connect, "Tunnel": tunnel})

    @property
    def connected(self) -> bool:
        return self._outgoing is not None

    def send(self, **kind: Any) -> None:
        """Send one ``CollectorMessage(**kind)`` on the agent's current control stream."""
        assert self._outgoing is not None, "the agent is not connected"
        self._outgoing.put_nowait(agent_pb2.CollectorMessage(**kind))

    async def _connect(self, request_iterator: AsyncIterator[Any], context: Context) -> None:
        first = await context.read()
        assert isinstance(first, agent_pb2.AgentMessage) and first.WhichOneof("kind") == "hello"
        self.hellos.append(first.hello)
        welcome = agent_pb2.Welcome(agent_id=self.agent_id, customer=CUSTOMER, last_sequence=0)
        await context.write(agent_pb2.CollectorMessage(welcome=welcome))
        outgoing: asyncio.Queue[agent_pb2.CollectorMessage] = asyncio.Queue()
        self._outgoing = outgoing

        async def writer() -> None:
            while True:
                await context.write(await outgoing.get())

        writing = asyncio.create_task(writer())
        try:
            while not writing.done():
                message = await context.read()
                if not isinstance(message, agent_pb2.AgentMessage):
                    return  # the agent ended the stream
                kind = message.WhichOneof("kind")
                if kind in ("batch", "gap"):
                    sequence = getattr(message, str(kind)).sequence
                    outgoing.put_nowait(
                        agent_pb2.CollectorMessage(ack=agent_pb2.Ack(sequence=sequence))
                    )
                    self.acked += 1
                else:
                    self.received.append(message)
        finally:
            if self._outgoing is outgoing:
                self._outgoing = None
            writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)

    async def _tunnel(self, request_iterator: AsyncIterator[Any], context: Context) -> None:
        first = await context.read()
        assert isinstance(first, Frame) and first.WhichOneof("kind") == "attach", first
        record = TunnelRecord(first.attach)
        self.tunnels[first.attach.tunnel_id] = record
        command = self.commands.get(first.attach.tunnel_id)
        if command:
            with contextlib.suppress(Exception):  # the agent may have ended the tunnel already
                opening = agent_pb2.ChannelOpen(channel=1, kind="exec", command=command)
                await context.write(Frame(open=opening))
        while True:
            frame = await context.read()
            if not isinstance(frame, Frame):
                return  # the agent half-closed: the tunnel is over
            record.frames.append(frame)
            if frame.WhichOneof("kind") in ("end", "close"):
                return  # refused, or the command's channel closed: end the RPC

    # -- what the agent said ---------------------------------------------------------

    def updates(self, run_id: str) -> list[tuple[str, str]]:
        return [
            (m.run_update.state, m.run_update.message)
            for m in self.received
            if m.WhichOneof("kind") == "run_update" and m.run_update.run_id == run_id
        ]

    def result(self, run_id: str) -> agent_pb2.RunResult | None:
        return next(
            (
                m.run_result
                for m in self.received
                if m.WhichOneof("kind") == "run_result" and m.run_result.run_id == run_id
            ),
            None,
        )

    def output(self, run_id: str) -> bytes:
        return b"".join(
            m.run_output.data
            for m in self.received
            if m.WhichOneof("kind") == "run_output" and m.run_output.run_id == run_id
        )


@contextlib.asynccontextmanager
async def stolen_collector(collector: Collector, agent_id: str) -> AsyncIterator[FakeCollector]:
    """The fake collector on the real one's agent port, with its server key, chain and CA."""
    data = collector.data_dir
    credentials = grpc.ssl_server_credentials(
        [((data / "server-key.pem").read_bytes(), (data / "server.pem").read_bytes())],
        root_certificates=(data / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    fake = FakeCollector(agent_id)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([fake.handler()])
    port = server.add_secure_port(collector.agent_address, credentials)
    assert port == collector.agent_port, f"could not bind {collector.agent_address}"
    await server.start()
    try:
        yield fake
    finally:
        await server.stop(None)


# -- helpers -------------------------------------------------------------------------


async def until(predicate: Callable[[], Any], what: str, explain: Callable[[], str]) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT}s waiting for {what}\n{explain()}")
        await asyncio.sleep(0.05)


def one_line(message: Any) -> str:
    return str(text_format.MessageToString(message, as_one_line=True))


def journal(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@dataclass
class Scene:
    """The real agent process, the attacker's collector, and what the playbook needs."""

    agent: Agent
    fake: FakeCollector
    signed_catalogue: tuple[bytes, bytes]
    playbook_yaml: bytes
    run_marker: Path

    def explain(self) -> str:
        """What the agent sent the fake collector, its tunnels and its log: for failures."""
        sent = "\n".join(f"  {one_line(m)}" for m in self.fake.received)
        tunnels = "\n".join(
            f"  {tunnel_id}: {[one_line(f) for f in record.frames]}"
            for tunnel_id, record in self.fake.tunnels.items()
        )
        return (
            f"the agent sent the fake collector ({self.fake.acked} batches acked):\n{sent}\n"
            f"tunnels:\n{tunnels}\n--- agent log (tail) ---\n{self.agent.log_text()[-3000:]}"
        )

    def subject(self, run_id: str, word: str = "hello") -> RunSubject:
        """What an approval of ``run_id`` must bind: this playbook file, these parameters."""
        return RunSubject(
            run_id=run_id,
            playbook="touch-marker",
            version="1.0.0",
            digest="sha256:" + hashlib.sha256(self.playbook_yaml).hexdigest(),
            params={"word": word},
        )

    async def request_run(self, run_id: str) -> None:
        """Send a signed run request for the marker playbook; wait until it awaits approval."""
        manifest, signature = self.signed_catalogue
        request = agent_pb2.RunRequest(
            run_id=run_id,
            playbook="touch-marker",
            params={"word": "hello"},
            manifest=manifest,
            manifest_signature=signature,
            playbook_yaml=self.playbook_yaml,
            requested_by="user:erin",
        )
        self.fake.send(run_request=request)
        await until(
            lambda: any(s == "waiting_approval" for s, _ in self.fake.updates(run_id)),
            f"run {run_id} waiting for approval",
            self.explain,
        )

    async def approve(self, run_id: str, signed: bytes) -> None:
        approval = agent_pb2.RunApproval(
            run_id=run_id,
            approved_by="user:alice",
            expires_unix_ms=now_ms() + 3_600_000,
            signed_approval=signed,
        )
        self.fake.send(run_approval=approval)

    async def refused_run(self, run_id: str, signed: bytes, reason: str) -> None:
        """The run is refused with exactly ``reason``: reported, journaled, nothing ran."""
        await self.request_run(run_id)
        await self.approve(run_id, signed)
        update = await until(
            lambda: (
                next((m for s, m in self.fake.updates(run_id) if s == "refused"), None)
                or self.fake.result(run_id)
            ),
            f"run {run_id} refused",
            self.explain,
        )
        expected = f"approval refused: {reason}"
        got = update if isinstance(update, str) else f"a result, it ran: {one_line(update)}"
        assert got == expected, f"run {run_id}: got {got!r}, expected {expected!r}\n" + (
            self.explain()
        )
        states = [s for s, _ in self.fake.updates(run_id)]
        assert states == ["waiting_approval", "refused"], f"{states}\n{self.explain()}"
        assert self.fake.result(run_id) is None and not self.fake.output(run_id), self.explain()
        assert not self.run_marker.exists(), f"run {run_id} ran after all\n{self.explain()}"
        events = [e for e in journal(self.agent.state_dir / "runs.log") if e["run_id"] == run_id]
        assert [e["event"] for e in events] == [
            "run_received",
            "run_waiting_approval",
            "run_refused",
        ], events
        assert events[-1]["reason"] == expected, events[-1]
        assert events[-1]["playbook"] == "touch-marker"

    async def login(self, opening: agent_pb2.SessionOpen, marker: Path) -> TunnelRecord:
        """Open ``opening``'s tunnel and try ``touch marker`` in it; the tunnel as it ended."""
        self.fake.commands[opening.tunnel_id] = f"touch {marker}"
        self.fake.send(session_open=opening)
        tunnel_id = opening.tunnel_id

        def ended() -> TunnelRecord | None:
            record = self.fake.tunnels.get(tunnel_id)
            if record is not None and set(record.kinds) & {"end", "close"}:
                return record
            return None

        record: TunnelRecord = await until(ended, f"tunnel {tunnel_id} to end", self.explain)
        assert record.attach.session_id == opening.session_id, record.attach
        return record

    async def refused_login(
        self, opening: agent_pb2.SessionOpen, marker: Path, reason: str
    ) -> None:
        """The login is refused with exactly ``reason``: the tunnel's end, the host's
        ``sessions.log``; the exec the collector sent never ran."""
        tunnel = await self.login(opening, marker)
        assert tunnel.end_reason() == reason, (
            f"tunnel {opening.tunnel_id}: got {tunnel.kinds} end={tunnel.end_reason()!r}, "
            f"expected end={reason!r}\n{self.explain()}"
        )
        assert tunnel.kinds == ["end"], f"the agent served the tunnel: {tunnel.kinds}"
        await asyncio.sleep(0.3)  # a command that had started would have touched by now
        assert not marker.exists(), f"the login ran a command after all\n{self.explain()}"
        events = [
            e
            for e in journal(self.agent.state_dir / "sessions.log")
            if e.get("tunnel_id") == opening.tunnel_id
        ]
        assert [e["event"] for e in events] == ["tunnel_refused"], events
        assert events[0]["session_id"] == opening.session_id, events
        assert events[0]["engineer"] == opening.engineer, events
        assert events[0]["reason"] == reason, events


async def attacks(scene: Scene, root: CustomerRoot) -> None:
    """The breached collector's script against the connected agent, then the genuine path."""
    fake, agent, agent_id = scene.fake, scene.agent, scene.fake.agent_id
    tmp_path = agent.state_dir.parent
    alice = root.certify("alice")
    await until(lambda: fake.connected, "the agent to connect", scene.explain)
    [hello] = fake.hellos
    assert hello.approval_root == root.fingerprint, hello
    assert hello.session_approval == "signed" and "sessions" in hello.capabilities, hello

    unsigned = (
        "the approval is not signed by a customer approver; the host's policy requires "
        "a signed approval (aftercare session approve / run approve with an approval "
        "key certified by the customer's root)"
    )
    impostor = CustomerRoot(CUSTOMER)  # the attacker's own "customer root"
    not_pinned = (
        f"the approver certificate is signed by root {impostor.fingerprint}, not by "
        f"the root this host pins ({root.fingerprint})"
    )

    # (a) the collector's word alone: an approval with no signature
    await scene.refused_run("run-0000000000000a1", b"", unsigned)
    # (b) signed by an approver the attacker certified under a root of its own
    run_b = "run-0000000000000b2"
    forged = impostor.certify("alice").approve(agent_id, scene.subject(run_b))
    await scene.refused_run(run_b, forged, not_pinned)
    # (c) alice's genuine approval, but of other parameters
    run_c = "run-0000000000000c3"
    await scene.refused_run(
        run_c,
        alice.approve(agent_id, scene.subject(run_c, word="bye")),
        "the approval does not match this request: params {'word': 'bye'} "
        "(this request: {'word': 'hello'})",
    )

    # (d) a login nobody requested, unsigned: the agent attaches the tunnel, then ends it
    session_marker = tmp_path / "session-marker"
    window_end = now_ms() + 600_000
    opening = agent_pb2.SessionOpen(
        session_id="ses-00000000000d",
        tunnel_id="tun-00000000000d",
        engineer="mallory",
        window_end_unix_ms=window_end,
        approved_by="user:alice",
    )
    await scene.refused_login(opening, session_marker, unsigned)
    # ... and one "approved" under the attacker's own root
    opening = agent_pb2.SessionOpen(
        session_id="ses-0000000000d2",
        tunnel_id="tun-0000000000d2",
        engineer="mallory",
        window_end_unix_ms=window_end,
        approved_by="user:alice",
        signed_approval=impostor.certify("alice").approve(
            agent_id, SessionSubject("ses-0000000000d2", "mallory", window_end)
        ),
    )
    await scene.refused_login(opening, session_marker, not_pinned)

    # (e) the genuine path: alice signs exactly this run -> it runs
    run_e = "run-0000000000000e5"
    await scene.request_run(run_e)
    await scene.approve(run_e, alice.approve(agent_id, scene.subject(run_e)))
    result = await until(lambda: fake.result(run_e), f"run {run_e} result", scene.explain)
    assert result.status == "ok", f"{result}\n{scene.explain()}"
    assert scene.run_marker.exists(), scene.explain()
    assert b"hello" in fake.output(run_e), scene.explain()
    approved = [
        e
        for e in journal(agent.state_dir / "runs.log")
        if e["run_id"] == run_e and e["event"] == "run_approved"
    ]
    assert approved and approved[0]["approved"] == "signed by alice of acme", approved

    # (f) and a login alice signed for erin opens and runs the command
    window_end = now_ms() + 300_000
    opening = agent_pb2.SessionOpen(
        session_id="ses-00000000000f",
        tunnel_id="tun-00000000000f",
        engineer="erin",
        window_end_unix_ms=window_end,
        approved_by="user:alice",
        signed_approval=alice.approve(
            agent_id,
            SessionSubject("ses-00000000000f", "erin", window_end),
            expires_ms=window_end,
        ),
    )
    tunnel = await scene.login(opening, session_marker)
    assert tunnel.kinds[0] == "opened" and tunnel.frames[0].opened.error == "", (
        f"{tunnel.kinds} {tunnel.end_reason()!r}\n{scene.explain()}"
    )
    assert "exit" in tunnel.kinds and session_marker.exists(), scene.explain()
    opened = [e for e in journal(agent.state_dir / "sessions.log") if e["event"] == "tunnel_opened"]
    assert [e["session_id"] for e in opened] == [opening.session_id], opened
    assert opened[0]["approved_by"] == "signed by alice of acme", opened
    assert len(fake.hellos) == 1, "the agent reconnected during the test"


# -- the test ----------------------------------------------------------------------------


def test_a_collector_with_stolen_keys_cannot_consent_for_the_customer(
    tmp_path: Path, collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    started = time.monotonic()
    root = CustomerRoot(CUSTOMER)

    # the vendor's signed catalogue with a mutating playbook that leaves a marker
    private, public = generate_keypair()
    (tmp_path / "vendor.pub").write_bytes(public)
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    run_marker = tmp_path / "run-marker"
    (catalogue / "touch-marker.yaml").write_text(MARKER_PLAYBOOK.format(marker=run_marker))
    signed_catalogue = sign_catalogue(
        catalogue, private, catalogue_version=1, valid_for=dt.timedelta(days=1)
    )
    (tmp_path / "policy.toml").write_text(POLICY)
    (tmp_path / "policy.toml").chmod(0o600)

    # a real enrolment with the real collector, pinning the customer's approval root
    agent = make_agent(
        "web-1",
        playbooks={
            "trusted_keys": [str(tmp_path / "vendor.pub")],
            "policy": str(tmp_path / "policy.toml"),
            "workdir": str(tmp_path),
        },
        sessions={"backend": "pty", "shell": "/bin/sh"},
        stream={"initial_backoff": 0.2, "max_backoff": 1.0},
    )
    enrolled = agent.enroll(
        [*collector.join_command(CUSTOMER), "--approver-root", root.fingerprint]
    )
    assert enrolled.returncode == 0, enrolled.stderr
    assert (agent.state_dir / "approval-root").read_text().strip() == root.fingerprint
    agent_id = agent.agent_id
    collector.stop()  # the attacker walks away with its data directory

    playbook_yaml = (catalogue / "touch-marker.yaml").read_bytes()

    async def breach() -> None:
        async with stolen_collector(collector, agent_id) as fake:
            agent.start()
            try:
                await attacks(Scene(agent, fake, signed_catalogue, playbook_yaml, run_marker), root)
            finally:  # the agent hangs up before the fake server goes
                await asyncio.to_thread(agent.stop)

    asyncio.run(asyncio.wait_for(breach(), 90))
    print(f"breached-collector scenario took {time.monotonic() - started:.1f}s")
