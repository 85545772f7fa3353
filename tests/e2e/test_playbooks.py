"""Playbooks end to end: real collector, agent and CLI; signed runs work, the rest is refused."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from playbooks.shipped import catalogue_dir, dev_public_key_path
from tests.support import Agent, Collector, vendor_catalogue, wait_for

MUTATING = """name: rotate-marker
version: 1.0.0
description: A mutating playbook for tests (creates a marker file).
mode: mutating
steps:
  - name: touch
    exec:
      argv: ["touch", "{marker}"]
"""


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[..., Collector]]:
    servers: list[Collector] = []

    def start(*extra: str, rules: str = "") -> Collector:
        args = ["--evaluation-interval", "500ms", *extra]
        if rules:
            (tmp_path / "rules.yaml").write_text(rules)
            args += ["--rules", str(tmp_path / "rules.yaml")]
        server = Collector(tmp_path / "collector", extra_args=args).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        print("--- collector log ---\n" + server.log_text()[-5000:])


def _agent(
    collector: Collector,
    make_agent: Callable[..., Agent],
    tmp_path: Path,
    keys: list[Path],
    policy: str = "",
) -> Agent:
    (tmp_path / "policy.toml").write_text(policy)
    (tmp_path / "policy.toml").chmod(0o600)
    agent = make_agent(
        "web-1",
        playbooks={"trusted_keys": [str(k) for k in keys], "policy": str(tmp_path / "policy.toml")},
    )
    assert agent.enroll(collector.join_command("acme")).returncode == 0
    agent.start()
    token = collector.admin_token
    wait_for(lambda: collector.client_json(token, "agents")[0]["connected"], 20, "agent connected")
    return agent


def _run_show(collector: Collector, token: str, run_id: str) -> dict[str, Any]:
    return dict(collector.client_json(token, "run", "show", run_id))


def _finished(collector: Collector, token: str, run_id: str) -> dict[str, Any] | None:
    shown = _run_show(collector, token, run_id)
    finished = {"ok", "failed", "timed_out", "cancelled", "refused", "undeliverable"}
    return shown if shown["run"]["state"] in finished else None


def test_signed_playbook_runs_follows_live_and_attaches_to_the_ticket(
    tmp_path: Path, started: Callable[..., Collector], make_agent: Callable[..., Agent]
) -> None:
    collector = started()
    _agent(collector, make_agent, tmp_path, [dev_public_key_path()])
    token = collector.add_user("erin", "engineer")
    ticket = collector.client_json(
        token,
        "ticket",
        "create",
        "slow box",
        "--customer",
        "acme",
        "--host",
        "web-1",
        "--level",
        "3",
    )["ticket"]["id"]
    follow = collector.client(
        token, "run", "cpu-load", "--host", "web-1", "--ticket", str(ticket), "--follow"
    )
    assert follow.returncode == 0, follow.stderr
    assert "load" in follow.stdout.lower()
    runs = collector.client_json(token, "runs")
    assert runs[0]["playbook"] == "cpu-load" and runs[0]["state"] == "ok"
    shown = _run_show(collector, token, runs[0]["run_id"])
    assert shown["result"]["steps"] and shown["output"]
    events = collector.client_json(token, "ticket", "show", str(ticket))["events"]
    diagnostics = [e for e in events if e["kind"] == "diagnostics"]
    assert diagnostics and diagnostics[0]["details"]["playbook"] == "cpu-load"
    assert diagnostics[0]["details"]["output"]


def test_a_compromised_collector_cannot_run_a_tampered_playbook(
    tmp_path: Path, started: Callable[..., Collector], make_agent: Callable[..., Agent]
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(catalogue_dir(), tampered)
    path = tampered / "cpu-load.yaml"
    path.write_bytes(path.read_bytes().replace(b"busiest", b"Busiest", 1))  # still valid YAML
    collector = started("--playbooks", str(tampered))
    _agent(collector, make_agent, tmp_path, [dev_public_key_path()])
    token = collector.admin_token
    run = collector.client_json(token, "run", "time-sync", "--host", "web-1")
    ok = wait_for(lambda: _finished(collector, token, run["run_id"]), 30, "untouched playbook")
    assert ok["run"]["state"] == "ok", "an intact playbook of the same catalogue still runs"
    bad = collector.client(token, "run", "cpu-load", "--host", "web-1", "--json")
    assert bad.returncode == 0, bad.stderr
    run_id = json.loads(bad.stdout)["run_id"]
    shown = wait_for(lambda: _finished(collector, token, run_id), 30, "refusal")
    assert shown["run"]["state"] == "refused"
    assert "sha256" in shown["run"]["message"]
    audit = json.loads(collector.admin("audit", "list", "--json").stdout)
    refusals = [e for e in audit if e["action"] == "playbook.run_refused"]
    assert refusals and refusals[-1]["target"] == run_id


def test_an_agent_without_a_pinned_key_runs_nothing(
    tmp_path: Path, started: Callable[..., Collector], make_agent: Callable[..., Agent]
) -> None:
    collector = started()
    _agent(collector, make_agent, tmp_path, [])
    token = collector.admin_token
    run = collector.client_json(token, "run", "time-sync", "--host", "web-1")
    shown = wait_for(lambda: _finished(collector, token, run["run_id"]), 30, "refusal")
    assert shown["run"]["state"] == "refused"
    assert "trusts no vendor key" in shown["run"]["message"]


def test_parameter_injection_is_refused_before_it_leaves_the_collector(
    tmp_path: Path, started: Callable[..., Collector], make_agent: Callable[..., Agent]
) -> None:
    collector = started()
    _agent(collector, make_agent, tmp_path, [dev_public_key_path()])
    token = collector.admin_token
    for value in ("/; rm -rf /", "$(reboot)", "../../etc/shadow", "-rf"):
        result = collector.client(
            token, "run", "disk-usage", "--host", "web-1", "--param", f"path={value}"
        )
        assert result.returncode == 1, value
        assert "path" in result.stderr
    assert collector.client_json(token, "runs") == []


def test_mutating_playbook_waits_for_the_customer_and_only_the_right_one(
    tmp_path: Path, started: Callable[..., Collector], make_agent: Callable[..., Agent]
) -> None:
    """Where the customer trusts the collector's word (approval = "collector")."""
    marker = tmp_path / "marker"
    vendor_key = vendor_catalogue(tmp_path, {"rotate-marker.yaml": MUTATING.format(marker=marker)})
    collector = started("--playbooks", str(tmp_path / "catalogue"))
    trusting = '[defaults]\napproval = "collector"\n'
    _agent(collector, make_agent, tmp_path, [vendor_key], trusting)
    engineer = collector.add_user("erin", "engineer")
    alice = collector.add_user("alice", "customer", customer="acme")
    mallory = collector.add_user("mallory", "customer", customer="globex")
    run = collector.client_json(engineer, "run", "rotate-marker", "--host", "web-1")
    run_id = run["run_id"]
    wait_for(
        lambda: _run_show(collector, engineer, run_id)["run"]["state"] == "waiting_approval",
        20,
        "waiting for approval",
    )
    assert not marker.exists()
    assert collector.client(engineer, "run", "approve", run_id, "--yes").returncode == 1
    assert collector.client(mallory, "run", "approve", run_id, "--yes").returncode == 1
    unconfirmed = collector.client(alice, "run", "approve", run_id)
    assert unconfirmed.returncode == 1 and "pass --yes" in unconfirmed.stderr
    assert not marker.exists()
    approved = collector.client(alice, "run", "approve", run_id, "--yes")
    assert approved.returncode == 0, approved.stderr
    shown = wait_for(lambda: _finished(collector, engineer, run_id), 30, "run finished")
    assert shown["run"]["state"] == "ok"
    assert marker.exists()
    audit = [e["action"] for e in json.loads(collector.admin("audit", "list", "--json").stdout)]
    assert "playbook.run_requested" in audit and "playbook.run_approved" in audit


def test_a_customer_denies_a_waiting_run_with_the_cli_and_the_host_drops_it(
    tmp_path: Path, started: Callable[..., Collector], make_agent: Callable[..., Agent]
) -> None:
    marker = tmp_path / "marker"
    vendor_key = vendor_catalogue(tmp_path, {"rotate-marker.yaml": MUTATING.format(marker=marker)})
    collector = started("--playbooks", str(tmp_path / "catalogue"))
    trusting = '[defaults]\napproval = "collector"\n'
    agent = _agent(collector, make_agent, tmp_path, [vendor_key], trusting)
    engineer = collector.add_user("erin", "engineer")
    alice = collector.add_user("alice", "customer", customer="acme")
    mallory = collector.add_user("mallory", "customer", customer="globex")
    run = collector.client_json(
        engineer, "run", "rotate-marker", "--host", "web-1", "--reason", "stale marker"
    )
    run_id = run["run_id"]
    wait_for(
        lambda: _run_show(collector, engineer, run_id)["run"]["state"] == "waiting_approval",
        20,
        "waiting for approval",
    )
    assert run["reason"] == "stale marker"
    assert _run_show(collector, alice, run_id)["run"]["reason"] == "stale marker"
    assert "  reason stale marker" in collector.client(alice, "run", "show", run_id).stdout
    listed = collector.client(engineer, "runs").stdout
    assert run_id in listed and listed.rstrip().endswith("stale marker")
    assert collector.client_json(engineer, "runs")[0]["reason"] == "stale marker"
    no_reason = collector.client(alice, "run", "deny", run_id)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    assert collector.client(mallory, "run", "deny", run_id, "--reason", "x").returncode == 1
    assert collector.client(engineer, "run", "deny", run_id, "--reason", "x").returncode == 1
    denied = collector.client_json(alice, "run", "deny", run_id, "--reason", "not today")
    assert denied["state"] == "refused" and denied["message"] == "denied by user:alice: not today"
    runs_log = agent.state_dir / "runs.log"
    wait_for(lambda: "cancelled by the collector" in runs_log.read_text(), 20, "host dropped it")
    assert not marker.exists()
    audit = json.loads(collector.admin("audit", "list", "--json").stdout)
    requested = next(e for e in audit if e["action"] == "playbook.run_requested")
    assert requested["details"]["reason"] == "stale marker"
    assert any(e["action"] == "playbook.run_denied" and e["actor"] == "user:alice" for e in audit)


RULE_WITH_PLAYBOOK = """
groups:
  - name: test
    rules:
      - name: memory_present
        condition: {metric: memory_total_bytes, op: ">", threshold: 0}
        level: 3
        annotations: {summary: "{{ host }} has memory"}
        playbook: time-sync
"""


def test_a_rule_ticket_runs_its_diagnostic_playbook(
    tmp_path: Path, started: Callable[..., Collector], make_agent: Callable[..., Agent]
) -> None:
    collector = started(rules=RULE_WITH_PLAYBOOK)
    _agent(collector, make_agent, tmp_path, [dev_public_key_path()])
    token = collector.admin_token

    def diagnostics() -> list[dict[str, Any]]:
        tickets = collector.client_json(token, "tickets")
        if not tickets:
            return []
        events = collector.client_json(token, "ticket", "show", str(tickets[0]["id"]))["events"]
        return [e for e in events if e["kind"] == "diagnostics"]

    [event] = wait_for(diagnostics, 40, "diagnostics on the rule's ticket")
    assert event["details"]["playbook"] == "time-sync"
    assert event["details"]["status"] == "ok"
