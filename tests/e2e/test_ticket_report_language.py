"""`aftercare ticket report --language zh-CN` through a real collector: Chinese headings,
English by default, and another customer's report stays out of reach."""

from __future__ import annotations

from tests.support import Collector


def test_ticket_report_in_chinese_and_english(collector: Collector) -> None:
    carol = collector.add_user("carol", "customer", "acme")
    mallory = collector.add_user("mallory", "customer", "globex")
    created = collector.client_json(
        carol, "ticket", "create", "disk full", "--level", "3", "--json"
    )
    ticket_id = str(created["ticket"]["id"])
    chinese = collector.client(carol, "ticket", "report", ticket_id, "--language", "zh-CN")
    assert chinese.returncode == 0, chinese.stderr[-2000:]
    assert "# 故障分析报告" in chinese.stdout and "## 处理过程" in chinese.stdout
    assert "Timeline" not in chinese.stdout
    english = collector.client(carol, "ticket", "report", ticket_id)
    assert "## Timeline / 处理过程" in english.stdout
    refused = collector.client(mallory, "ticket", "report", ticket_id, "--language", "zh-CN")
    assert refused.returncode != 0 and "处理过程" not in refused.stdout
