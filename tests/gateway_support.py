"""A whole remote-session setup for tests and benchmarks: a real sshd as the host's
support login, a collector with its SSH gateway, an agent whose sessions go to that
sshd, users with registered keys, and the stock OpenSSH client."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.sshd import RealSshd, keygen
from tests.support import Agent, Collector, wait_for


@dataclass
class World:
    collector: Collector
    agent: Agent
    sshd: RealSshd
    tokens: dict[str, str]
    keys: dict[str, Path]
    tmp: Path

    def client(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.collector.client(self.tokens[user], *args)

    def client_json(self, user: str, *args: str) -> object:
        return self.collector.client_json(self.tokens[user], *args)

    def request(self, engineer: str = "erin", duration: str = "1h", ticket: int = 0) -> str:
        """A new session request for db-1 (on ``ticket`` if given); its id."""
        session = self.client_json(
            engineer, "session", "request", "--host", "db-1", "--reason", "slow queries",
            "--duration", duration, "--ticket", str(ticket),
        )  # fmt: skip
        assert isinstance(session, dict)
        return str(session["session_id"])

    def approve(self, sid: str, *extra: str) -> None:
        result = self.client("alice", "session", "approve", sid, *extra)
        assert result.returncode == 0, result.stderr

    def ssh_args(self, key: str, sid: str, *command: str, tty: bool = False) -> list[str]:
        return [
            "ssh", *ssh_options(self.keys[key]), "-p", str(self.collector.ssh_port),
            "-tt" if tty else "-T", f"{sid}@127.0.0.1", *command,
        ]  # fmt: skip

    def ssh(
        self, key: str, sid: str, *command: str, stdin: str = "", tty: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.ssh_args(key, sid, *command, tty=tty),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def scp(self, key: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["scp", *ssh_options(self.keys[key]), "-P", str(self.collector.ssh_port), *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    def session(self, sid: str) -> dict[str, object]:
        detail = self.client_json("erin", "session", "show", sid)
        assert isinstance(detail, dict)
        return detail


def ssh_options(key: Path, log_level: str = "ERROR") -> list[str]:
    """``log_level``: OpenSSH prints the server's banners from INFO (its default) up."""
    return [
        "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", f"LogLevel={log_level}", "-o", "ConnectTimeout=20",
    ]  # fmt: skip


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    match = re.search(r"^" + pattern + "$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


BASE_COLLECTOR_ARGS = ("--record-input", "--session-warning", "6s", "--evaluation-interval", "1s")


def make_world(
    tmp_path: Path,
    make_agent: Callable[..., Agent],
    approval: str = "collector",
    approval_root: str = "",
    collector_args: Sequence[str] = (),
) -> Iterator[World]:
    """``approval``: the host's ``[sessions] approval``; ``approval_root``: the customer
    approval root it pins (``[approvals] root``, "" for none); ``collector_args``:
    more options for ``aftercare-collector serve`` (later ones win)."""
    sshd = RealSshd(tmp_path / "sshd")
    sshd.start()
    collector = Collector(
        tmp_path / "collector",
        extra_args=[*BASE_COLLECTOR_ARGS, *collector_args],
    ).start()
    try:
        policy = tmp_path / "policy.toml"
        policy.write_text(f'[sessions]\napproval = "{approval}"\n')
        policy.chmod(0o600)
        agent = make_agent(
            "db-1",
            playbooks={"policy": str(policy)},
            sessions={
                "backend": "sshd",
                "sshd_address": f"127.0.0.1:{sshd.port}",
                "user": sshd.user,
                "key_file": str(sshd.client_key),
                "host_key_files": [str(sshd.host_key_pub)],
            },
            approvals={"root": approval_root},
        )
        assert agent.enroll(collector.join_command("acme")).returncode == 0
        agent.start()
        tokens = {
            "erin": collector.add_user("erin", "engineer"),
            "bob": collector.add_user("bob", "engineer"),
            "alice": collector.add_user("alice", "customer", customer="acme"),
            "mallory": collector.add_user("mallory", "customer", customer="globex"),
        }
        keys = {
            name: keygen(tmp_path / f"{name}_key", name) for name in ("erin", "bob", "stranger")
        }
        for name in ("erin", "bob"):
            added = collector.client(tokens[name], "keys", "add", str(keys[name]) + ".pub")
            assert added.returncode == 0, added.stderr
        world = World(collector, agent, sshd, tokens, keys, tmp_path)

        def agent_connected() -> bool:
            agents = world.client_json("erin", "agents")
            assert isinstance(agents, list)
            return bool(agents and agents[0]["connected"])

        wait_for(agent_connected, 30, "agent connected")
        yield world
    finally:
        collector.stop()
        sshd.stop()
        print("--- collector log ---\n" + collector.log_text()[-8000:])
