"""Enrolment end to end: a join command works once, with the right CA and a live token."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from tests.support import Agent, Collector


def test_join_command_enrols_and_host_becomes_visible(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent("web-1")
    result = agent.enroll(collector.join_command("acme"))
    assert result.returncode == 0, result.stderr
    identity = json.loads((agent.state_dir / "identity.json").read_text())
    assert identity["customer"] == "acme"
    assert identity["agent_endpoint"] == collector.agent_address
    assert oct((agent.state_dir / "key.pem").stat().st_mode & 0o777) == "0o600"
    agent.start()

    def host_visible() -> dict[str, object] | None:
        hosts = collector.client_json(collector.admin_token, "agents")
        row = next((h for h in hosts if h["hostname"] == "web-1"), None)
        return row if row and row["connected"] and row["health"]["has_data"] else None

    from tests.support import wait_for

    row = wait_for(host_visible, 20, "web-1 connected with health data")
    assert row["customer"] == "acme"
    assert row["agent_version"]
    detail = collector.client_json(collector.admin_token, "host", "web-1")
    names = {s["name"] for s in detail["samples"]}
    assert {"memory_total_bytes", "cpu_usage_ratio", "filesystem_used_ratio"} <= names
    assert detail["gaps"] == []
    metrics = collector.metrics()
    assert (
        f'aftercare_agent_connected{{agent_id="{agent.agent_id}",customer="acme",host="web-1"}} 1.0'
        in metrics
    )
    assert "aftercare_host_memory_total_bytes{" in metrics


def test_wrong_ca_hash_is_refused_and_writes_nothing(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    join = collector.join_command("acme")
    join[join.index("--ca-hash") + 1] = "sha256:" + "ab" * 32
    agent = make_agent("web-1")
    result = agent.enroll(join)
    assert result.returncode == 1
    assert "did not present a CA with hash" in result.stderr
    assert not agent.state_dir.exists() or not any(agent.state_dir.iterdir())


def test_reused_token_is_refused(collector: Collector, make_agent: Callable[..., Agent]) -> None:
    join = collector.join_command("acme")
    assert make_agent("web-1").enroll(join).returncode == 0
    second = make_agent("web-2")
    result = second.enroll(join)
    assert result.returncode == 1
    assert "already used" in result.stderr
    assert not (second.state_dir / "identity.json").exists()
    assert not (second.state_dir / "key.pem").exists()


def test_expired_token_is_refused(collector: Collector, make_agent: Callable[..., Agent]) -> None:
    join = collector.join_command("acme", ttl="1s")
    time.sleep(1.5)
    agent = make_agent("web-1")
    result = agent.enroll(join)
    assert result.returncode == 1
    assert "expired" in result.stderr
    assert not (agent.state_dir / "identity.json").exists()


def test_unknown_token_is_refused(collector: Collector, make_agent: Callable[..., Agent]) -> None:
    join = collector.join_command("acme")
    join[join.index("--token") + 1] = "ajt_not-a-real-token"
    result = make_agent("web-1").enroll(join)
    assert result.returncode == 1
    assert "refused the join token" in result.stderr


def test_enrolling_twice_needs_force(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent("web-1")
    assert agent.enroll(collector.join_command("acme")).returncode == 0
    first_id = agent.agent_id
    again = agent.enroll(collector.join_command("acme"))
    assert again.returncode == 1
    assert "already enrolled" in again.stderr
    assert agent.agent_id == first_id


def test_refusals_and_admin_actions_are_audited(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    join = collector.join_command("acme")
    agent = make_agent("web-1")
    assert agent.enroll(join).returncode == 0
    assert make_agent("web-2").enroll(join).returncode == 1
    collector.add_user("eve", "engineer")
    assert collector.admin("agent", "revoke", agent.agent_id).returncode == 0
    listing = collector.admin("audit", "list", "--json")
    actions = [entry["action"] for entry in json.loads(listing.stdout)]
    for action in (
        "join_token.created",
        "agent.enrolled",
        "auth.failed",  # the refusal, aggregated per source and minute
        "user.added",
        "agent.revoked",
    ):
        assert action in actions, actions
