"""Gateway parts without sockets: exit statuses, file-transfer detection, the watch hub,
partial recordings, and the tunnel broker's rules about who may attach a tunnel."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from collector.errors import NotFound, PermissionDenied
from collector.gateway.recording import WatchHub, WatchItem, recorded_events
from collector.gateway.relay import ChannelRequest, exit_status_of
from collector.server.streams import Streams
from collector.server.tunnels import TunnelBroker, TunnelUnavailable
from proto import agent_pb2


def test_exit_status_of_a_signal_is_128_plus_its_number() -> None:
    assert exit_status_of(agent_pb2.ChannelExit(status=3)) == 3
    assert exit_status_of(agent_pb2.ChannelExit(signal="TERM")) == 143
    assert exit_status_of(agent_pb2.ChannelExit(signal="SIGKILL")) == 137
    assert exit_status_of(agent_pb2.ChannelExit(signal="NOPE")) == 255


@pytest.mark.parametrize(
    ("request_", "transfer"),
    [
        (ChannelRequest("subsystem", "sftp"), True),
        (ChannelRequest("exec", "scp -t /tmp/x"), True),
        (ChannelRequest("exec", "rsync --server -vlogDtpre.iLsfxC . /srv"), True),
        (ChannelRequest("exec", "uptime"), False),
        (ChannelRequest("shell"), False),
    ],
)
def test_file_transfers_are_not_recorded(request_: ChannelRequest, transfer: bool) -> None:
    assert request_.is_file_transfer is transfer


def test_watch_hub_fans_out_and_ends() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        first, second = hub.subscribe("ses-1"), hub.subscribe("ses-1")
        other = hub.subscribe("ses-2")
        hub.publish("ses-1", WatchItem(1, 0.5, "o", "hi"))
        hub.end("ses-1")
        for queue in (first, second):
            assert [queue.get_nowait().type, queue.get_nowait().type] == ["o", "end"]
        assert other.empty()
        hub.unsubscribe("ses-1", first)
        hub.publish("ses-1", WatchItem(1, 0.6, "o", "again"))
        assert first.empty() and second.qsize() == 1

    asyncio.run(scenario())


def test_recorded_events_skip_a_torn_last_line(tmp_path: Path) -> None:
    cast = tmp_path / "part.cast"
    cast.write_text('{"version": 2, "width": 80, "height": 24}\n[0.1, "o", "a"]\n[0.2, "o", "b')
    assert recorded_events(cast) == [(0.1, "o", "a")]
    assert recorded_events(tmp_path / "missing.cast") == []


class _Context:
    """The servicer context the broker keeps for the attached tunnel (never used here)."""


def test_only_the_agent_asked_can_attach_its_tunnel_once() -> None:
    async def scenario() -> None:
        streams = Streams()
        stream = streams.open("agent-1")
        broker = TunnelBroker(streams, attach_timeout=5)
        opening = asyncio.create_task(broker.open("agent-1", "ses-1", "erin", 10**13, "alice"))
        message = await stream.outbound.get()
        assert message is not None
        tunnel_id = message.session_open.tunnel_id
        assert message.session_open.window_end_unix_ms == 10**13
        attach = agent_pb2.TunnelAttach(tunnel_id=tunnel_id, session_id="ses-1")
        context: Any = _Context()
        with pytest.raises(PermissionDenied):
            broker.attach("agent-2", attach, context)
        with pytest.raises(PermissionDenied):  # the right agent, another session
            broker.attach("agent-1", agent_pb2.TunnelAttach(tunnel_id=tunnel_id), context)
        tunnel = broker.attach("agent-1", attach, context)
        assert await opening is tunnel and tunnel.session_id == "ses-1"
        with pytest.raises(NotFound):  # used once
            broker.attach("agent-1", attach, context)

    asyncio.run(scenario())


def test_open_fails_clearly_when_the_agent_is_away_or_silent() -> None:
    async def scenario() -> None:
        streams = Streams()
        broker = TunnelBroker(streams, attach_timeout=0.05)
        with pytest.raises(TunnelUnavailable, match="not connected"):
            await broker.open("agent-1", "ses-1", "erin", 10**13, "alice")
        streams.open("agent-1")
        with pytest.raises(TunnelUnavailable, match="did not open the tunnel"):
            await broker.open("agent-1", "ses-1", "erin", 10**13, "alice")

    asyncio.run(scenario())


def test_every_session_open_carries_the_customers_signed_approval() -> None:
    from collector.gateway.access import Login
    from collector.sessions.model import RemoteSession

    session = RemoteSession(
        session_id="ses-0123456789ab",
        agent_id="agent-1",
        customer="acme",
        hostname="db-1",
        engineer="erin",
        reason="r",
        requested_duration_ms=3_600_000,
        requested_ms=1,
        pending_expires_ms=2,
        state="approved",
        approved_by="alice",
        window_end_ms=10**13,
        signed_approval=b'{"approval":{},"certificate":{}}',
    )
    login = Login.of(session)

    async def scenario() -> None:
        streams = Streams()
        stream = streams.open("agent-1")
        broker = TunnelBroker(streams, attach_timeout=0.05)
        for _ in range(2):  # the first login and a reconnection
            with pytest.raises(TunnelUnavailable):
                await broker.open(
                    login.agent_id,
                    login.session_id,
                    login.engineer,
                    login.window_end_ms,
                    login.approved_by,
                    login.signed_approval,
                )
            message = stream.outbound.get_nowait()
            assert message is not None
            assert message.session_open.signed_approval == session.signed_approval
            assert message.session_open.approved_by == "alice"

    asyncio.run(scenario())
