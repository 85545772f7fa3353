"""The service desk end to end (desk-grade): regrading, kinds of request and
statistics through the real ``aftercare`` CLI against a real collector."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from tests.support import Collector


def test_regrade_kinds_and_statistics_through_the_cli(collector: Collector) -> None:
    erin = collector.add_user("erin", "engineer")
    alice = collector.add_user("alice", "customer", customer="acme")
    mallory = collector.add_user("mallory", "customer", customer="globex")

    created = collector.client_json(alice, "ticket", "create", "x", "--level", "1")
    ticket_id = str(created["ticket"]["id"])
    refused = collector.client(alice, "ticket", "level", ticket_id, "4", "--reason", "mine")
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr
    regraded = collector.client_json(
        erin, "ticket", "level", ticket_id, "4", "--reason", "title 'x': no outage"
    )
    assert regraded["level"] == "4"
    assert regraded["sla"]["response"]["target_ms"] == 2 * 3_600_000
    shown = collector.client_json(erin, "ticket", "show", ticket_id)
    event = shown["events"][-1]
    assert event["kind"] == "regraded"
    assert event["details"] == {"level": "4", "previous": "1", "reason": "title 'x': no outage"}
    text = collector.client(erin, "ticket", "show", ticket_id).stdout
    assert "level 1 -> 4: title 'x': no outage" in text
    report = collector.client(alice, "ticket", "report", ticket_id).stdout
    assert "regraded from level 1 to level 4" in report

    complaint = collector.client_json(
        alice, "ticket", "create", "nobody called back", "--kind", "complaint"
    )
    assert complaint["ticket"]["kind"] == "complaint"
    assert [c["target_ms"] for c in complaint["ticket"]["sla"] if c["name"] == "resolution"] == [
        15 * 24 * 3_600_000
    ]
    bad = collector.client(
        alice, "ticket", "create", "q", "--kind", "complaint", "--urgency", "urgent"
    )
    assert bad.returncode == 1 and "inquiries only" in bad.stderr

    year = str(dt.datetime.now(ZoneInfo("Asia/Shanghai")).year)
    stats = collector.client_json(alice, "stats", "--period", year)
    assert (stats["customer"], stats["tickets"], stats["complaints"]) == ("acme", 2, 1)
    assert stats["by_level"] == {"4": 1, "other": 1}
    table = collector.client(erin, "stats", "--customer", "acme", "--period", year)
    assert table.returncode == 0 and "2 tickets, 1 complaints" in table.stdout
    other = collector.client(mallory, "stats", "--customer", "acme", "--period", year)
    assert other.returncode == 1 and "PERMISSION_DENIED" in other.stderr
    assert "acme" not in other.stdout

    audit = collector.admin("audit", "verify")
    assert audit.returncode == 0 and "intact" in audit.stdout
    entries = json.loads(collector.admin("audit", "list", "--json").stdout)
    assert any(e["action"] == "ticket.regraded" for e in entries)
