"""Remote sessions' loose ends (issue 11), each against the real parts: the collector
process, an agent logging in to a real sshd, and the stock OpenSSH client.

One world for the module (its start costs seconds); the test that kills the
collector with SIGKILL runs last and restarts it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import paramiko
import pytest

from tests.gateway_support import World, make_world, ssh_options
from tests.support import Agent, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("ssh") is None or shutil.which("scp") is None or shutil.which("sftp") is None,
    reason="the OpenSSH client is not installed (Debian package openssh-client)",
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Everything running; the window warning is 1h, so every login of a 1h window
    is inside it."""
    tmp = tmp_path_factory.mktemp("loose-ends")
    agents: list[Agent] = []

    def make_agent(hostname: str, **config: object) -> Agent:
        agent = Agent(tmp / f"agent-{hostname}", hostname, {"interval": "1s", **config})
        agents.append(agent)
        return agent

    try:
        yield from make_world(tmp, make_agent, collector_args=["--session-warning", "1h"])
    finally:
        for agent in agents:
            agent.stop()
            print(f"--- agent {agent.hostname} log ---\n" + agent.log_text()[-3000:])


def _ssh_verbose(
    world: World, key: str, sid: str, *command: str
) -> subprocess.CompletedProcess[str]:
    """ssh at OpenSSH's default log level (INFO), which prints the server's banners."""
    return subprocess.run(
        ["ssh", *ssh_options(world.keys[key], log_level="INFO"),
         "-p", str(world.collector.ssh_port), "-T", f"{sid}@127.0.0.1", *command],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _events(world: World, sid: str, kind: str) -> list[dict[str, Any]]:
    events = world.session(sid)["events"]
    assert isinstance(events, list)
    return [e for e in events if e["kind"] == kind]


def _audit(world: World) -> list[dict[str, Any]]:
    listed = world.collector.admin("audit", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert isinstance(entries, list)
    return entries


def test_a_refused_login_tells_the_engineer_why_through_ssh(world: World) -> None:
    pending = world.request()
    denied = world.request()
    assert world.client("alice", "session", "deny", denied, "--reason", "not now").returncode == 0
    short = world.request()
    world.approve(short, "--until", "2s")
    mine = world.request()
    world.approve(mine)

    def refused(key: str, sid: str) -> str:
        result = _ssh_verbose(world, key, sid, "echo should-not-run")
        assert result.returncode == 255 and "should-not-run" not in result.stdout
        assert "Permission denied" in result.stderr, result.stderr
        return result.stderr

    assert "not approved yet" in refused("erin", pending)
    assert "was denied by alice: not now" in refused("erin", denied)
    assert "key is not registered" in refused("stranger", mine)
    # Another engineer's session reads exactly like one that does not exist.
    others = refused("bob", mine).replace(mine, "SID")
    nothing = refused("bob", "ses-0123456789ab").replace("ses-0123456789ab", "SID")
    assert "no session 'SID'" in others and others == nothing
    assert "erin" not in others and "acme" not in others
    wait_for(lambda: world.session(short)["state"] == "ended", 30, "the short window's end")
    assert "access window ended" in refused("erin", short)
    ok = _ssh_verbose(world, "erin", mine, "echo fine")
    assert ok.returncode == 0 and ok.stdout.strip() == "fine", ok.stderr


def test_the_reason_is_told_only_to_whoever_holds_the_key(world: World) -> None:
    """An attacker who has erin's public key (public keys are) but signs with another
    key learns nothing about erin's sessions, and is of course not let in."""
    sid = world.request()  # pending: erin herself would be told so

    def attempt(sign_with: str) -> tuple[bool, str]:
        key = paramiko.Ed25519Key.from_private_key_file(str(world.keys["erin"]))
        if sign_with != "erin":
            other = paramiko.Ed25519Key.from_private_key_file(str(world.keys[sign_with]))
            key.sign_ssh_data = other.sign_ssh_data  # type: ignore[method-assign]
        transport = paramiko.Transport(("127.0.0.1", world.collector.ssh_port))
        try:
            transport.start_client(timeout=20)
            try:
                transport.auth_publickey(sid, key)
                accepted = True
            except paramiko.AuthenticationException:
                accepted = False
            return accepted, str(transport.get_banner() or b"", "utf-8", "replace")
        finally:
            transport.close()

    accepted, banner = attempt("stranger")
    assert not accepted and "refused" not in banner and "approved" not in banner, banner
    accepted, banner = attempt("erin")
    assert not accepted and "not approved yet" in banner, banner


def test_the_window_warning_is_shown_at_login_when_already_due(world: World) -> None:
    sid = world.request(duration="1h")  # the whole window is inside the 1h warning
    world.approve(sid)
    done = world.ssh("erin", sid, "echo hi")
    assert done.returncode == 0 and done.stdout.strip() == "hi", done.stderr
    assert "access window ends at" in done.stderr, done.stderr


def test_api_refusals_are_audited_naming_who_was_refused(world: World) -> None:
    sid = world.request()
    assert world.client("mallory", "session", "approve", sid).returncode == 1
    customer_request = world.client(
        "alice", "session", "request", "--host", "db-1", "--reason", "me too",
        "--duration", "1h",
    )  # fmt: skip
    assert customer_request.returncode == 1
    world.approve(sid)
    assert world.client("bob", "session", "terminate", sid).returncode == 1

    refused = {
        (e["actor"], e["details"]["action"], e["details"]["reason"])
        for e in _audit(world)
        if e["action"] == "session.refused"
    }
    # (the CLI reads the session before it approves: that read is what is refused)
    assert {r for r in refused if r[0] == "user:mallory"} <= {
        ("user:mallory", action, "other_customer") for action in ("show", "approve")
    }
    assert any(r[0] == "user:mallory" for r in refused)
    assert ("user:alice", "request", "role") in refused
    assert ("user:bob", "terminate", "not_allowed") in refused
    log = world.collector.log_text()
    assert "mallory (customer) refused" in log
    assert "bob (engineer) refused terminate" in log


def test_disconnected_events_count_the_bytes_sent_to_the_engineer(world: World) -> None:
    """The engineer's link drops (ssh killed) after the output arrived: the
    disconnection must still count every byte relayed."""
    sid = world.request()
    world.approve(sid)
    size, logins = 300_000, 2
    for _ in range(logins):
        ssh = subprocess.Popen(
            world.ssh_args("erin", sid, f"head -c {size} /dev/zero | tr '\\0' x; sleep 60"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert ssh.stdout is not None
            received = 0
            while received < size:
                chunk = ssh.stdout.read1(65536)
                assert chunk, "the output stopped early"
                received += len(chunk)
        finally:
            ssh.kill()
            ssh.wait()
    wait_for(lambda: len(_events(world, sid, "disconnected")) == logins, 20, "disconnections")
    sent = [e["details"]["bytes_to_engineer"] for e in _events(world, sid, "disconnected")]
    assert all(n >= size for n in sent), sent


def test_scp_and_sftp_transfers_are_listed_with_names_sizes_and_direction(world: World) -> None:
    sid = world.request()
    world.approve(sid)
    source = world.tmp / "report.bin"
    source.write_bytes(os.urandom(200_000))
    gateway = f"{sid}@127.0.0.1"
    up_sftp, up_legacy = world.tmp / "up-sftp.bin", world.tmp / "up-legacy.bin"
    for extra, target in (([], up_sftp), (["-O"], up_legacy)):
        copied = world.scp("erin", *extra, str(source), f"{gateway}:{target}")
        assert copied.returncode == 0, copied.stderr
    for extra, name in (([], "down-sftp.bin"), (["-O"], "down-legacy.bin")):
        copied = world.scp("erin", *extra, f"{gateway}:{source}", str(world.tmp / name))
        assert copied.returncode == 0, copied.stderr
    batch = world.tmp / "batch"
    batch.write_text(f"put {source} {world.tmp / 'put.bin'}\n")
    sftp = subprocess.run(
        ["sftp", *ssh_options(world.keys["erin"]), "-P", str(world.collector.ssh_port),
         "-b", str(batch), gateway],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert sftp.returncode == 0, sftp.stderr

    def transfers() -> list[tuple[str, str, str, int]]:
        return [
            (d["protocol"], d["direction"], d["path"], d["size_bytes"])
            for d in (e["details"] for e in _events(world, sid, "file_transfer"))
        ]

    wait_for(lambda: len(transfers()) >= 5, 20, "five file transfers on the timeline")
    assert sorted(transfers()) == sorted(
        [
            ("sftp", "upload", str(up_sftp), 200_000),
            ("scp", "upload", str(up_legacy), 200_000),
            ("sftp", "download", str(source), 200_000),
            ("scp", "download", str(source), 200_000),
            ("sftp", "upload", str(world.tmp / "put.bin"), 200_000),
        ]
    )
    shown = world.client("erin", "session", "show", sid)
    assert shown.returncode == 0, shown.stderr
    assert "file transfers:" in shown.stdout
    assert f"upload    sftp  {up_sftp}  " in shown.stdout, shown.stdout
    log = world.client("erin", "session", "log", sid)
    assert f"file: download  scp  {source} (report.bin)" in log.stdout, log.stdout + log.stderr


def test_a_bare_tcp_connect_logs_one_line_at_most(world: World) -> None:
    before = len(world.collector.log_text())
    with socket.create_connection(("127.0.0.1", world.collector.ssh_port)):
        pass
    wait_for(
        lambda: "handshake with 127.0.0.1 failed" in world.collector.log_text()[before:],
        20,
        "the failed handshake logged",
    )
    time.sleep(1.0)  # anything paramiko would add comes with it
    lines = [
        line
        for line in world.collector.log_text()[before:].splitlines()
        if "handshake" in line or "paramiko" in line or "Traceback" in line
        or line.startswith((" ", "\t")) or "Error reading SSH protocol banner" in line
    ]  # fmt: skip
    assert len(lines) == 1, "\n".join(lines)


def test_access_ends_with_the_ticket_even_for_a_login_right_after(world: World) -> None:
    for attempt in range(4):
        created = world.client_json(
            "erin", "ticket", "create", f"slow {attempt}", "--customer", "acme",
            "--host", "db-1", "--level", "3",
        )  # fmt: skip
        assert isinstance(created, dict)
        ticket = created["ticket"]["id"]
        sid = world.request(ticket=ticket)
        world.approve(sid)
        assert world.ssh("erin", sid, "true").returncode == 0
        resolved = world.client(
            "erin", "ticket", "resolve", str(ticket), "--cause", "c", "--actions", "a",
            "--prevention", "p",
        )  # fmt: skip
        assert resolved.returncode == 0, resolved.stderr
        late = _ssh_verbose(world, "erin", sid, "echo still-in")
        assert late.returncode == 255 and "still-in" not in late.stdout, f"attempt {attempt}"
        assert f"ticket {ticket} resolved" in late.stderr, late.stderr
        assert world.session(sid)["state"] == "ended"


def test_after_sigkill_the_restarted_collector_closes_torn_parts_and_connections(
    world: World,
) -> None:
    sid = world.request()
    world.approve(sid)
    shell = subprocess.Popen(
        world.ssh_args("erin", sid, tty=True),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: world.session(sid)["state"] == "active", 30, "engineer logged in")
        assert shell.stdin is not None
        shell.stdin.write("echo before-kill-$((6*7))\n")
        shell.stdin.flush()
        casts = world.collector.data_dir / "recordings" / sid

        def recorded() -> bool:
            return any("before-kill-42" in p.read_text(errors="replace") for p in casts.glob("*"))

        wait_for(recorded, 20, "the output recorded")
        process = world.collector.process
        assert process is not None
        process.kill()  # SIGKILL: nothing gets closed
        process.wait(timeout=10)
        shell.wait(timeout=20)
    finally:
        if shell.poll() is None:
            shell.kill()
    [torn] = list(casts.glob("*.cast"))
    with torn.open("ab") as file:  # the write the kill cut in half
        file.write(b'[1.5, "o", "half a li')
    world.collector.start()

    detail = world.session(sid)
    [part] = detail["recordings"]  # type: ignore[misc]
    data = torn.read_bytes()
    assert data.endswith(b"\n") and b"half a li" not in data
    assert part["ended"] and part["size_bytes"] == len(data) > 0
    assert part["sha256"] == hashlib.sha256(data).hexdigest()
    connected = _events(world, sid, "connected")
    disconnected = _events(world, sid, "disconnected")
    assert len(connected) == len(disconnected) == 1
    assert disconnected[0]["details"]["reason"] == "collector restarted"
    assert disconnected[0]["details"]["recordings_closed"] == [part["part"]]
    replay = world.client("erin", "session", "replay", sid, "--raw")
    assert replay.returncode == 0 and "before-kill-42" in replay.stdout, replay.stderr
    # A second start finds nothing left to close.
    world.collector.stop()
    world.collector.start()
    assert len(_events(world, sid, "disconnected")) == 1
