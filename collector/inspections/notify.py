"""Inspection messages (the application to the customer, late-report escalation) and
their delivery through the collector's notifiers (collector/notify: webhook, e-mail).

The message builders are pure; ``make_deliverer`` returns the blocking delivery the
service runs on a thread. Webhooks receive the JSON payload; e-mail the plain text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from collector import notice_texts as messages
from collector.errors import format_ms
from collector.inspections.model import Inspection
from collector.notify import SmtpSettings, send_email, send_webhook
from collector.notify.errors import DeliveryError
from collector.outbox import DELIVERY_HEADER
from collector.tickets.escalation import Recipient

__all__ = [
    "PAYLOAD_VERSION",
    "Deliver",
    "application",
    "inspection_link",
    "late_report",
    "make_deliverer",
    "report_published",
]

PAYLOAD_VERSION = 1
Deliver = Callable[[Recipient, str, Mapping[str, Any], str], None]


def inspection_link(inspection_id: int, link_base: str, command: str = "show") -> str:
    """Where the customer acts on the inspection: the portal page ``LINK_BASE/inspections/ID``
    (``ServeConfig.link_base()``), else the ``aftercare inspection`` command to run."""
    if link_base:
        return f"{link_base.rstrip('/')}/inspections/{inspection_id}"
    return f"aftercare inspection {command} {inspection_id}"


def application(
    inspection: Inspection,
    hostnames: Sequence[str],
    checklist: Sequence[str],
    link_base: str = "",
    language: str = "",
) -> tuple[str, dict[str, Any], str]:
    """Subject, payload and text of the inspection application (巡检申请); ``link`` is
    the portal page where the customer consents (see ``inspection_link``). ``language``
    "zh-CN" or "en" (the customer's setting): subject and text in it only."""
    when = format_ms(inspection.scheduled_ms)
    payload = {
        "version": PAYLOAD_VERSION,
        "event": "inspection_application",
        "inspection": {
            "id": inspection.id,
            "customer": inspection.customer,
            "scheduled_ms": inspection.scheduled_ms,
            "scheduled": when,
            "hosts": list(hostnames),
            "checklist": list(checklist),
            "engineer": inspection.engineer,
        },
        "consent": f"aftercare inspection consent {inspection.id}",
        "decline": f'aftercare inspection decline {inspection.id} --reason "..."',
        "link": inspection_link(inspection.id, link_base),
    }
    subject = f"[aftercare] 巡检申请 / Inspection application #{inspection.id}: {when}"
    text = "\n".join(
        [
            f"Inspection #{inspection.id} of {inspection.customer} is planned for {when}.",
            f"Engineer:  {inspection.engineer or '-'}",
            f"Hosts:     {', '.join(hostnames) or '-'}",
            "Checklist: " + (", ".join(checklist) or "-"),
            "",
            f"Consent:   {payload['consent']}",
            f"Decline:   {payload['decline']} [--propose 2027-01-20T09:00]",
            f"链接 / Link: {payload['link']}",
        ]
    )
    if language in messages.LANGUAGES:
        _ = messages.translations(language).gettext
        values = {
            "id": inspection.id,
            "customer": inspection.customer,
            "when": when,
            "engineer": inspection.engineer or "-",
            "hosts": ", ".join(hostnames) or "-",
            "checklist": ", ".join(checklist) or "-",
            "link": payload["link"],
        }
        lines = [
            _(messages.APPLICATION_PLANNED) % values,
            _(messages.ENGINEER_LINE) % values,
            _(messages.HOSTS_LINE) % values,
            _(messages.CHECKLIST_LINE) % values,
            "",
            _(messages.CONSENT_LINE) % {"command": payload["consent"]},
            _(messages.DECLINE_LINE) % {"command": payload["decline"]},
            _(messages.LINK_LINE) % values,
        ]
        payload["language"] = language
        return _(messages.APPLICATION_SUBJECT) % values, payload, "\n".join(lines) + "\n"
    return subject, payload, text + "\n"


def late_report(inspection: Inspection) -> tuple[str, dict[str, Any], str]:
    """Subject, payload and text of the escalation for a report past its due date."""
    due = format_ms(inspection.report_due_ms or 0)
    payload = {
        "version": PAYLOAD_VERSION,
        "event": "inspection_report_late",
        "inspection": {
            "id": inspection.id,
            "customer": inspection.customer,
            "engineer": inspection.engineer,
            "run_finished_ms": inspection.run_finished_ms,
            "report_due_ms": inspection.report_due_ms,
            "report_due": due,
        },
    }
    subject = f"[aftercare] inspection report #{inspection.id} ({inspection.customer}) is late"
    text = (
        f"The report of inspection #{inspection.id} for {inspection.customer} was due at "
        f"{due} (3 working days after the run) and is not published yet.\n"
        f"Engineer: {inspection.engineer or '-'}\n"
        f"Publish:  aftercare inspection publish {inspection.id} --summary ...\n"
    )
    return subject, payload, text


def report_published(
    inspection: Inspection, link_base: str = "", language: str = ""
) -> tuple[str, dict[str, Any], str]:
    """Subject, payload and text telling the customer its report waits for sign-off
    (``language`` as for ``application``)."""
    payload = {
        "version": PAYLOAD_VERSION,
        "event": "inspection_report_published",
        "inspection": {
            "id": inspection.id,
            "customer": inspection.customer,
            "engineer": inspection.engineer,
            "summary": inspection.summary,
            "report_sha256": inspection.report_sha256,
        },
        "sign": f"aftercare inspection sign {inspection.id}",
        "reject": f'aftercare inspection reject {inspection.id} --reason "..."',
        "link": inspection_link(inspection.id, link_base, "report"),
    }
    subject = f"[aftercare] 巡检报告待签收 / Inspection report #{inspection.id} awaits sign-off"
    text = "\n".join(
        [
            f"The report of inspection #{inspection.id} for {inspection.customer} is published "
            "and waits for your sign-off (巡检报告已发布, 请签收).",
            f"Summary:   {inspection.summary or '-'}",
            f"Engineer:  {inspection.engineer or '-'}",
            "",
            f"Sign:      {payload['sign']}",
            f"Reject:    {payload['reject']}",
            f"链接 / Link: {payload['link']}",
        ]
    )
    if language in messages.LANGUAGES:
        _ = messages.translations(language).gettext
        values = {
            "id": inspection.id,
            "customer": inspection.customer,
            "summary": inspection.summary or "-",
            "engineer": inspection.engineer or "-",
            "link": payload["link"],
        }
        lines = [
            _(messages.REPORT_PUBLISHED) % values,
            _(messages.SUMMARY_LINE) % values,
            _(messages.ENGINEER_LINE) % values,
            "",
            _(messages.SIGN_LINE) % {"command": payload["sign"]},
            _(messages.REJECT_LINE) % {"command": payload["reject"]},
            _(messages.LINK_LINE) % values,
        ]
        payload["language"] = language
        return _(messages.REPORT_SUBJECT) % values, payload, "\n".join(lines) + "\n"
    return subject, payload, text + "\n"


def make_deliverer(smtp: SmtpSettings | None) -> Deliver:
    """A blocking ``deliver(recipient, subject, payload, text)``; DeliveryError on failure
    (e-mail without ``smtp``: "not configured"). The recipient's ``delivery_id`` goes
    with the message: webhook header ``X-Aftercare-Delivery``, e-mail Message-ID."""

    def deliver(recipient: Recipient, subject: str, payload: Mapping[str, Any], text: str) -> None:
        if recipient.channel == "webhook":
            headers = {DELIVERY_HEADER: recipient.delivery_id} if recipient.delivery_id else None
            send_webhook(recipient.target, payload, headers=headers)
            return
        if smtp is None:
            raise DeliveryError(
                "e-mail is not configured: set escalation.smtp in the tickets config",
                channel="email",
                target=recipient.target,
            )
        send_email(smtp, [recipient.target], subject, text, recipient.delivery_id)

    return deliver
