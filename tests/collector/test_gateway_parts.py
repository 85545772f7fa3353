"""Gateway parts without sockets: exit statuses, file-transfer detection and the files
copied (sftp, scp), the watch hub, partial and torn recordings, what a refused
engineer is told, and the tunnel broker's rules about who may attach a tunnel."""

from __future__ import annotations

import asyncio
import hashlib
import struct
from pathlib import Path
from typing import Any

import pytest

from collector.errors import NotFound, PermissionDenied
from collector.gateway.recording import WatchHub, WatchItem, recorded_events
from collector.gateway.recovery import close_torn_file
from collector.gateway.relay import ChannelRequest, exit_status_of
from collector.gateway.transfers import FileTransfer, watcher_for
from collector.gateway.tunnels import TunnelBroker, TunnelUnavailable
from collector.server.streams import Streams
from collector.sessions.errors import LoginRefused
from collector.store.base import RecordingRecord
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


# -- file transfers seen in a channel ----------------------------------------------------


def _sftp(kind: int, *fields: bytes) -> bytes:
    body = bytes([kind]) + b"".join(fields)
    return struct.pack(">I", len(body)) + body


def _u32(n: int) -> bytes:
    return struct.pack(">I", n)


def _str(data: bytes) -> bytes:
    return _u32(len(data)) + data


def _feed_bytewise(feed: Any, data: bytes) -> list[FileTransfer]:
    done: list[FileTransfer] = []
    for i in range(len(data)):
        done += feed(data[i : i + 1])
    return done


def test_sftp_uploads_and_downloads_are_named_sized_and_directed() -> None:
    watcher = watcher_for("subsystem", "sftp")
    assert watcher is not None
    attrs = _u32(0)
    requests = (
        _sftp(1, _u32(3))  # INIT
        + _sftp(3, _u32(1), _str(b"/tmp/up.bin"), _u32(0x1A), attrs)  # OPEN write|creat|trunc
        + _sftp(3, _u32(2), _str(b"/etc/hosts"), _u32(0x01), attrs)  # OPEN read
    )
    assert watcher.from_engineer(requests) == []
    replies = (
        _sftp(2, _u32(3)) + _sftp(102, _u32(1), _str(b"h1")) + _sftp(102, _u32(2), _str(b"h2"))
    )
    assert _feed_bytewise(watcher.to_engineer, replies) == []
    writes = b"".join(
        _sftp(6, _u32(10 + i), _str(b"h1"), struct.pack(">Q", i * 1000), _str(b"x" * 1000))
        for i in range(5)
    )
    assert _feed_bytewise(watcher.from_engineer, writes) == []
    assert (
        watcher.from_engineer(_sftp(5, _u32(20), _str(b"h2"), struct.pack(">Q", 0), _u32(4096)))
        == []
    )
    watcher.to_engineer(_sftp(103, _u32(20), _str(b"y" * 321)))
    closes = _sftp(4, _u32(30), _str(b"h1")) + _sftp(4, _u32(31), _str(b"h2"))
    assert watcher.from_engineer(closes) == [
        FileTransfer("sftp", "upload", "/tmp/up.bin", 5000),
        FileTransfer("sftp", "download", "/etc/hosts", 321),
    ]
    assert watcher.close() == []


def test_legacy_scp_files_are_read_from_the_senders_stream() -> None:
    upload = watcher_for("exec", "scp -v -t -- /srv/in")
    assert upload is not None
    stream = b"T1 0 1 0\n" + b"C0644 5 a.txt\n" + b"hello" + b"\0" + b"D0755 0 sub\n"
    stream += b"C0600 3 b.bin\n" + b"\0\n\0" + b"\0" + b"E\n"
    assert _feed_bytewise(upload.from_engineer, stream) == [
        FileTransfer("scp", "upload", "/srv/in", 5, "a.txt"),
        FileTransfer("scp", "upload", "/srv/in", 3, "sub/b.bin"),
    ]
    assert upload.to_engineer(b"C0644 9 not-counted\n") == []
    download = watcher_for("exec", "scp -f /var/log/syslog")
    assert download is not None
    cut = download.to_engineer(b"C0644 10 syslog\n1234")
    assert cut == [] and download.close() == [
        FileTransfer("scp", "download", "/var/log/syslog", 4, "syslog", complete=False)
    ]


def test_a_stream_that_is_not_the_protocol_stops_being_watched() -> None:
    for kind, command, data in (
        ("subsystem", "sftp", b"\xff\xff\xff\xff" + b"x" * 100),
        ("exec", "scp -t /tmp", b"not scp at all\n" + b"C0644 1 a\n" + b"x\0"),
        ("exec", "scp -t /tmp", b"C" * 20_000),
    ):
        watcher = watcher_for(kind, command)
        assert watcher is not None
        assert watcher.from_engineer(data) == [] and watcher.close() == []
    assert watcher_for("exec", "rsync --server -v . /srv") is None
    assert watcher_for("exec", "uptime") is None


def test_another_engineers_session_reads_like_no_session_at_all() -> None:
    mine = LoginRefused("ses-0123456789ab", "not_your_session", "requested by erin")
    none = LoginRefused("ses-0123456789ab", "unknown_session", "no such session")
    assert mine.engineer_text == none.engineer_text
    assert "erin" not in mine.engineer_text
    pending = LoginRefused("ses-0123456789ab", "pending", "not approved yet")
    assert pending.engineer_text == "not approved yet"


def test_a_torn_recording_is_cut_at_its_last_whole_line(tmp_path: Path) -> None:
    cast = tmp_path / "part.cast"
    whole = b'{"version": 2, "width": 80, "height": 24}\n[0.1, "o", "a"]\n'
    cast.write_bytes(whole + b'[0.2, "o", "b')
    record = RecordingRecord("ses-0123456789ab", 1, "shell", "", "part.cast", started_ms=5)
    size, digest, ended_ms = close_torn_file(cast, record)
    assert cast.read_bytes() == whole and size == len(whole)
    assert digest == hashlib.sha256(whole).hexdigest() and ended_ms >= 5
    missing = close_torn_file(tmp_path / "gone.cast", record)
    assert missing == (0, hashlib.sha256(b"").hexdigest(), 5)
