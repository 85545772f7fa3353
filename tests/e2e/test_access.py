"""API access end to end: customers see only their own hosts; bad tokens are refused."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.support import Agent, Collector, wait_for


def _two_customers(collector: Collector, make_agent: Callable[..., Agent]) -> tuple[Agent, Agent]:
    acme = make_agent("acme-web")
    assert acme.enroll(collector.join_command("acme")).returncode == 0
    globex = make_agent("globex-db")
    assert globex.enroll(collector.join_command("globex")).returncode == 0
    acme.start()
    globex.start()
    return acme, globex


def test_customer_token_sees_only_its_own_hosts(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    _, globex = _two_customers(collector, make_agent)
    acme_user = collector.add_user("alice", "customer", customer="acme")
    engineer = collector.add_user("erin", "engineer")

    hosts = collector.client_json(engineer, "agents")
    assert {h["hostname"] for h in hosts} == {"acme-web", "globex-db"}

    mine = collector.client_json(acme_user, "agents")
    assert [h["hostname"] for h in mine] == ["acme-web"]

    other = collector.client(acme_user, "host", "globex-db")
    assert other.returncode == 1
    assert "no host 'globex-db'" in other.stderr  # not found: existence does not leak
    by_id = collector.client(acme_user, "host", globex.agent_id)
    assert by_id.returncode == 1
    filtered = collector.client(acme_user, "agents", "--customer", "globex")
    assert filtered.returncode == 1
    assert "PERMISSION_DENIED" in filtered.stderr

    wait_for(
        lambda: collector.client_json(acme_user, "host", "acme-web")["samples"],
        20,
        "acme-web samples",
    )


def test_wrong_or_missing_token_is_refused(collector: Collector) -> None:
    result = collector.client("act_wrong", "agents")
    assert result.returncode == 1
    assert "unknown API token" in result.stderr
    from tests.support import run

    missing = run(
        "collector.client.cli",
        "--collector",
        collector.api,
        "--ca-file",
        str(collector.data_dir / "ca.pem"),
        "agents",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert missing.returncode == 2
    assert "AFTERCARE_TOKEN" in missing.stderr


def test_whoami_reports_role_and_customer(collector: Collector) -> None:
    token = collector.add_user("carol", "customer", customer="acme")
    assert collector.client_json(token, "whoami") == {
        "user": "carol",
        "role": "customer",
        "customer": "acme",
    }


def test_user_add_validates_roles_and_names(collector: Collector) -> None:
    bad_role = collector.admin("user", "add", "x", "--role", "root")
    assert bad_role.returncode == 2
    no_customer = collector.admin("user", "add", "x", "--role", "customer")
    assert no_customer.returncode == 1
    assert "--customer" in no_customer.stderr
    bad_name = collector.admin("user", "add", "x; drop table users", "--role", "engineer")
    assert bad_name.returncode == 1
    duplicate = [collector.admin("user", "add", "dup", "--role", "engineer") for _ in range(2)]
    assert duplicate[0].returncode == 0
    assert duplicate[1].returncode == 1
    listing = json.loads(collector.admin("audit", "list", "--json").stdout)
    assert sum(1 for e in listing if e["action"] == "user.added" and e["target"] == "dup") == 1
