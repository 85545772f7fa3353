"""Deliver a ticket ``Notification`` on its channel (webhook or e-mail) through
``collector.notify`` (which knows nothing of tickets; cf. ``inspections/notify.py``)."""

from __future__ import annotations

from collections.abc import Callable

from collector.notify.email import SmtpSettings, send_email
from collector.notify.errors import DeliveryError
from collector.notify.webhook import send_webhook
from collector.outbox import DELIVERY_HEADER
from collector.tickets.escalation import Notification


def make_deliverer(smtp: SmtpSettings | None) -> Callable[[Notification], None]:
    """A blocking ``deliver(notification)``; raises DeliveryError on failure.

    ``smtp`` None: e-mail notifications fail with a message saying e-mail is not
    configured (the failure is recorded on the ticket, not fatal). The notification's
    ``delivery_id`` goes with it: webhook header ``X-Aftercare-Delivery``, e-mail
    Message-ID.
    """

    def deliver(notification: Notification) -> None:
        if notification.channel == "webhook":
            headers = {DELIVERY_HEADER: notification.delivery_id}
            send_webhook(
                notification.target,
                notification.payload,
                headers=headers if notification.delivery_id else None,
            )
            return
        if smtp is None:
            raise DeliveryError(
                "e-mail is not configured: set escalation.smtp in the tickets config",
                channel="email",
                target=notification.target,
            )
        send_email(
            smtp,
            [notification.target],
            notification.subject,
            notification.text(),
            notification.delivery_id,
        )

    return deliver
