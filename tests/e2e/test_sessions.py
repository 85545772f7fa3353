"""Remote session requests end to end: only the host's customer decides; all is recorded.

(The SSH gateway that uses an approved session is not built yet.)
"""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.support import Agent, Collector


def _setup(collector: Collector, make_agent: Callable[..., Agent]) -> dict[str, str]:
    agent = make_agent("db-1")
    assert agent.enroll(collector.join_command("acme")).returncode == 0
    return {
        "erin": collector.add_user("erin", "engineer"),
        "alice": collector.add_user("alice", "customer", customer="acme"),
        "mallory": collector.add_user("mallory", "customer", customer="globex"),
    }


def test_request_is_decided_only_by_the_hosts_customer_and_lands_on_the_ticket(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    users = _setup(collector, make_agent)
    ticket = collector.client_json(
        users["erin"],
        "ticket",
        "create",
        "db slow",
        "--customer",
        "acme",
        "--host",
        "db-1",
        "--level",
        "2",
    )["ticket"]["id"]
    session = collector.client_json(
        users["erin"],
        "session",
        "request",
        "--host",
        "db-1",
        "--reason",
        "check the query plan",
        "--duration",
        "2h",
        "--ticket",
        str(ticket),
    )
    sid = session["session_id"]
    assert session["state"] == "pending" and session["window_end"] is None

    assert collector.client_json(users["mallory"], "sessions") == []
    assert collector.client(users["mallory"], "session", "approve", sid).returncode == 1
    refused = collector.client(users["erin"], "session", "approve", sid)
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr
    assert (
        collector.client(
            users["alice"], "session", "request", "--host", "db-1", "--reason", "x"
        ).returncode
        == 1
    ), "customers do not request access"

    [listed] = collector.client_json(users["alice"], "sessions")
    assert listed["session_id"] == sid and listed["state"] == "pending"
    approved = collector.client_json(users["alice"], "session", "approve", sid, "--until", "30m")
    assert approved["state"] == "approved" and approved["approved_by"] == "alice"
    assert approved["window_start"] is not None and approved["window_end"] is not None
    again = collector.client(users["alice"], "session", "approve", sid)
    assert again.returncode == 1, "a decided request cannot be approved twice"

    ended = collector.client_json(users["alice"], "session", "terminate", sid)
    assert ended["state"] == "terminated"

    events = collector.client_json(users["erin"], "ticket", "show", str(ticket))["events"]
    kinds = [e["kind"] for e in events]
    assert kinds[-3:] == ["remote_requested", "remote_approved", "remote_ended"]
    audit = [e["action"] for e in json.loads(collector.admin("audit", "list", "--json").stdout)]
    for action in ("session.requested", "session.approved", "session.terminated"):
        assert action in audit


def test_a_denied_request_never_opens_a_window(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    users = _setup(collector, make_agent)
    sid = collector.client_json(
        users["erin"], "session", "request", "--host", "db-1", "--reason", "look around"
    )["session_id"]
    no_reason = collector.client(users["alice"], "session", "deny", sid, "--reason", " ")
    assert no_reason.returncode == 1
    denied = collector.client_json(users["alice"], "session", "deny", sid, "--reason", "not now")
    assert denied["state"] == "denied" and denied["window_end"] is None
    assert collector.client(users["alice"], "session", "approve", sid).returncode == 1
