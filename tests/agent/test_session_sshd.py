"""The session endpoint with a real sshd behind it, driven frame by frame as the collector would.

A real OpenSSH sshd (tests/sshd.py) runs on a free port as the current user; the
agent's sshd backend logs in to it with paramiko. The test plays the collector's
side of the Tunnel RPC (tests/agent/session_support.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import psutil
import pytest

from agent.config import load_config
from agent.session.backend import Backend
from agent.session.setup import build_backend
from agent.session.sshd_backend import CHUNK_BYTES
from proto import agent_pb2
from tests.agent.session_support import SESSION, Endpoint, FakeTunnel
from tests.sshd import RealSshd, needs_sshd

pytestmark = [needs_sshd, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealSshd]:
    server = RealSshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


def backend_for(tmp_path: Path, sessions: dict[str, object]) -> Backend:
    """The backend exactly as an agent config file with this [sessions] builds it."""
    lines = ["[sessions]", *(f"{key} = {json.dumps(value)}" for key, value in sessions.items())]
    path = tmp_path / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    backend = build_backend(load_config(path).sessions)
    assert backend is not None
    return backend


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 90))


def other_key(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


async def shell_pid(tunnel: FakeTunnel, channel: int) -> int:
    tunnel.type(channel, b"echo PID=$$\n")
    log = await tunnel.until_output(channel, b"\n", timeout=10)
    while not re.search(rb"PID=(\d+)\r?\n", log.stdout(channel)):
        log.add(await tunnel.expect("data"))
    match = re.search(rb"PID=(\d+)\r?\n", log.stdout(channel))
    assert match is not None
    return int(match.group(1))


def gone(pid: int, within: float = 5.0) -> bool:
    """The process ended within ``within`` seconds (a zombie counts as ended)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


# -- channels ---------------------------------------------------------------------------


def test_exec_returns_output_and_exit_status(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend_for(tmp_path, sshd.sessions_config()))
        tunnel = await agent.open()
        assert await tunnel.open_channel(1, "exec", "echo hi") == ""
        log = await tunnel.until_closed(1)
        assert log.stdout(1) == b"hi\n"
        exit_frame = log.exit(1)
        assert exit_frame is not None and (exit_frame.status, exit_frame.signal) == (0, "")
        assert log.kinds(1)[-3:] == ["eof", "exit", "close"]
        tunnel.close()
        assert await tunnel.until_end() is not None
        await agent.endpoint.close()

    run(test)


def test_stderr_is_flagged_and_the_status_kept(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend_for(tmp_path, sshd.sessions_config()))
        tunnel = await agent.open()
        assert await tunnel.open_channel(1, "exec", "echo out; echo oops >&2; exit 3") == ""
        log = await tunnel.until_closed(1)
        assert log.stdout(1) == b"out\n"
        assert log.stderr(1) == b"oops\n"
        exit_frame = log.exit(1)
        assert exit_frame is not None and exit_frame.status == 3
        tunnel.close()
        await agent.endpoint.close()

    run(test)


def test_a_command_killed_by_a_signal_reports_the_signal(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend_for(tmp_path, sshd.sessions_config()))
        tunnel = await agent.open()
        assert await tunnel.open_channel(1, "exec", "kill -TERM $$") == ""
        log = await tunnel.until_closed(1)
        exit_frame = log.exit(1)
        assert exit_frame is not None and exit_frame.signal == "TERM"
        tunnel.close()
        await agent.endpoint.close()

    run(test)


def test_input_and_eof_reach_the_command(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend_for(tmp_path, sshd.sessions_config()))
        tunnel = await agent.open()
        assert await tunnel.open_channel(1, "exec", "tr a-z A-Z") == ""
        tunnel.type(1, b"hello ")
        tunnel.type(1, b"world\n")
        tunnel.send(eof=agent_pb2.ChannelEof(channel=1))
        log = await tunnel.until_closed(1)
        assert log.stdout(1) == b"HELLO WORLD\n"
        exit_frame = log.exit(1)
        assert exit_frame is not None and exit_frame.status == 0
        tunnel.close()
        await agent.endpoint.close()

    run(test)


def test_shell_with_pty_runs_what_is_typed_and_the_customer_keeps_a_copy(
    tmp_path: Path, sshd: RealSshd
) -> None:
    async def test() -> None:
        backend = backend_for(tmp_path, sshd.sessions_config())
        agent = Endpoint(tmp_path, backend, record_input=True)
        tunnel = await agent.open(tunnel_id="tun-abc")
        assert await tunnel.open_channel(3, "shell", pty=True, cols=100, rows=30) == ""
        tunnel.type(3, b"echo $((6*7))\n")
        await tunnel.until_output(3, b"42\r\n")
        tunnel.send(resize=agent_pb2.ChannelResize(channel=3, cols=120, rows=50))
        tunnel.type(3, b"stty size\n")
        await tunnel.until_output(3, b"50 120")
        tunnel.type(3, b"exit\n")
        log = await tunnel.until_closed(3)
        exit_frame = log.exit(3)
        assert exit_frame is not None and exit_frame.status == 0
        tunnel.close()
        await tunnel.until_end()
        await agent.endpoint.close()

        cast = agent.recordings / SESSION / "tun-abc-3.cast"
        header, *events = [json.loads(line) for line in cast.read_text().splitlines()]
        assert header["version"] == 2 and (header["width"], header["height"]) == (100, 30)
        assert header["env"] == {"TERM": "xterm-256color"}
        output = "".join(text for _, code, text in events if code == "o")
        assert "42\r\n" in output
        assert "".join(text for _, code, text in events if code == "i").startswith("echo $((6*7))")
        assert [text for _, code, text in events if code == "r"] == ["120x50"]
        times = [at for at, _, _ in events]
        assert times == sorted(times)
        assert oct(cast.stat().st_mode & 0o777) == "0o600"
        assert oct(cast.parent.stat().st_mode & 0o777) == "0o700"

        events_logged = agent.journal()
        closed = next(e for e in events_logged if e["event"] == "channel_closed")
        assert closed["kind"] == "shell" and closed["bytes_to_engineer"] > 0
        assert closed["recording_sha256"] and closed["bytes_from_engineer"] > 0
        assert events_logged[0]["event"] == "tunnel_opened"

    run(test)


def test_sftp_works_and_file_transfers_are_not_recorded(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend_for(tmp_path, sshd.sessions_config()))
        tunnel = await agent.open()
        assert await tunnel.open_channel(1, "subsystem", "sftp") == ""
        tunnel.type(1, b"\x00\x00\x00\x05\x01\x00\x00\x00\x03")  # SSH_FXP_INIT, version 3
        reply = await tunnel.expect("data")
        assert reply.data.data[4] == 2  # SSH_FXP_VERSION
        tunnel.send(close=agent_pb2.ChannelClose(channel=1))
        assert (await tunnel.until_closed(1)).kinds(1)[-1] == "close"
        tunnel.close()
        await tunnel.until_end()
        await agent.endpoint.close()
        assert not (agent.recordings / SESSION).exists()

    run(test)


def test_bulk_output_arrives_whole_in_bounded_chunks(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend_for(tmp_path, sshd.sessions_config()))
        tunnel = await agent.open()
        size = 6_000_000
        assert await tunnel.open_channel(1, "exec", f"head -c {size} /dev/zero") == ""
        log = await tunnel.until_closed(1, timeout=60)
        assert len(log.stdout(1)) == size
        chunks = [len(f.data.data) for f in log.frames if f.WhichOneof("kind") == "data"]
        assert max(chunks) <= CHUNK_BYTES
        tunnel.close()
        await agent.endpoint.close()
        closed = next(e for e in agent.journal() if e["event"] == "channel_closed")
        assert closed["bytes_to_engineer"] == size

    run(test)


def test_two_channels_on_one_login(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend_for(tmp_path, sshd.sessions_config()))
        tunnel = await agent.open()
        assert await tunnel.open_channel(1, "exec", "sleep 0.5; echo one") == ""
        assert await tunnel.open_channel(2, "exec", "echo two") == ""
        assert await tunnel.open_channel(2, "exec", "echo again") == "channel 2 is already open"
        log = await tunnel.until_closed(1)
        assert log.stdout(1) == b"one\n" and log.stdout(2) == b"two\n"
        tunnel.close()
        await agent.endpoint.close()

    run(test)


# -- ending ---------------------------------------------------------------------------


def test_the_agent_ends_the_login_at_the_window_end_on_its_own(
    tmp_path: Path, sshd: RealSshd
) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend_for(tmp_path, sshd.sessions_config()))
        window_end = time.time() + 2.5
        tunnel = await agent.open(window_seconds=2.5)
        assert await tunnel.open_channel(1, "shell", pty=True) == ""
        pid = await shell_pid(tunnel, 1)
        log = await tunnel.until_end(timeout=10)  # the collector says nothing
        ended = time.time()
        assert ended - window_end < 2.0, f"ended {ended - window_end:.2f}s after the window"
        reason = log.end_reason()
        assert reason is not None and reason.startswith("access window ended at 20")
        assert reason.endswith("Z")
        assert "close" in log.kinds(1)
        assert tunnel.agent_done_writing
        assert await asyncio.to_thread(gone, pid), "the shell outlived the window"
        assert agent.journal()[-1]["event"] == "tunnel_ended"
        await agent.endpoint.close()

    run(test)


def test_session_close_ends_every_tunnel_of_the_session(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend_for(tmp_path, sshd.sessions_config()))
        first = await agent.open(tunnel_id="tun-1")
        second = await agent.open(tunnel_id="tun-2")
        other = await agent.open(tunnel_id="tun-3", session_id="ses-ffffffffffff")
        for tunnel in (first, second, other):
            assert await tunnel.open_channel(1, "exec", "sleep 60") == ""
        started = time.monotonic()
        agent.endpoint.on_message(
            agent_pb2.CollectorMessage(
                session_close=agent_pb2.SessionClose(
                    session_id=SESSION, reason="terminated by alice"
                )
            )
        )
        for tunnel in (first, second):
            log = await tunnel.until_end(timeout=10)
            assert log.end_reason() == "terminated by alice"
            assert log.kinds(1) == ["close"]
        assert time.monotonic() - started < 5
        assert not other.agent_done_writing and not other.cancelled
        other.close()
        await agent.endpoint.close()

    run(test)


@pytest.mark.parametrize("how", ["closed", "broken"])
def test_when_the_collector_drops_the_tunnel_the_login_ends_at_once(
    tmp_path: Path, sshd: RealSshd, how: str
) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend_for(tmp_path, sshd.sessions_config()))
        tunnel = await agent.open()
        assert await tunnel.open_channel(1, "shell", pty=True) == ""
        pid = await shell_pid(tunnel, 1)
        if how == "closed":
            tunnel.close()
        else:
            tunnel.break_rpc()
        await asyncio.wait_for(tunnel.finished.wait(), 10)
        assert await asyncio.to_thread(gone, pid), "the shell outlived the tunnel"
        assert tunnel.cancelled
        ended = agent.journal()[-1]
        assert ended["event"] == "tunnel_ended"
        assert "collector closed" in str(ended["reason"]) or "broke" in str(ended["reason"])
        await agent.endpoint.close()

    run(test)


def test_stopping_the_agent_ends_its_tunnels(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend_for(tmp_path, sshd.sessions_config()))
        tunnel = await agent.open()
        assert await tunnel.open_channel(1, "exec", "sleep 60") == ""
        await agent.endpoint.close()
        log = await tunnel.until_end(timeout=10)
        assert log.end_reason() == "the agent on the host is stopping"

    run(test)


# -- refusals -----------------------------------------------------------------------


def test_local_policy_needs_an_approval_on_the_host(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        backend = backend_for(tmp_path, sshd.sessions_config())
        agent = Endpoint(tmp_path, backend, policy="local")
        refused = await agent.open(tunnel_id="tun-1")
        log = await refused.until_end()
        assert log.kinds() == ["end"]
        assert f"aftercare-agent approve-session {SESSION}" in str(log.end_reason())
        await asyncio.wait_for(refused.finished.wait(), 5)
        assert agent.journal()[-1]["event"] == "tunnel_refused"

        agent.requests.approvals.approve(SESSION, time.time() + 2.5, by="carol", binding="erin")
        tunnel = await agent.open(tunnel_id="tun-2", window_seconds=3600)
        assert await tunnel.open_channel(1, "exec", "echo approved") == ""
        assert (await tunnel.until_closed(1)).stdout(1) == b"approved\n"
        log = await tunnel.until_end(timeout=10)  # the local approval's end caps the window
        assert str(log.end_reason()).startswith("access window ended at")
        await agent.endpoint.close()

    run(test)


def test_disabled_policy_refuses(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend_for(tmp_path, sshd.sessions_config()), "disabled")
        log = await (await agent.open()).until_end()
        assert log.kinds() == ["end"]
        assert 'approval = "disabled"' in str(log.end_reason())

    run(test)


def test_no_backend_refuses(tmp_path: Path) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, None)
        assert agent.endpoint.approval_mode == "disabled"
        log = await (await agent.open()).until_end()
        assert 'sessions.backend = "none"' in str(log.end_reason())

    run(test)


def test_an_open_after_the_window_is_refused(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend_for(tmp_path, sshd.sessions_config()))
        log = await (await agent.open(window_seconds=-1)).until_end()
        assert str(log.end_reason()).startswith("access window ended at")

    run(test)


def test_a_key_sshd_does_not_accept_ends_with_what_to_check(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        key = other_key(tmp_path, "stranger")
        backend = backend_for(tmp_path, sshd.sessions_config(key_file=str(key)))
        agent = Endpoint(tmp_path, backend)
        log = await (await agent.open()).until_end()
        assert log.kinds() == ["end"]
        assert log.end_reason() == (
            f"cannot log in to this host's sshd at {sshd.address} as {sshd.user}: public key "
            f"refused (Authentication failed.); check sessions.key_file is in {sshd.user}'s "
            "authorized_keys"
        )

    run(test)


def test_an_unknown_host_key_is_refused(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        impostor = other_key(tmp_path, "impostor")
        config = sshd.sessions_config(host_key_files=[f"{impostor}.pub"])
        agent = Endpoint(tmp_path, backend_for(tmp_path, config))
        log = await (await agent.open()).until_end()
        reason = str(log.end_reason())
        assert reason.startswith(f"cannot log in to this host's sshd at {sshd.address}")
        assert "is not among sessions.host_key_files" in reason and "ssh-ed25519 SHA256:" in reason

    run(test)


def test_no_sshd_listening_ends_with_the_reason(tmp_path: Path, sshd: RealSshd) -> None:
    async def test() -> None:
        from tests.support import free_port

        config = sshd.sessions_config(sshd_address=f"127.0.0.1:{free_port()}")
        agent = Endpoint(tmp_path, backend_for(tmp_path, config))
        log = await (await agent.open()).until_end()
        assert "is sshd listening there" in str(log.end_reason())

    run(test)
