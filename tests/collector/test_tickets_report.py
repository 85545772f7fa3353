"""Fault analysis report: every section, escaping in Markdown and HTML, JSON round trip."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from collector.tickets.model import Ticket, TicketEvent
from collector.tickets.report import EXCERPT_LINES, Report, draft_report
from collector.tickets.sla import MINUTE_MS, SlaPolicy, sla_status

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
SCRIPT = "<script>alert('x')</script>"
DF_OUTPUT = "Filesystem  Use%  Mounted on\n/dev/sda2   97%   /var\nnote: ``` and <b>bold</b>"


def closed_ticket() -> Ticket:
    return Ticket(
        id=12,
        customer="acme",
        title="/var almost full",
        level="1",
        state="closed",
        source="rule",
        created_ms=T0,
        updated_ms=T0 + 200 * MINUTE_MS,
        hostname="db1",
        rule="filesystem_almost_full",
        labels={"mount": "/var"},
        acknowledged_ms=T0 + 10 * MINUTE_MS,
        resolved_ms=T0 + 90 * MINUTE_MS,
        closed_ms=T0 + 200 * MINUTE_MS,
        close_reason="confirmed",
        resolution={
            "cause": "log rotation disabled after an upgrade",
            "actions": "compressed old logs\nre-enabled logrotate",
            "prevention": "alert on logrotate failures",
        },
    )


def timeline() -> list[TicketEvent]:
    rows = [
        (0, "rule:filesystem_almost_full", "opened",
         {"title": "/var almost full", "level": "1", "source": "rule",
          "value": 97.2, "threshold": 90, "labels": {"mount": "/var"}}),
        (1, "system", "diagnostics",
         {"playbook": "disk_usage", "status": "ok", "output": DF_OUTPUT}),
        (10, "user:erin", "acknowledged", {}),
        (10, "user:erin", "contacted", {"via": "phone", "note": "called the DBA on duty"}),
        (20, "user:carl", "comment", {"text": f"please hurry {SCRIPT}"}),
        (25, "system", "notification",
         {"key": "k", "channel": "email", "target": "boss@vendor.example",
          "subject": "[aftercare] response SLA warning"}),
        (90, "user:erin", "resolved",
         {"cause": "log rotation disabled after an upgrade", "actions": "a", "prevention": "p"}),
        (200, "user:carl", "confirmed", {}),
        (200, "user:carl", "closed", {"reason": "confirmed"}),
    ]  # fmt: skip
    return [
        TicketEvent(i + 1, 12, T0 + minutes * MINUTE_MS, actor, kind, details)  # type: ignore[arg-type]
        for i, (minutes, actor, kind, details) in enumerate(rows)
    ]


def report(ticket: Ticket | None = None, events: list[TicketEvent] | None = None) -> Report:
    ticket = ticket or closed_ticket()
    events = timeline() if events is None else events
    status = sla_status(ticket, events, SlaPolicy(), T0 + 300 * MINUTE_MS)
    return draft_report(ticket, events, status, extras={"remote sessions": 1})


def test_draft_gathers_everything() -> None:
    r = report()
    assert r.level_name == "一级故障 (重大故障)"
    assert r.opened_ms == T0
    assert r.onset_metrics == {"value": 97.2, "threshold": 90, "labels": {"mount": "/var"}}
    assert [e.kind for e in r.timeline][:3] == ["opened", "diagnostics", "acknowledged"]
    assert len(r.timeline) == 9
    assert r.diagnostics[0].playbook == "disk_usage"
    assert "/dev/sda2   97%   /var" in r.diagnostics[0].excerpt
    assert r.cause == "log rotation disabled after an upgrade"
    sla = {f.clock: f for f in r.sla}
    assert sla["response"].result == "met"
    assert sla["response"].actual_ms == 10 * MINUTE_MS
    assert sla["resolution"].result == "met"
    assert sla["resolution"].actual_ms == 90 * MINUTE_MS
    assert sla["remote_response"].result == "n/a"
    assert r.closed_by == "user:carl"
    assert r.closing.startswith("Confirmed by the customer (user:carl)")
    assert r.generated_ms == T0 + 300 * MINUTE_MS


def test_markdown_has_every_section() -> None:
    md = report().markdown()
    for heading in (
        "# 故障分析报告 / Fault analysis report",
        "## Ticket #12: /var almost full",
        "## Onset and key metrics / 故障现象与关键指标",
        "## Timeline / 处理过程",
        "## Diagnostics / 诊断信息",
        "## Cause / 故障原因",
        "## Actions taken / 处理措施",
        "## Prevention / 预防措施",
        "## SLA / 服务时限",
        "## Closing / 闭环确认",
        "## Additional information / 附加信息",
    ):
        assert heading in md, heading
    assert "一级故障 (重大故障)" in md
    assert "| value | 97.2 |" in md
    assert "| threshold | 90 |" in md
    assert "2023-11-14T22:23:20+00:00 | user:erin | acknowledged" in md
    assert "log rotation disabled after an upgrade" in md
    assert "compressed old logs  \nre\\-enabled" not in md  # '-' is not escaped
    assert "compressed old logs  \nre-enabled logrotate" in md
    assert "| response | 30m | 10m |" in md
    assert "| resolution | 4h | 1h 30m |" in md
    assert "Confirmed by the customer" in md


def test_markdown_escapes_user_text_and_fences_tool_output() -> None:
    md = report().markdown()
    assert SCRIPT not in md
    assert "\\<script\\>" in md
    # the output holds ``` so the fence is longer, and the output is verbatim inside it
    fence = re.search(r"^(`{4,})text$", md, re.MULTILINE)
    assert fence is not None
    assert f"{fence.group(1)}text\n{DF_OUTPUT}\n{fence.group(1)}" in md


def test_html_is_a_self_contained_escaped_page() -> None:
    page = report().html()
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page  # tool output escaped too
    assert not re.search(r"\b(src|href)=", page)  # nothing fetched from elsewhere
    for heading in ("故障分析报告 / Fault analysis report", "Cause / 故障原因", "SLA / 服务时限"):
        assert f">{heading}</h" in page


def test_json_round_trip() -> None:
    r = report()
    data = json.loads(json.dumps(r.as_dict(), ensure_ascii=False))
    assert data["format"] == "aftercare-fault-report/1"
    assert data["level_name"] == "一级故障 (重大故障)"
    assert data["closing"] == r.closing
    assert Report.from_dict(data) == r
    with pytest.raises(ValueError, match="unknown level"):
        Report.from_dict({**data, "level": "9"})


def test_auto_confirmed_and_unfinished_closings() -> None:
    auto = replace(closed_ticket(), close_reason="auto-confirmed")
    events = [e for e in timeline() if e.kind != "confirmed"]
    events[-1] = replace(events[-1], actor="system", details={"reason": "auto-confirmed"})
    text = report(auto, events).closing
    assert text.startswith("Closed automatically (auto-confirmed)")
    resolved = replace(closed_ticket(), state="resolved", closed_ms=None, close_reason=None)
    assert report(resolved, timeline()[:6]).closing == (
        "Resolved; awaiting the customer's confirmation."
    )
    assert "Not resolved yet" in report(replace(resolved, state="open"), timeline()[:2]).closing


def test_long_diagnostics_are_cut_with_a_marker() -> None:
    output = "\n".join(f"line {n}" for n in range(EXCERPT_LINES + 20))
    events = timeline()
    events[1] = replace(
        events[1], details={"playbook": "journal", "exit_code": 0, "output": output}
    )
    r = report(events=events)
    diag = r.diagnostics[0]
    assert diag.truncated
    assert diag.status == "exit 0"
    assert diag.excerpt.count("\n") == EXCERPT_LINES - 1
    assert "[… output truncated]" in r.markdown()


def test_a_ticket_without_events_still_reports() -> None:
    ticket = replace(closed_ticket(), state="open", resolution={}, closed_ms=None)
    md = report(ticket, []).markdown()
    assert "No metrics were recorded at onset." in md
    assert "No diagnostics were attached." in md
