"""Notifiers: deliver escalations and ticket notifications to people and systems.

Two channels, each one blocking function (run them on a thread from async code):
``send_webhook`` POSTs a JSON document to an http(s) URL; ``send_email`` sends a UTF-8
plain-text message through an SMTP relay. Both raise ``DeliveryError`` and nothing
else on failure. What to send, to whom and when is decided by the ticket
escalation logic; recording the outcome on the ticket is the caller's job.
"""

from __future__ import annotations

from collector.notify.email import SmtpSettings, build_message, send_email
from collector.notify.errors import DeliveryError
from collector.notify.webhook import send_webhook, url_problem

__all__ = [
    "DeliveryError",
    "SmtpSettings",
    "build_message",
    "send_email",
    "send_webhook",
    "url_problem",
]
