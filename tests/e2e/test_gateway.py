"""Remote sessions through the SSH gateway, end to end with real parts: the collector
process, an agent process logging in to a real sshd as the support account, and the
stock OpenSSH client (ssh, scp) on the engineer's side."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.gateway_support import World, make_world, metric, ssh_options
from tests.support import PYTHON, REPO, Agent, run, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("ssh") is None or shutil.which("scp") is None,
    reason="the OpenSSH client is not installed (Debian package openssh-client)",
)


@pytest.fixture
def world(
    request: pytest.FixtureRequest, tmp_path: Path, make_agent: Callable[..., Agent]
) -> Iterator[World]:
    """Everything running; the host's session policy is ``collector`` unless the test
    parametrises ``world`` indirectly with another."""
    yield from make_world(tmp_path, make_agent, getattr(request, "param", "collector"))


def test_approved_session_runs_exec_shell_and_scp_and_is_recorded(world: World) -> None:
    ticket = world.client_json(
        "erin", "ticket", "create", "db slow", "--customer", "acme", "--host", "db-1",
        "--level", "2",
    )  # fmt: skip
    assert isinstance(ticket, dict)
    sid = world.request(ticket=ticket["ticket"]["id"])
    state_dir = str(world.agent.state_dir)

    def pending_on_host() -> str:
        return run("agent.cli", "sessions", "--state-dir", state_dir).stdout

    wait_for(lambda: sid in pending_on_host(), 20, "the request listed on the host")
    world.approve(sid)
    wait_for(lambda: sid not in pending_on_host(), 20, "the decision reaching the host")

    done = world.ssh("erin", sid, "echo hello-from-$(whoami); echo oops >&2; exit 3")
    assert done.stdout.strip() == f"hello-from-{world.sshd.user}", done.stderr
    assert "oops" in done.stderr and done.returncode == 3

    # `aftercare ssh` runs OpenSSH accepting only the gateway key the API vouched for.
    config_home = world.tmp / "xdg"
    wrapped = subprocess.run(
        [
            PYTHON, "-m", "collector.client.cli",
            *world.collector.client_options(world.tokens["erin"]), "ssh", sid,
            "--identity", str(world.keys["erin"]), "--",
            "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "echo pinned-ok",
        ],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "XDG_CONFIG_HOME": str(config_home)},
    )  # fmt: skip
    assert wrapped.stdout.strip() == "pinned-ok", wrapped.stderr
    pinned = (config_home / "aftercare" / "known_hosts").read_text()
    assert pinned.startswith(f"[127.0.0.1]:{world.collector.ssh_port} ssh-ed25519 ")

    shell = world.ssh("erin", sid, stdin="echo typed-$((6*7))\nexit\n", tty=True)
    assert "typed-42" in shell.stdout, shell.stdout + shell.stderr

    payload = os.urandom(3 * 1024 * 1024)
    source = world.tmp / "payload.bin"
    source.write_bytes(payload)
    for mode, target in (("sftp", "up-sftp.bin"), ("legacy", "up-scp.bin")):
        extra = ["-O"] if mode == "legacy" else []
        copied = world.scp("erin", *extra, str(source), f"{sid}@127.0.0.1:{world.tmp / target}")
        assert copied.returncode == 0, copied.stderr
        assert (world.tmp / target).read_bytes() == payload, mode
    back = world.scp("erin", f"{sid}@127.0.0.1:{source}", str(world.tmp / "down.bin"))
    assert back.returncode == 0 and (world.tmp / "down.bin").read_bytes() == payload

    detail = world.session(sid)
    assert detail["state"] == "active"
    recordings = detail["recordings"]
    assert isinstance(recordings, list)
    kinds = [r["kind"] for r in recordings]
    assert kinds == ["exec", "exec", "shell"], "file transfers are counted, not recorded"
    assert all(len(r["sha256"]) == 64 for r in recordings)

    cast = world.client("alice", "session", "replay", sid, "--part", "3", "--raw")
    assert cast.returncode == 0, cast.stderr
    header, *events = [json.loads(line) for line in cast.stdout.splitlines()]
    assert header["version"] == 2 and header["width"] > 0
    output = "".join(e[2] for e in events if e[1] == "o")
    typed = "".join(e[2] for e in events if e[1] == "i")
    assert "typed-42" in output and "echo typed-$((6*7))" in typed

    log = world.client_json("alice", "session", "log", sid)
    commands = json.dumps(log)
    assert "echo typed-$((6*7))" in commands and "hello-from" in commands

    # The customer keeps its own copy on the host.
    copies = list((world.agent.state_dir / "recordings").rglob("*.cast"))
    assert any("typed-42" in p.read_text(errors="replace") for p in copies), copies

    metrics = world.collector.metrics()
    assert metric(metrics, "aftercare_gateway_relayed_bytes_total", 'direction="to_host"') > (
        2 * len(payload)
    )
    assert metric(metrics, "aftercare_gateway_logins_total", 'result="accepted"') >= 6
    assert metric(metrics, "aftercare_remote_sessions", 'state="active"') == 1

    audit = world.collector.admin("audit", "list", "--json")
    actions = [e["action"] for e in json.loads(audit.stdout)]
    assert "session.connected" in actions and "session.disconnected" in actions

    # The ticket's timeline has the login, which stops its remote-response clock.
    shown = world.client_json("erin", "ticket", "show", str(ticket["ticket"]["id"]))
    assert isinstance(shown, dict)
    connected = [e for e in shown["events"] if e["kind"] == "remote_connected"]
    assert connected and connected[0]["details"]["first"] is True
    assert connected[0]["details"]["remote_response_ms"] >= 0


def test_logins_are_refused_unless_approved_mine_and_in_the_window(world: World) -> None:
    sid = world.request()

    def refused(key: str, session_id: str) -> None:
        result = world.ssh(key, session_id, "echo should-not-run")
        assert result.returncode == 255, result.stdout + result.stderr
        assert "should-not-run" not in result.stdout
        assert "Permission denied" in result.stderr

    refused("erin", sid)  # pending: not approved yet
    denied = world.request()
    assert world.client("alice", "session", "deny", denied, "--reason", "not now").returncode == 0
    refused("erin", denied)
    world.approve(sid, "--until", "6s")
    refused("bob", sid)  # another engineer's session
    refused("stranger", sid)  # a key nobody registered
    refused("erin", "ses-000000000000")  # no such session
    assert world.ssh("erin", sid, "true").returncode == 0
    wait_for(lambda: world.session(sid)["state"] == "ended", 30, "window end")
    refused("erin", sid)  # the window is over

    # A customer of another customer can neither approve, watch nor terminate.
    other = world.request()
    for action in (("approve", other), ("terminate", sid)):
        result = world.client("mallory", "session", *action)
        assert result.returncode == 1 and "NOT_FOUND" in result.stderr
    assert world.client("mallory", "session", "watch", sid).returncode == 1

    audit = world.collector.admin("audit", "list", "--json")
    reasons = {
        e["details"].get("reason")
        for e in json.loads(audit.stdout)
        if e["action"] == "session.login_refused"
    }
    assert {"pending", "denied", "not_your_session", "unknown_key", "unknown_session"} <= reasons
    assert "window_ended" in reasons


def _live_shell(world: World, sid: str) -> subprocess.Popen[str]:
    shell = subprocess.Popen(
        world.ssh_args("erin", sid, tty=True),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(lambda: world.session(sid)["state"] == "active", 30, "engineer logged in")
    return shell


def test_customer_watches_then_terminates_a_live_session(world: World) -> None:
    sid = world.request()
    world.approve(sid)
    shell = _live_shell(world, sid)
    watch = subprocess.Popen(
        [
            PYTHON, "-m", "collector.client.cli",
            *world.collector.client_options(world.tokens["alice"]), "session", "watch", sid,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        assert shell.stdin is not None
        shell.stdin.write("echo watched-$((7*6))\n")
        shell.stdin.flush()
        time.sleep(2.0)
        ended = world.client_json("alice", "session", "terminate", sid)
        assert isinstance(ended, dict) and ended["state"] == "terminated"
        out, _ = shell.communicate(timeout=15)
        assert "terminated by alice" in out
        watched, watch_err = watch.communicate(timeout=15)
        assert "watched-42" in watched, watch_err
        assert watch.returncode == 0
    finally:
        for process in (shell, watch):
            if process.poll() is None:
                process.kill()
    assert world.ssh("erin", sid, "true").returncode == 255


def test_window_expiry_warns_then_ends_a_live_session(world: World) -> None:
    sid = world.request()
    world.approve(sid, "--until", "10s")
    started = time.monotonic()
    shell = _live_shell(world, sid)
    try:
        out, _ = shell.communicate(timeout=30)
    finally:
        if shell.poll() is None:
            shell.kill()
    assert time.monotonic() - started < 25
    assert "access window ends at" in out, out
    assert "access window ended" in out, out


def test_metrics_keep_flowing_during_a_large_scp(world: World) -> None:
    sid = world.request()
    world.approve(sid)
    source = world.tmp / "big.bin"
    with source.open("wb") as file:
        for _ in range(64):
            file.write(os.urandom(1024 * 1024))
    copy = subprocess.Popen(  # -l: at most 100 Mbit/s, so the copy lasts 5 s or more
        ["scp", *ssh_options(world.keys["erin"]), "-P", str(world.collector.ssh_port),
         "-l", "100000", str(source), f"{sid}@127.0.0.1:{world.tmp / 'big.copy'}"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    stored: list[float] = []  # the agent's batches stored, sampled while the copy runs
    while copy.poll() is None:
        time.sleep(0.5)
        text = world.collector.metrics()
        stored.append(metric(text, "aftercare_ingest_batches_total", 'result="stored"'))
    assert copy.returncode == 0, copy.stderr.read() if copy.stderr else ""
    assert (world.tmp / "big.copy").stat().st_size == source.stat().st_size
    assert len(stored) >= 4, "scp -l should have kept the copy running for seconds"
    assert stored[-2] > stored[0], "no metric batch was stored while the copy ran"


@pytest.mark.parametrize("world", ["local"], indirect=True)
def test_local_approval_policy_only_counts_approval_on_the_host(world: World) -> None:
    sid = world.request()
    refused = world.client("alice", "session", "approve", sid)
    assert refused.returncode == 1 and "approve-session" in refused.stderr
    state_dir = str(world.agent.state_dir)
    wait_for(
        lambda: sid in run("agent.cli", "sessions", "--state-dir", state_dir).stdout,
        20,
        "request known on the host",
    )
    local = run("agent.cli", "approve-session", sid, "--state-dir", state_dir)
    assert local.returncode == 0, local.stderr
    wait_for(lambda: world.session(sid)["state"] == "approved", 20, "local approval")
    assert world.ssh("erin", sid, "echo local-ok").stdout.strip() == "local-ok"


def test_interactive_shell_follows_the_engineers_window_size(world: World) -> None:
    sid = world.request()
    world.approve(sid)
    controller, terminal = pty.openpty()
    _set_size(terminal, rows=30, cols=100)
    shell = subprocess.Popen(
        world.ssh_args("erin", sid, tty=True),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    seen = b""

    def type_and_wait(text: str, expected: bytes) -> None:
        nonlocal seen
        os.write(controller, text.encode())
        deadline = time.monotonic() + 20
        while expected not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")[-500:]
            if select.select([controller], [], [], 0.5)[0]:
                seen += os.read(controller, 65536)

    try:
        type_and_wait("echo size=$(stty size | tr ' ' x)\r", b"size=30x100")
        _set_size(controller, rows=40, cols=120)
        os.killpg(shell.pid, signal.SIGWINCH)  # as a terminal emulator would
        time.sleep(1.0)
        type_and_wait("echo size=$(stty size | tr ' ' x)\r", b"size=40x120")
        type_and_wait("exit\r", b"exit")
        shell.wait(timeout=20)
    finally:
        if shell.poll() is None:
            shell.kill()
        os.close(controller)
    parts = world.session(sid)["recordings"]
    assert isinstance(parts, list)
    cast = world.client("erin", "session", "replay", sid, "--part", str(parts[-1]["part"]), "--raw")
    events = [json.loads(line) for line in cast.stdout.splitlines()[1:]]
    assert [e[2] for e in events if e[1] == "r"] == ["120x40"]


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
