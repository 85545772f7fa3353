"""Sessions wired into the agent: the hello, message dispatch, and a real gRPC Tunnel RPC.

The Tunnel tests run a real grpc.aio server (TLS) on a free port whose ``Tunnel``
handler plays the collector's part; the agent side is the real endpoint with
``GrpcTunnelIO`` on the agent's own gRPC client (``agent.rpc``) and the PTY backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest

from agent.config import AgentConfig, SessionsConfig
from agent.consent.memory import ConsentMemory
from agent.consent.verify import ConsentVerifier
from agent.journal import Journal
from agent.main_loop import dispatch, hello_for, platform_name
from agent.playbook.policy import Policy
from agent.rpc import Channel, client_context
from agent.rpc.channel import TLS_READ_BUFFER
from agent.session.endpoint import SessionEndpoint
from agent.session.recording import CustomerCopy
from agent.session.requests import SessionRequests
from agent.session.setup import EndpointOnFirstMessage, build_backend, build_session_endpoint
from agent.session.tunnel_io import GrpcTunnelIO
from agent.stream import TUNNEL_METHOD, CollectorLink
from collector.pki import CertificateAuthority
from common.approval_format import fingerprint
from proto import agent_pb2
from tests.agent.session_support import SESSION
from tests.consent_support import CustomerRoot

pytestmark = pytest.mark.timeout(60)

Frame = agent_pb2.TunnelFrame


def test_hello_without_sessions_says_disabled() -> None:
    hello = hello_for(AgentConfig())
    assert hello.session_approval == "disabled"
    assert "sessions" not in hello.capabilities


def test_hello_with_a_backend_carries_the_policy_mode() -> None:
    config = AgentConfig(sessions=SessionsConfig(backend="pty"))
    hello = hello_for(config, Policy(session_approval="local"))
    assert hello.session_approval == "local"
    assert "sessions" in hello.capabilities and "metrics" in hello.capabilities
    assert hello_for(config).session_approval == "signed"  # secure by default
    assert hello_for(config, approval_root="sha256:" + "a" * 64).approval_root.endswith("a" * 64)


def test_dispatch_sends_session_messages_to_the_session_endpoint(tmp_path: Path) -> None:
    runs: list[str] = []
    sessions: list[str] = []
    root = CustomerRoot("acme")
    consent = ConsentVerifier(root.fingerprint, "acme", "agt-1", ConsentMemory(tmp_path))
    on_message = dispatch(
        lambda m: runs.append(str(m.WhichOneof("kind"))),
        lambda m: sessions.append(str(m.WhichOneof("kind"))),
        consent,
    )
    revoked = root.certify("alice")
    on_message(
        agent_pb2.CollectorMessage(
            approver_revocations=agent_pb2.ApproverRevocations(revocations=[root.revoke(revoked)])
        )
    )
    assert ConsentMemory(tmp_path).revoked_keys() == {fingerprint(revoked.public)}
    for message in (
        agent_pb2.CollectorMessage(run_request=agent_pb2.RunRequest(run_id="r")),
        agent_pb2.CollectorMessage(session_open=agent_pb2.SessionOpen(session_id=SESSION)),
        agent_pb2.CollectorMessage(session_close=agent_pb2.SessionClose(session_id=SESSION)),
        agent_pb2.CollectorMessage(session_requested=agent_pb2.SessionRequested()),
        agent_pb2.CollectorMessage(run_cancel=agent_pb2.RunCancel(run_id="r")),
    ):
        on_message(message)
    assert runs == ["run_request", "run_cancel"]
    assert sessions == ["session_open", "session_close", "session_requested"]


def test_the_hello_platform_is_what_the_platform_module_says() -> None:
    import platform  # the agent does without it (memory); its answer is the reference

    assert platform_name() == platform.platform()


def test_without_a_backend_the_endpoint_is_built_by_the_first_session_message(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        consent = ConsentVerifier("", "acme", "agt-1", ConsentMemory(tmp_path))
        opened: list[str] = []

        def open_tunnel() -> GrpcTunnelIO:
            opened.append("tunnel")
            raise ConnectionError("not connected")

        endpoint = build_session_endpoint(
            tmp_path, SessionsConfig(), Policy(), _ignore, open_tunnel, consent
        )
        assert isinstance(endpoint, EndpointOnFirstMessage)
        endpoint.start()
        assert not endpoint.built
        endpoint.on_message(
            agent_pb2.CollectorMessage(
                session_requested=agent_pb2.SessionRequested(session_id=SESSION, engineer="erin")
            )
        )
        assert endpoint.built
        opening = agent_pb2.SessionOpen(session_id=SESSION, tunnel_id="tun-1", engineer="erin")
        endpoint.on_message(agent_pb2.CollectorMessage(session_open=opening))
        await asyncio.sleep(0.05)
        assert opened == ["tunnel"]  # the endpoint went to refuse it, as before
        await endpoint.close()
        assert SessionRequests(tmp_path, "disabled").pending(time.time()) == []

    run(scenario)


def test_an_endpoint_never_needed_closes_without_being_built(tmp_path: Path) -> None:
    async def scenario() -> None:
        consent = ConsentVerifier("", "acme", "agt-1", ConsentMemory(tmp_path))
        endpoint = build_session_endpoint(
            tmp_path, SessionsConfig(), Policy(), _ignore, _offline, consent
        )
        assert isinstance(endpoint, EndpointOnFirstMessage)
        endpoint.start()
        await endpoint.close()
        assert not endpoint.built

    run(scenario)


def test_a_backend_still_builds_the_endpoint_at_start(tmp_path: Path) -> None:
    consent = ConsentVerifier("", "acme", "agt-1", ConsentMemory(tmp_path))
    config = SessionsConfig(backend="pty", shell="/bin/sh")
    endpoint = build_session_endpoint(tmp_path, config, Policy(), _ignore, _offline, consent)
    assert isinstance(endpoint, SessionEndpoint)


def test_a_tunnel_cannot_be_opened_while_disconnected(tmp_path: Path) -> None:
    link = CollectorLink(tmp_path, None, AgentConfig().stream, hello_for(AgentConfig()))  # type: ignore[arg-type]
    with pytest.raises(ConnectionError, match="not connected"):
        link.open_tunnel()


# -- a real Tunnel RPC ------------------------------------------------------------------


Script = Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[list[Frame]]]


class TunnelServer:
    """A collector stand-in whose Tunnel handler runs ``script`` and keeps what it read."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self.frames: asyncio.Future[list[Frame]] = asyncio.get_running_loop().create_future()

    def handler(self) -> grpc.GenericRpcHandler[Frame, Frame]:
        method = grpc.stream_stream_rpc_method_handler(
            self._tunnel,
            request_deserializer=Frame.FromString,
            response_serializer=Frame.SerializeToString,
        )
        return grpc.method_handlers_generic_handler("aftercare.v1.AgentStream", {"Tunnel": method})

    async def _tunnel(
        self, request_iterator: AsyncIterator[Frame], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        try:
            self.frames.set_result(await self._script(context))
        except Exception as exc:
            self.frames.set_exception(exc)
            raise


async def read_until(context: grpc.aio.ServicerContext[Any, Any], kind: str) -> list[Frame]:
    frames: list[Frame] = []
    while True:
        frame = await context.read()
        if not isinstance(frame, Frame):
            return frames
        frames.append(frame)
        if frame.WhichOneof("kind") == kind:
            return frames


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path, script: Script, window_seconds: float
) -> AsyncIterator[tuple[TunnelServer, Channel, SessionEndpoint]]:
    """A collector stand-in, the agent's channel to it, and an endpoint that got SessionOpen."""
    ca = CertificateAuthority.create()
    cert_pem, key_pem = ca.issue_server_certificate(["127.0.0.1"], dt.timedelta(hours=1))
    server = grpc.aio.server()
    collector = TunnelServer(script)
    server.add_generic_rpc_handlers([collector.handler()])
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    await server.start()
    channel = await Channel.connect("127.0.0.1", port, client_context(ca.cert_pem))
    tls = channel._writer.transport._ssl_protocol  # type: ignore[attr-defined]
    assert len(tls._ssl_buffer) <= TLS_READ_BUFFER  # not asyncio's 256 KiB (issue 17)
    endpoint = SessionEndpoint(
        policy="collector",
        backend=build_backend(SessionsConfig(backend="pty", shell="/bin/sh")),
        requests=SessionRequests(tmp_path, "collector"),
        send=_ignore,
        open_tunnel=lambda: GrpcTunnelIO(channel.stream(TUNNEL_METHOD, Frame.FromString)),
        copy=CustomerCopy(tmp_path / "recordings", record_input=False),
        journal=Journal(tmp_path / "sessions.log"),
        consent=ConsentVerifier("", "acme", "agt-1", ConsentMemory(tmp_path)),
    )
    window_end = int((time.time() + window_seconds) * 1000)
    opening = agent_pb2.SessionOpen(
        session_id=SESSION, tunnel_id="tun-grpc", engineer="erin", window_end_unix_ms=window_end
    )
    try:
        endpoint.on_message(agent_pb2.CollectorMessage(session_open=opening))
        yield collector, channel, endpoint
        await endpoint.close()
    finally:
        await channel.aclose()
        await server.stop(None)


async def tunnel_ended(tmp_path: Path) -> dict[str, Any]:
    """The journal's tunnel_ended event (waits up to 5 s for it)."""
    journal = tmp_path / "sessions.log"
    async with asyncio.timeout(5):
        while "tunnel_ended" not in journal.read_text():
            await asyncio.sleep(0.02)
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    return next(e for e in events if e["event"] == "tunnel_ended")


async def with_tunnel(tmp_path: Path, script: Script, window_seconds: float) -> list[Frame]:
    """Run ``script`` as the collector's side; the frames it read once the tunnel ended."""
    async with rig(tmp_path, script, window_seconds) as (collector, _, _):
        frames = await asyncio.wait_for(collector.frames, 20)
        await tunnel_ended(tmp_path)
    return frames


async def _ignore(message: agent_pb2.AgentMessage) -> None:
    pass


def _offline() -> GrpcTunnelIO:
    raise ConnectionError("not connected")


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 45))


def test_exec_over_a_real_tunnel_rpc_that_the_collector_ends(tmp_path: Path) -> None:
    async def script(context: grpc.aio.ServicerContext[Any, Any]) -> list[Frame]:
        [attach] = await read_until(context, "attach")
        assert attach.attach.tunnel_id == "tun-grpc"
        await context.write(
            Frame(open=agent_pb2.ChannelOpen(channel=1, kind="exec", command="cat"))
        )
        await context.write(Frame(data=agent_pb2.ChannelData(channel=1, data=b"through grpc\n")))
        await context.write(Frame(eof=agent_pb2.ChannelEof(channel=1)))
        return await read_until(context, "close")  # then return: the collector ends the RPC

    async def test() -> None:
        frames = await with_tunnel(tmp_path, script, window_seconds=60)
        kinds = [f.WhichOneof("kind") for f in frames]
        assert kinds[0] == "opened" and frames[0].opened.error == ""
        assert b"".join(f.data.data for f in frames if f.WhichOneof("kind") == "data") == (
            b"through grpc\n"
        )
        assert kinds[-3:] == ["eof", "exit", "close"]
        assert "the collector closed the tunnel" in (tmp_path / "sessions.log").read_text()

    run(test)


def test_the_agent_ends_a_real_tunnel_rpc_at_the_window_end(tmp_path: Path) -> None:
    async def script(context: grpc.aio.ServicerContext[Any, Any]) -> list[Frame]:
        await read_until(context, "attach")
        await context.write(
            Frame(open=agent_pb2.ChannelOpen(channel=1, kind="exec", command="sleep 30"))
        )
        frames = await read_until(context, "never")  # until the agent closes its side
        return frames

    async def test() -> None:
        started = time.monotonic()
        frames = await with_tunnel(tmp_path, script, window_seconds=1.0)
        assert time.monotonic() - started < 4
        kinds = [f.WhichOneof("kind") for f in frames]
        assert kinds == ["opened", "close", "end"]
        assert frames[-1].end.reason.startswith("access window ended at")

    run(test)


def test_a_tunnel_whose_channel_closes_ends_the_login_at_once(tmp_path: Path) -> None:
    """The agent's channel closes under a live tunnel (the control stream reconnects)."""
    started = asyncio.Event()

    async def script(context: grpc.aio.ServicerContext[Any, Any]) -> list[Frame]:
        await read_until(context, "attach")
        opening = agent_pb2.ChannelOpen(channel=1, kind="exec", command="echo $$; sleep 60")
        await context.write(Frame(open=opening))
        frames = await read_until(context, "data")
        started.set()
        return frames + await read_until(context, "never")

    async def test() -> None:
        async with rig(tmp_path, script, window_seconds=60) as (collector, channel, _):
            await asyncio.wait_for(started.wait(), 10)
            await channel.aclose()
            ended = await tunnel_ended(tmp_path)
            assert str(ended["reason"]).startswith("the tunnel broke: ")
            frames = await asyncio.wait_for(collector.frames, 10)
        pid = int(b"".join(f.data.data for f in frames if f.WhichOneof("kind") == "data"))
        status: str
        try:
            status = psutil.Process(pid).status()
        except psutil.NoSuchProcess:
            status = "gone"
        assert status in ("gone", psutil.STATUS_ZOMBIE), "the login outlived the tunnel"

    run(test)
