"""Fault analysis report: every section, escaping in Markdown and HTML, JSON round trip."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from collector.tickets.model import Ticket, TicketEvent
from collector.tickets.report import EXCERPT_LINES, Report, draft_report, summarize_event
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


# -- what the customer signs (issue 16) --------------------------------------------------

HOOK_HOST = "chat.vendor.example"


def signed_timeline() -> list[TicketEvent]:
    """A level-1 fault: recovered, a fix rejected, a remote session, escalations."""
    rows = [
        (0, "rule:filesystem_almost_full", "opened",
         {"title": "/var almost full", "level": "1", "source": "rule", "value": 97.2,
          "threshold": 90, "labels": {"mount": "/var", "category": "storage"}}),
        (5, "user:erin", "contacted", {"via": "phone", "note": "told the DBA on duty"}),
        (25, "system", "notification",
         {"key": "k1", "step": 0, "channel": "email", "target": "boss@vendor.example",
          "subject": "[aftercare] response SLA warning: ticket #12 /var almost full",
          "delivered": True}),
        (26, "system", "notification",
         {"key": "k2", "step": 1, "channel": "webhook",
          "target": f"https://{HOOK_HOST}#abc", "subject": "[aftercare] x", "delivered": True}),
        (31, "system", "escalation",
         {"type": "breach", "clock": "resolution", "reopen_count": 0,
          "summary": "resolution SLA breached"}),
        (32, "system", "notification",
         {"key": "k3", "step": -1, "channel": "email", "target": "ops@acme.example",
          "subject": "s", "delivered": True, "audience": "customer",
          "notice": "customer_opened"}),
        (40, "user:erin", "remote_requested",
         {"session_id": "s-1", "hostname": "db1", "reason": "inspect /var", "duration_ms": 1}),
        (41, "user:alice", "remote_approved",
         {"session_id": "s-1", "approver": "alice", "window_end_ms": 5, "local": False}),
        (42, "user:erin", "remote_connected",
         {"session_id": "s-1", "first": True, "remote_response_ms": 60000}),
        (50, "user:erin", "remote_ended", {"session_id": "s-1", "reason": "done", "was": "x"}),
        (60, "user:erin", "resolved",
         {"cause": "a runaway debug log", "actions": "deleted it", "prevention": "p1"}),
        (70, "user:alice", "rejected", {"reason": "still 95% full"}),
        (70, "user:alice", "reopened", {"reason": "still 95% full", "trigger": "rejected"}),
        (80, "rule:filesystem_almost_full", "recovered", {"value": 50.0}),
        (90 + 24 * 60 + 1, "user:erin", "resolved",
         {"cause": "log rotation disabled after an upgrade", "actions": "a",
          "prevention": "alert on logrotate failures", "impact": "orders stalled 40 min",
          "losses": "no data lost"}),
    ]  # fmt: skip
    return [
        TicketEvent(i + 1, 12, T0 + minutes * MINUTE_MS, actor, kind, details)  # type: ignore[arg-type]
        for i, (minutes, actor, kind, details) in enumerate(rows)
    ]


def signed_report(timezone: str = "Asia/Shanghai") -> Report:
    ticket = replace(
        closed_ticket(),
        state="resolved",
        closed_ms=None,
        close_reason=None,
        labels={"mount": "/var", "category": "storage"},
        resolved_ms=T0 + (90 + 24 * 60 + 1) * MINUTE_MS,
        reopen_count=1,
        resolution={
            "cause": "log rotation disabled after an upgrade",
            "actions": "a",
            "prevention": "alert on logrotate failures",
            "impact": "orders stalled 40 min",
            "losses": "no data lost",
        },
    )
    events = signed_timeline()
    status = sla_status(ticket, events, SlaPolicy(), T0 + 3 * 24 * 60 * MINUTE_MS)
    return draft_report(ticket, events, status, vendor="Example Systems Ltd", timezone=timezone)


def test_the_report_states_type_category_impact_losses_and_due_time_in_words() -> None:
    r = signed_report()
    assert r.fault_type == "filesystem almost full"
    assert r.category == "存储 / storage"
    assert (r.impact, r.losses) == ("orders stalled 40 min", "no data lost")
    assert r.cleared_ms == T0 + 80 * MINUTE_MS  # the condition cleared before the write-up
    assert r.report_due_ms == T0 + (80 + 24 * 60) * MINUTE_MS
    assert r.report_result == "late"  # resolved (analysis written) 11 min after it was due
    md = r.markdown()
    assert "| Fault type / 故障类型 | filesystem almost full |" in md
    assert "| Category / 故障类别 | 存储 / storage |" in md
    assert "| labels | mount: /var, category: storage |" in md
    assert '{"' not in md, "no JSON dumps in what the customer reads"
    assert "## Impact and losses / 影响范围与损失" in md
    assert "orders stalled 40 min" in md and "no data lost" in md
    assert "late / 超时" in md


def test_the_report_is_in_the_customers_time_zone_with_vendor_header_and_sign_off() -> None:
    md = signed_report("Asia/Shanghai").markdown()
    assert md.startswith("# Example Systems Ltd 故障分析报告 / Fault analysis report")
    assert "| Vendor / 服务单位 | Example Systems Ltd |" in md
    assert "| Opened / 发生时间 | 2023-11-15T06:13:20+08:00 |" in md
    assert "+00:00" not in md
    assert "| time (Asia/Shanghai) | actor | event | summary |" in md
    assert "## Sign\\-off / 签字确认" in md or "## Sign-off / 签字确认" in md
    assert "Example Systems Ltd engineer / 服务工程师 | user:erin |" in md
    assert "acme representative / 用户负责人" in md
    utc = signed_report("UTC").markdown()
    assert "| Opened / 发生时间 | 2023-11-14T22:13:20+00:00 |" in utc
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        signed_report("Mars/Olympus")


def test_timeline_events_read_as_sentences_without_internal_recipients() -> None:
    r = signed_report()
    summaries = {e.kind: [] for e in r.timeline}  # type: dict[str, list[str]]
    for entry in r.timeline:
        summaries[entry.kind].append(entry.summary)
    assert summaries["contacted"] == [
        "an engineer contacted the customer by phone: told the DBA on duty"
    ]
    assert summaries["escalation"] == [
        "the resolution time limit was exceeded; escalated within the vendor"
    ]
    assert summaries["notification"] == [
        "the vendor's escalation chain was notified (response SLA warning)",
        "the vendor's escalation chain was notified (x)",
        "the customer was notified by e-mail: opened",
    ]
    assert summaries["remote_requested"] == [
        "remote session s-1 requested by the engineer: inspect /var"
    ]
    assert summaries["remote_approved"] == ["remote session s-1 approved by the customer (alice)"]
    assert summaries["remote_connected"] == ["remote session s-1 connected: the engineer logged in"]
    assert summaries["remote_ended"] == ["remote session s-1 ended (done)"]
    for rendered in (r.markdown(), r.html(), json.dumps(r.as_dict(), ensure_ascii=False)):
        assert "boss@vendor.example" not in rendered
        assert HOOK_HOST not in rendered
        assert "ops@acme.example" not in rendered
        assert '{"session_id"' not in rendered


def test_a_rejected_fix_keeps_every_cause_given() -> None:
    r = signed_report()
    assert [(x.cause, x.rejected) for x in r.resolutions] == [
        ("a runaway debug log", "still 95% full"),
        ("log rotation disabled after an upgrade", ""),
    ]
    md = r.markdown()
    assert "## Earlier fixes that did not hold / 未通过确认的处理" in md
    assert "a runaway debug log" in md and "still 95% full" in md
    assert "log rotation disabled after an upgrade" in md
    again = Report.from_dict(json.loads(json.dumps(r.as_dict())))
    assert again == r


def test_events_of_other_features_read_as_sentences_too() -> None:
    regraded = TicketEvent(
        1,
        12,
        T0,
        "user:erin",
        "regraded",
        {"level": "2", "previous": "1", "reason": "one site only"},
    )  # type: ignore[arg-type]
    assert summarize_event(regraded) == "regraded from level 1 to level 2: one site only"
