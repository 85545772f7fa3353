"""Inspection messages (the application to the customer, late-report escalation) and
their delivery through the collector's notifiers (collector/notify: webhook, e-mail).

The message builders are pure; ``make_deliverer`` returns the blocking delivery the
service runs on a thread. Webhooks receive the JSON payload; e-mail the plain text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from collector.errors import format_ms
from collector.inspections.model import Inspection
from collector.notify import SmtpSettings, send_email, send_webhook
from collector.notify.errors import DeliveryError
from collector.tickets.escalation import Recipient

__all__ = ["PAYLOAD_VERSION", "Deliver", "application", "late_report", "make_deliverer"]

PAYLOAD_VERSION = 1
Deliver = Callable[[Recipient, str, Mapping[str, Any], str], None]


def application(
    inspection: Inspection, hostnames: Sequence[str], checklist: Sequence[str]
) -> tuple[str, dict[str, Any], str]:
    """Subject, payload and text of the inspection application (巡检申请)."""
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
        ]
    )
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


def make_deliverer(smtp: SmtpSettings | None) -> Deliver:
    """A blocking ``deliver(recipient, subject, payload, text)``; DeliveryError on failure
    (e-mail without ``smtp``: "not configured")."""

    def deliver(recipient: Recipient, subject: str, payload: Mapping[str, Any], text: str) -> None:
        if recipient.channel == "webhook":
            send_webhook(recipient.target, payload)
            return
        if smtp is None:
            raise DeliveryError(
                "e-mail is not configured: set escalation.smtp in the tickets config",
                channel="email",
                target=recipient.target,
            )
        send_email(smtp, [recipient.target], subject, text)

    return deliver
