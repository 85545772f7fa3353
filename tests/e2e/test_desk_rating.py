"""Satisfaction ratings end to end (desk-chain): ``aftercare ticket rate`` through the
real CLI against a real collector, the refusals, the timeline, the audit chain and
``aftercare stats``."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from tests.support import Collector


def test_a_customer_rates_a_closed_ticket_through_the_cli(collector: Collector) -> None:
    erin = collector.add_user("erin", "engineer")
    alice = collector.add_user("alice", "customer", customer="acme")
    mallory = collector.add_user("mallory", "customer", customer="globex")

    created = collector.client_json(alice, "ticket", "create", "printer jams")
    ticket_id = str(created["ticket"]["id"])
    early = collector.client(alice, "ticket", "rate", ticket_id, "5")
    assert early.returncode == 1 and "only a closed ticket can be rated" in early.stderr
    resolved = collector.client(
        erin, "ticket", "resolve", ticket_id, "--cause", "worn roller", "--actions", "replaced"
    )
    assert resolved.returncode == 0, resolved.stderr
    confirmed = collector.client(alice, "ticket", "confirm", ticket_id)
    assert confirmed.returncode == 0, confirmed.stderr

    out_of_range = collector.client(alice, "ticket", "rate", ticket_id, "6")
    assert out_of_range.returncode != 0 and "out of range" in out_of_range.stderr
    engineer = collector.client(erin, "ticket", "rate", ticket_id, "5")
    assert engineer.returncode == 1 and "PERMISSION_DENIED" in engineer.stderr
    other = collector.client(mallory, "ticket", "rate", ticket_id, "1")
    assert other.returncode == 1 and "NOT_FOUND" in other.stderr

    rated = collector.client_json(
        alice, "ticket", "rate", ticket_id, "4", "--comment", "fixed the same day"
    )
    assert rated == {"id": int(ticket_id), "state": "closed", "score": 4}
    shown = collector.client_json(alice, "ticket", "show", ticket_id)
    event = shown["events"][-1]
    assert (event["kind"], event["details"]) == (
        "rated",
        {"score": 4, "comment": "fixed the same day"},
    )
    text = collector.client(alice, "ticket", "show", ticket_id).stdout
    assert "satisfaction 4/5: fixed the same day" in text

    year = str(dt.datetime.now(ZoneInfo("Asia/Shanghai")).year)
    stats = collector.client_json(alice, "stats", "--period", year)
    assert stats["ratings"] == {
        "count": 1,
        "mean": 4.0,
        "distribution": {"1": 0, "2": 0, "3": 0, "4": 1, "5": 0},
    }
    table = collector.client(erin, "stats", "--customer", "acme", "--period", year)
    assert "satisfaction: mean 4.00 (n=1;" in table.stdout

    audit = collector.admin("audit", "verify")
    assert audit.returncode == 0 and "intact" in audit.stdout
    entries = json.loads(collector.admin("audit", "list", "--json").stdout)
    assert [e["details"]["score"] for e in entries if e["action"] == "ticket.rated"] == [4]


def test_ticket_show_offers_how_a_similar_ticket_was_fixed(collector: Collector) -> None:
    erin = collector.add_user("erin", "engineer")
    alice = collector.add_user("alice", "customer", customer="acme")
    mallory = collector.add_user("mallory", "customer", customer="globex")
    fixed = str(collector.client_json(alice, "ticket", "create", "printer jams")["ticket"]["id"])
    resolved = collector.client(
        erin, "ticket", "resolve", fixed, "--cause", "worn roller", "--actions", "replaced"
    )
    assert resolved.returncode == 0, resolved.stderr
    new = str(
        collector.client_json(alice, "ticket", "create", "printer jams again")["ticket"]["id"]
    )

    shown = collector.client_json(alice, "ticket", "show", new)
    [known] = shown["similar"]
    assert (known["id"], known["cause"], known["actions"]) == (
        int(fixed),
        "worn roller",
        "replaced",
    )
    text = collector.client(erin, "ticket", "show", new).stdout
    assert f"ticket {fixed}" in text and "cause: worn roller" in text
    theirs = collector.client_json(mallory, "ticket", "create", "printer jams")["ticket"]["id"]
    assert collector.client_json(mallory, "ticket", "show", str(theirs))["similar"] == []
