"""Inspection messages through the real notifiers: a local webhook receiver and SMTP sink."""

from __future__ import annotations

import json

import pytest

from collector.inspections.model import Inspection
from collector.inspections.notify import (
    application,
    late_report,
    make_deliverer,
    report_published,
)
from collector.notify.errors import DeliveryError
from collector.tickets.escalation import Recipient
from tests.collector.test_notify import (  # noqa: F401  (fixtures)
    Receiver,
    SmtpSink,
    receiver,
    settings,
    smtp,
)

T0 = 1_800_000_000_000
INSPECTION = Inspection(
    7, 1, "acme", 0, T0, "planned", "erin", "", 86_400_000, (), T0, T0, report_due_ms=T0 + 5
)


def test_the_application_goes_to_a_webhook_as_json(receiver: Receiver) -> None:  # noqa: F811
    subject, payload, text = application(INSPECTION, ["db-1", "web-1"], ["facts", "filesystems"])
    make_deliverer(None)(Recipient("webhook", receiver.url()), subject, payload, text)
    [request] = receiver.requests
    body = json.loads(request.body)
    assert body["event"] == "inspection_application"
    assert body["inspection"]["hosts"] == ["db-1", "web-1"]
    assert body["inspection"]["checklist"] == ["facts", "filesystems"]
    assert body["consent"] == "aftercare inspection consent 7"


def test_the_late_report_goes_by_email_as_text(smtp: SmtpSink) -> None:  # noqa: F811
    subject, payload, text = late_report(INSPECTION)
    deliver = make_deliverer(settings(smtp.port))
    deliver(Recipient("email", "lead@vendor.example"), subject, payload, text)
    [(_, rcpt_tos, message)] = smtp.sink.messages
    assert rcpt_tos == ["lead@vendor.example"]
    assert "inspection report #7 (acme) is late" in message["Subject"]
    assert "aftercare inspection publish 7" in message.get_content()


def test_email_without_a_relay_is_a_clear_delivery_error() -> None:
    subject, payload, text = late_report(INSPECTION)
    with pytest.raises(DeliveryError, match=r"escalation\.smtp"):
        make_deliverer(None)(Recipient("email", "lead@vendor.example"), subject, payload, text)


def test_the_application_carries_the_portal_link_else_the_command() -> None:
    _, payload, text = application(INSPECTION, [], [], "https://portal.example/")
    assert payload["link"] == "https://portal.example/inspections/7"
    assert "链接 / Link: https://portal.example/inspections/7" in text
    _, payload, _ = application(INSPECTION, [], [])
    assert payload["link"] == "aftercare inspection show 7"


def test_the_report_notice_goes_by_email_with_the_link(smtp: SmtpSink) -> None:  # noqa: F811
    subject, payload, text = report_published(INSPECTION, "https://portal.example")
    deliver = make_deliverer(settings(smtp.port))
    deliver(Recipient("email", "ops@acme.example"), subject, payload, text)
    [(_, _, message)] = smtp.sink.messages
    assert "巡检报告待签收" in message["Subject"]
    content = message.get_content()
    assert "https://portal.example/inspections/7" in content
    assert "aftercare inspection sign 7" in content
    _, payload, _ = report_published(INSPECTION)
    assert payload["link"] == "aftercare inspection report 7"


def test_the_application_in_the_customers_language() -> None:
    subject, payload, text = application(
        INSPECTION, ["db-1"], ["facts"], "https://portal.example", "zh-CN"
    )
    assert subject.startswith("[aftercare] 巡检申请 #7: ") and payload["language"] == "zh-CN"
    assert "acme 的巡检 #7 计划于" in text and "主机: db-1" in text
    assert "链接: https://portal.example/inspections/7" in text and "Engineer" not in text
    subject, payload, text = application(INSPECTION, ["db-1"], ["facts"], "", "en")
    assert subject.startswith("[aftercare] Inspection application #7: ")
    assert "巡检" not in subject + text and "Link: aftercare inspection show 7" in text
    _, payload, text = application(INSPECTION, [], [])  # no setting: both, as before
    assert "language" not in payload and "链接 / Link:" in text


def test_the_report_notice_in_the_customers_language() -> None:
    subject, payload, text = report_published(INSPECTION, "https://portal.example", "en")
    assert subject == "[aftercare] Inspection report #7 awaits your sign-off"
    assert "巡检" not in subject + text and "Sign: aftercare inspection sign 7" in text
    assert payload["language"] == "en"
    subject, _, text = report_published(INSPECTION, "https://portal.example", "zh-CN")
    assert subject == "[aftercare] 巡检报告 #7 待签收"
    assert "报告已发布, 请签收" in text and "签收: aftercare inspection sign 7" in text
