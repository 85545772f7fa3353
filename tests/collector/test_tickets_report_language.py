"""The fault analysis report in zh-CN: the catalogue is complete, the Chinese report has
no fixed English heading left, dates are Chinese in the report's zone, English unchanged."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import get_args

import pytest

from collector.client.tickets import CONTACT_CHANNELS
from collector.tickets import report as report_module
from collector.tickets.model import TICKET_STATES, EventKind, TicketEvent
from collector.tickets.report import Report, summarize_event
from collector.tickets.report_language import report_language
from collector.tickets.sla import CLOCK_NAMES
from tests.collector.test_tickets_report import SCRIPT, report

_SLA_RESULTS = ("running", "paused", "warning", "met", "breached", "n/a")


def _report_msgids() -> list[str]:
    """Every fixed text report.py shows: literal ``tx.t("…")`` calls and its word tables."""
    tree = ast.parse(Path(report_module.__file__).read_text(encoding="utf-8"))
    literal = [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "t"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]
    remote = [  # _remote("verb", "key", "form"): the verb and the form are translated
        arg.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "_remote"
        for index, arg in enumerate(node.args)
        if index != 1 and isinstance(arg, ast.Constant)
    ]
    tables = (
        report_module.TITLE,
        *report_module.SOURCE_NAMES.values(),
        *report_module._LEVEL_MEANING.values(),
        *report_module._REPORT_RESULTS.values(),
        *report_module.DURATION_UNITS.values(),
    )
    names = (*TICKET_STATES, *get_args(EventKind), *_SLA_RESULTS, *CONTACT_CHANNELS, "an")
    clocks = tuple(c.replace("_", " ") for c in CLOCK_NAMES)
    return list(dict.fromkeys((*literal, *remote, *tables, *names, *clocks)))


def test_the_extraction_sees_the_report_texts() -> None:
    found = _report_msgids()
    assert "Timeline / 处理过程" in found
    assert "Drafted by aftercare at {when}." in found
    assert len(found) > 100


def test_every_report_text_has_a_chinese_translation() -> None:
    messages = report_language("zh-CN").messages
    missing = [m for m in _report_msgids() if m not in messages]
    assert missing == []


def test_placeholders_survive_translation() -> None:
    for msgid, msgstr in report_language("zh-CN").messages.items():
        assert sorted(re.findall(r"{\w+}", msgid)) == sorted(re.findall(r"{\w+}", msgstr)), msgid


def test_chinese_report_has_chinese_headings_and_no_english_ones() -> None:
    r = report()
    english, chinese = r.markdown(), r.markdown("zh-CN")
    headings = re.findall(r"^##? (.+)$", english, re.MULTILINE)
    for heading in ("闭环确认", "处理过程", "故障现象与关键指标", "服务时限", "签字确认"):
        assert f"## {heading}\n" in chinese
    for heading in headings:
        if heading.startswith("Ticket #"):
            continue
        assert heading not in chinese, heading
    for phrase in ("Timeline", "Closing", "Sign-off", "Drafted by", "First detected", "Onset"):
        assert phrase not in chinese
    assert "# 故障分析报告\n" in chinese
    assert "## 工单 #12：/var almost full" in chinese  # noqa: RUF001


def test_chinese_dates_are_in_the_report_zone() -> None:
    r = replace(report(), timezone="Asia/Shanghai")
    chinese = r.html("zh-CN")
    # T0 is 2023-11-14T22:13:20Z, 06:13:20 the next morning in Shanghai
    assert "2023年11月15日 06:13:20 (UTC+08:00)" in chinese
    assert "2023-11-15T06:13:20+08:00" in r.html()
    assert "2023-11-15T06:13:20" not in chinese


def test_chinese_states_events_and_durations() -> None:
    chinese = report().markdown("zh-CN")
    assert "| 状态 | 已关闭 |" in chinese
    assert "| 开单 |" in chinese and "| 用户确认 |" in chinese
    assert "用户（user:carl）已确认" in chinese  # noqa: RUF001
    assert re.search(r"\| 响应 \| \d+(天|小时|分钟)", chinese)


def test_chinese_html_still_escapes_user_text() -> None:
    chinese = report().html("zh-CN")
    assert SCRIPT not in chinese
    assert "&lt;script&gt;" in chinese


def test_english_is_the_default_and_unchanged() -> None:
    r = report()
    assert r.markdown() == r.markdown("en")
    assert r.html() == r.html("en")
    assert "## Timeline / 处理过程" in r.markdown()


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown report language 'fr'"):
        report().markdown("fr")


def test_chinese_timeline_summaries_survive_a_json_round_trip() -> None:
    r = report()
    again = Report.from_dict(json.loads(json.dumps(r.as_dict())))
    chinese = again.markdown("zh-CN")
    assert "工程师已受理工单" in chinese and "用户确认了处理结果" in chinese
    assert "an engineer took the ticket in hand" not in chinese
    assert again.markdown() == r.markdown()


def test_a_report_drafted_before_chinese_summaries_shows_the_english_ones() -> None:
    data = report().as_dict()
    for entry in data["timeline"]:
        del entry["summary_zh"]
    chinese = Report.from_dict(data).markdown("zh-CN")
    assert "an engineer took the ticket in hand" in chinese and "## 处理过程" in chinese


def test_every_event_kind_has_a_chinese_summary() -> None:
    for kind in get_args(EventKind):
        event = TicketEvent(1, 1, 0, "user:erin", kind, {"reason": "r", "session_id": "s1"})
        english, chinese = summarize_event(event), summarize_event(event, "zh-CN")
        if kind != "comment":
            assert english != chinese, kind
