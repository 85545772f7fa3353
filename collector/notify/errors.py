"""Notification errors: one exception for every way a notification can fail to arrive.

    CollectorError                      (collector.errors)
    └── DeliveryError                   a webhook or e-mail was not delivered
                                        (``retryable`` says whether trying later may help)

Driver errors (urllib, http.client, smtplib, ssl, socket) are mapped to
``DeliveryError`` at the boundary with ``raise ... from exc``. Messages never contain
secrets: webhook URLs are shown as scheme://host:port only (paths and queries often
carry tokens), SMTP passwords never.
"""

from __future__ import annotations

from collections.abc import Mapping

from collector.errors import CollectorError

__all__ = ["DeliveryError"]


class DeliveryError(CollectorError):
    """A notification could not be delivered.

    ``channel`` is "webhook" or "email"; ``target`` the redacted URL or the
    recipients; ``status`` the HTTP status or SMTP reply code when the server answered;
    ``retryable`` whether the same request may succeed later (network errors, 5xx, 429,
    SMTP 4xx) or not (bad URL, 4xx, permanently refused recipients). ``refused`` maps
    each recipient an SMTP server refused to its reply; the other recipients got the
    message, so a retry should address only the refused ones.
    """

    def __init__(
        self,
        message: str,
        *,
        channel: str,
        target: str,
        status: int | None = None,
        retryable: bool = False,
        refused: Mapping[str, tuple[int, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.channel = channel
        self.target = target
        self.status = status
        self.retryable = retryable
        self.refused: Mapping[str, tuple[int, str]] = dict(refused or {})
