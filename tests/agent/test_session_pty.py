"""The PTY backend (no sshd): real processes on real pseudo-terminals and pipes."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import pwd
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
import pytest

from agent.config import SessionsConfig
from agent.errors import ConfigError
from agent.session.pty_backend import PtyBackend, find_sftp_server, pty_account
from agent.session.setup import build_backend
from proto import agent_pb2
from tests.agent.session_support import SESSION, Endpoint, FakeTunnel

pytestmark = pytest.mark.timeout(60)

SHELL = "/bin/bash" if os.access("/bin/bash", os.X_OK) else "/bin/sh"


def alive(pid: int) -> bool:
    """Running (a zombie left to a non-reaping init does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def backend(user: str = "", shell: str = SHELL) -> PtyBackend:
    built = build_backend(SessionsConfig(backend="pty", user=user, shell=shell))
    assert isinstance(built, PtyBackend)
    return built


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 45))


async def prompt_ready(tunnel: FakeTunnel, channel: int) -> None:
    tunnel.type(channel, b"echo READY$((1+1))\n")
    await tunnel.until_output(channel, b"READY2")


def test_exec_with_pipes_keeps_stdout_stderr_and_status(tmp_path: Path) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend())
        tunnel = await agent.open()
        assert await tunnel.open_channel(1, "exec", "echo hi; echo err >&2; exit 4") == ""
        log = await tunnel.until_closed(1)
        assert (log.stdout(1), log.stderr(1)) == (b"hi\n", b"err\n")
        exit_frame = log.exit(1)
        assert exit_frame is not None and exit_frame.status == 4
        assert log.kinds(1)[-3:] == ["eof", "exit", "close"]
        tunnel.close()
        await agent.endpoint.close()

    run(test)


def test_exec_reads_input_until_eof(tmp_path: Path) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend())
        tunnel = await agent.open()
        assert await tunnel.open_channel(1, "exec", "wc -c") == ""
        tunnel.type(1, b"x" * 100_000)
        tunnel.send(eof=agent_pb2.ChannelEof(channel=1))
        log = await tunnel.until_closed(1)
        assert log.stdout(1).strip() == b"100000"
        tunnel.close()
        await agent.endpoint.close()

    run(test)


def test_exec_with_a_pty_runs_on_a_terminal(tmp_path: Path) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend())
        tunnel = await agent.open()
        assert (
            await tunnel.open_channel(1, "exec", "tty; stty size", pty=True, rows=33, cols=99) == ""
        )
        log = await tunnel.until_closed(1)
        assert re.match(rb"/dev/pts/\d+\r\n33 99\r\n", log.stdout(1)), log.stdout(1)
        tunnel.close()
        await agent.endpoint.close()

    run(test)


def test_shell_with_pty_has_job_control_resize_and_a_recording(tmp_path: Path) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend())
        tunnel = await agent.open(tunnel_id="tun-pty")
        assert await tunnel.open_channel(1, "shell", pty=True) == ""
        tunnel.type(1, b"echo $((6*7))\n")
        await tunnel.until_output(1, b"42\r\n")
        tunnel.type(1, b"sleep 30\n")
        await asyncio.sleep(0.3)
        tunnel.type(1, b"\x03")  # Ctrl-C reaches sleep: the PTY is the controlling terminal
        await prompt_ready(tunnel, 1)
        tunnel.send(resize=agent_pb2.ChannelResize(channel=1, cols=132, rows=43))
        tunnel.type(1, b"stty size\n")
        await tunnel.until_output(1, b"43 132")
        tunnel.type(1, b"exit 5\n")
        log = await tunnel.until_closed(1)
        exit_frame = log.exit(1)
        assert exit_frame is not None and exit_frame.status == 5
        tunnel.close()
        await agent.endpoint.close()
        cast = agent.recordings / SESSION / "tun-pty-1.cast"
        events = [json.loads(line) for line in cast.read_text().splitlines()[1:]]
        assert "42\r\n" in "".join(text for _, code, text in events if code == "o")
        assert not [e for e in events if e[1] == "i"], "input is not recorded by default"

    run(test)


def test_closing_the_channel_hangs_up_its_process_group(tmp_path: Path) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend())
        tunnel = await agent.open()
        assert await tunnel.open_channel(1, "shell", pty=True) == ""
        tunnel.type(1, b"sleep 300 & echo BG=$!\n")
        log = await tunnel.until_output(1, b"\r\n", timeout=10)
        while not re.search(rb"BG=(\d+)\r\n", log.stdout(1)):
            log.add(await tunnel.expect("data"))
        match = re.search(rb"BG=(\d+)\r\n", log.stdout(1))
        assert match is not None
        background = int(match.group(1))
        tunnel.send(close=agent_pb2.ChannelClose(channel=1))
        assert (await tunnel.until_closed(1)).kinds(1)[-1] == "close"
        deadline = time.monotonic() + 5
        while alive(background) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not alive(background), "a background job outlived the channel"
        tunnel.close()
        await agent.endpoint.close()

    run(test)


def test_window_end_stops_the_pty_login(tmp_path: Path) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend())
        window_end = time.time() + 1.5
        tunnel = await agent.open(window_seconds=1.5)
        assert await tunnel.open_channel(1, "exec", "sleep 60") == ""
        log = await tunnel.until_end(timeout=10)
        assert time.time() - window_end < 2.0
        assert str(log.end_reason()).startswith("access window ended at")
        await agent.endpoint.close()

    run(test)


def test_subsystems(tmp_path: Path) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend())
        tunnel = await agent.open()
        error = await tunnel.open_channel(1, "subsystem", "netconf")
        assert error == "subsystem 'netconf' is not available on this host"
        if find_sftp_server("") is not None:
            assert await tunnel.open_channel(2, "subsystem", "sftp") == ""
            tunnel.type(2, b"\x00\x00\x00\x05\x01\x00\x00\x00\x03")
            assert (await tunnel.expect("data")).data.data[4] == 2  # SSH_FXP_VERSION
        assert await tunnel.open_channel(3, "x11") == "unknown channel kind 'x11'"
        tunnel.close()
        await agent.endpoint.close()

    run(test)


# -- the account ---------------------------------------------------------------------


def test_unset_user_is_the_agents_own() -> None:
    account = pty_account("", SHELL)
    assert account.uid == os.geteuid() and not account.switch


def test_an_unknown_user_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        build_backend(SessionsConfig(backend="pty", user="no-such-user-here"))
    assert caught.value.key == "sessions.user"


def test_a_nologin_shell_must_be_replaced() -> None:
    nologin = [p for p in pwd.getpwall() if p.pw_shell.endswith(("nologin", "false"))]
    if not nologin:
        pytest.skip("no account with a nologin shell here")
    with pytest.raises(ConfigError) as caught:
        pty_account(nologin[0].pw_name, "")
    assert caught.value.key == "sessions.shell"


@pytest.mark.skipif(os.geteuid() == 0, reason="checks a non-root agent")
def test_another_user_needs_a_root_agent() -> None:
    other = next(p.pw_name for p in pwd.getpwall() if p.pw_uid != os.geteuid())
    with pytest.raises(ConfigError) as caught:
        pty_account(other, "/bin/sh")
    assert caught.value.key == "sessions.user" and "not root" in str(caught.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs a root agent")
def test_a_root_agent_starts_sessions_as_the_configured_user(tmp_path: Path) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend("nobody", "/bin/sh"))
        tunnel = await agent.open()
        assert await tunnel.open_channel(1, "exec", "id -un") == ""
        assert (await tunnel.until_closed(1)).stdout(1) == b"nobody\n"
        assert await tunnel.open_channel(2, "exec", "id -un; tty", pty=True) == ""
        output = (await tunnel.until_closed(2)).stdout(2)
        assert output.startswith(b"nobody\r\n/dev/pts/"), output
        tunnel.close()
        await agent.endpoint.close()

    run(test)


def test_a_stalled_collector_cannot_keep_a_flooding_login_past_its_window(tmp_path: Path) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend(), stall_after=3)  # attach, opened, one data frame
        window_end = time.time() + 1.5
        tunnel = await agent.open(window_seconds=1.5)
        assert await tunnel.open_channel(1, "exec", "echo $$; exec cat /dev/zero") == ""
        first = await tunnel.expect("data")
        pid = int(first.data.data.split(b"\n")[0])
        await asyncio.wait_for(tunnel.finished.wait(), 15)  # the agent gives up on the RPC
        assert not alive(pid), "the login outlived the window"
        ended = next(e for e in agent.journal() if e["event"] == "tunnel_ended")
        assert str(ended["reason"]).startswith("access window ended at")
        ended_at = dt.datetime.fromisoformat(str(ended["time"])).timestamp()
        assert ended_at - window_end < 2.0, "the login ended late"
        await agent.endpoint.close()

    run(test)
