"""The customer's signed consent end to end, as the customer's people would use it.

A real collector, a real agent that pins the customer's approval root, a real sshd as
the host's support login and the stock OpenSSH client; the customer's administrator
and approver use the real ``aftercare`` CLI, each with their own home directory.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from playbooks.sign import write_signed_catalogue
from playbooks.signing_keys import generate_keypair
from tests.gateway_support import World, make_world
from tests.sshd import needs_sshd
from tests.support import Agent, Collector, run, wait_for

pytestmark = pytest.mark.slow

MUTATING = """name: rotate-marker
version: 1.0.0
description: A mutating playbook for tests (creates a marker file).
mode: mutating
parameters:
  - name: word
    type: string
    pattern: '[a-z]+'
    required: true
steps:
  - name: touch
    exec:
      argv: ["touch", "{marker}"]
"""


class People:
    """The customer's administrator (holds the root) and approver alice (her own key)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        init = self.offline("admin", "approvers", "init", "--json")
        self.root_fingerprint = str(init["root_fingerprint"])
        self.root_key = Path(init["key_file"])
        key = self.offline("alice", "approvers", "key", "--json")
        self.alice_public = str(key["public_key"])

    def cli(
        self, collector: Collector | None, token: str, home: str, *args: str
    ) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("AFTERCARE_")}
        environ["HOME"] = str(self.tmp / home)
        options = collector.client_options(token) if collector else []
        return run("collector.client.cli", *options, *args, env=environ)

    def offline(self, home: str, *args: str) -> dict[str, Any]:
        result = self.cli(None, "", home, *args)
        assert result.returncode == 0, result.stderr
        value: dict[str, Any] = json.loads(result.stdout)
        return value

    def certify_alice(self, collector: Collector, admin_token: str) -> None:
        added = self.cli(
            collector, admin_token, "admin", "approvers", "add", "alice",
            "--key", self.alice_public, "--customer", "acme", "--root-key", str(self.root_key),
        )  # fmt: skip
        assert added.returncode == 0, added.stderr


@pytest.fixture
def people(tmp_path: Path) -> People:
    return People(tmp_path)


@pytest.fixture
def world(tmp_path: Path, make_agent: Callable[..., Agent], people: People) -> Iterator[World]:
    yield from make_world(tmp_path, make_agent, "signed", people.root_fingerprint)


@needs_sshd
def test_a_signed_session_approval_opens_the_login_and_a_revoked_key_cannot(
    world: World, people: People
) -> None:
    alice = world.tokens["alice"]
    people.certify_alice(world.collector, alice)
    host = world.client_json("erin", "host", "db-1")
    assert isinstance(host, dict) and host["agent"]["approval_root"] == people.root_fingerprint

    sid = world.request()
    unsigned = world.collector.client(alice, "session", "approve", sid)
    assert unsigned.returncode == 1 and "approvers key" in unsigned.stderr
    assert world.ssh("erin", sid, "true").returncode == 255  # still pending

    signed = people.cli(
        world.collector, alice, "alice", "session", "approve", sid, "--until", "20m"
    )
    assert signed.returncode == 0, signed.stderr
    login = world.ssh("erin", sid, "id -un")
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == world.sshd.user
    sessions_log = (world.agent.state_dir / "sessions.log").read_text()
    journal = [json.loads(line) for line in sessions_log.splitlines()]
    opened = [e for e in journal if e["event"] == "tunnel_opened"]
    assert opened and opened[0]["approved_by"] == "signed by alice of acme"

    revoked = people.cli(
        world.collector, alice, "admin", "approvers", "revoke", "alice",
        "--customer", "acme", "--root-key", str(people.root_key), "--reason", "test",
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    consent = world.agent.state_dir / "consent.json"
    wait_for(lambda: consent.exists() and "revoked_keys" in consent.read_text(), 20, "revoked")
    again = world.request()
    refused = people.cli(world.collector, alice, "alice", "session", "approve", again)
    assert refused.returncode == 1 and "revoked" in refused.stderr


def test_a_signed_run_approval_runs_exactly_that_run(
    tmp_path: Path, make_agent: Callable[..., Agent], people: People
) -> None:
    private, public = generate_keypair()
    (tmp_path / "vendor.pub").write_bytes(public)
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    marker = tmp_path / "marker"
    (catalogue / "rotate-marker.yaml").write_text(MUTATING.format(marker=marker))
    write_signed_catalogue(catalogue, private, catalogue_version=1, valid_for=dt.timedelta(days=1))
    collector = Collector(tmp_path / "collector", extra_args=["--playbooks", str(catalogue)])
    collector.start()
    try:
        agent = make_agent(
            "web-1",
            playbooks={"trusted_keys": [str(tmp_path / "vendor.pub")]},
            approvals={"root": people.root_fingerprint},
        )
        assert agent.enroll(collector.join_command("acme")).returncode == 0
        agent.start()
        erin = collector.add_user("erin", "engineer")
        alice = collector.add_user("alice", "customer", customer="acme")
        wait_for(lambda: collector.client_json(erin, "agents")[0]["connected"], 20, "connected")
        people.certify_alice(collector, alice)

        started = collector.client_json(
            erin, "run", "rotate-marker", "--host", "web-1", "--param", "word=ok"
        )
        run_id = started["run_id"]
        state = lambda: collector.client_json(erin, "run", "show", run_id)["run"]["state"]  # noqa: E731
        wait_for(lambda: state() == "waiting_approval", 20, "waiting for approval")
        unsigned = collector.client(alice, "run", "approve", run_id, "--yes")
        assert unsigned.returncode == 1 and "approvers key" in unsigned.stderr
        assert not marker.exists()

        signed = people.cli(collector, alice, "alice", "run", "approve", run_id, "--yes")
        assert signed.returncode == 0, signed.stderr
        assert "rotate-marker" in signed.stdout and "word" in signed.stdout
        wait_for(lambda: state() == "ok", 30, "the run finished")
        assert marker.exists()
        log = (agent.state_dir / "runs.log").read_text()
        assert "signed by alice of acme" in log
    finally:
        collector.stop()
        print("--- collector log ---\n" + collector.log_text()[-5000:])
