"""SMTP e-mail: send one UTF-8 plain-text message through a relay.

``SmtpSettings`` is the relay configuration (a frozen dataclass checked when it is
built, ``ConfigError`` naming the field); ``build_message`` makes the message (pure);
``send_email`` delivers it with smtplib. Subjects and bodies may hold any Unicode
(Chinese included): the subject is RFC 2047 encoded, the body sent as UTF-8.

A password is only ever sent after STARTTLS: settings with a username but without
``starttls`` are refused, since smtplib would otherwise log in over plain text.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path

from collector.errors import ConfigError
from collector.notify.errors import DeliveryError

__all__ = ["SmtpSettings", "build_message", "send_email"]


@dataclass(frozen=True, kw_only=True)
class SmtpSettings:
    """How to reach the SMTP relay. ``ca_file`` (optional) is a PEM bundle to verify
    the relay's STARTTLS certificate with instead of the system's trust store."""

    host: str
    port: int = 25
    sender: str
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 10
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() for c in self.host):
            raise ConfigError(f"smtp host: expected a host name, got {self.host!r}")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"smtp port: expected 1-65535, got {self.port}")
        problem = _address_problem(self.sender)
        if problem:
            raise ConfigError(f"smtp sender: {problem}")
        self._check_login()
        if not self.timeout > 0:
            raise ConfigError(f"smtp timeout: expected seconds > 0, got {self.timeout}")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ConfigError(f"smtp ca_file: {self.ca_file} is not a readable file")

    def _check_login(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ConfigError("smtp username/password: set both or neither")
        if self.username is not None and not self.starttls:
            raise ConfigError(
                "smtp starttls: a username is set but starttls is off, so the password "
                "would cross the network in clear text; set starttls = true"
            )

    @property
    def where(self) -> str:
        """host:port, for messages."""
        return f"{self.host}:{self.port}"


def build_message(
    sender: str, to: Sequence[str], subject: str, body: str, message_id: str = ""
) -> EmailMessage:
    """A plain-text UTF-8 message. Line breaks in the subject become spaces (subjects
    are often built from alert text). ``message_id`` (e.g. an outbox delivery id, hex
    only) makes the Message-ID ``<ID@SENDER-DOMAIN>``, the same at every attempt;
    default: a fresh one. Raises DeliveryError for no or bad recipients."""
    target = ", ".join(to)
    if not to:
        raise DeliveryError("e-mail has no recipients", channel="email", target=target)
    for address in to:
        problem = _address_problem(address)
        if problem:
            raise DeliveryError(f"recipient {problem}", channel="email", target=target)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = target
    message["Subject"] = " ".join(subject.split())
    message["Date"] = formatdate(usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2]
    if message_id and message_id.isalnum():
        message["Message-ID"] = f"<{message_id}@{domain or 'aftercare'}>"
    else:
        message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(body, charset="utf-8")
    return message


def send_email(
    settings: SmtpSettings,
    to: Sequence[str],
    subject: str,
    body: str,
    message_id: str = "",
) -> None:
    """Send ``subject``/``body`` to every address in ``to`` through the relay
    (``message_id``: see ``build_message``).

    Raises DeliveryError: no or malformed recipients; the relay unreachable, timing
    out, refusing STARTTLS, the login, the sender or the message (``status`` is the
    SMTP reply code, ``retryable`` for 4xx and network errors); or refusing some
    recipients (``refused`` lists them with the server's reply — the others did get
    the message).
    """
    message = build_message(settings.sender, to, subject, body, message_id)
    target = ", ".join(to)
    try:
        refused = _deliver(settings, message)
    except smtplib.SMTPRecipientsRefused as exc:
        raise _refused_error(settings, target, exc.recipients, everyone=True) from exc
    except smtplib.SMTPResponseException as exc:
        code, text = exc.smtp_code, _text(exc.smtp_error)
        raise DeliveryError(
            f"SMTP server {settings.where} answered {code} {text}",
            channel="email",
            target=target,
            status=code,
            retryable=400 <= code < 500,
        ) from exc
    except ssl.SSLError as exc:
        raise DeliveryError(
            f"SMTP server {settings.where}: TLS failed ({exc}); check its certificate "
            f"(or set ca_file to the CA that issued it)",
            channel="email",
            target=target,
        ) from exc
    except (smtplib.SMTPException, OSError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        raise DeliveryError(
            f"SMTP server {settings.where} unreachable or failed: {reason}",
            channel="email",
            target=target,
            retryable=True,
        ) from exc
    if refused:
        raise _refused_error(settings, target, refused, everyone=False)


def _deliver(settings: SmtpSettings, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
    """One SMTP session; the recipients refused while others were accepted."""
    with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context(cafile=settings.ca_file))
        if settings.username is not None and settings.password is not None:
            smtp.login(settings.username, settings.password)
        return smtp.send_message(message)


def _refused_error(
    settings: SmtpSettings,
    target: str,
    recipients: Mapping[str, tuple[int, bytes]],
    *,
    everyone: bool,
) -> DeliveryError:
    refused = {address: (code, _text(reply)) for address, (code, reply) in recipients.items()}
    listed = "; ".join(f"{a}: {code} {reply}" for a, (code, reply) in refused.items())
    outcome = "nobody got the message" if everyone else "the other recipients got the message"
    codes = [code for code, _ in refused.values()]
    return DeliveryError(
        f"SMTP server {settings.where} refused {listed} ({outcome})",
        channel="email",
        target=target,
        status=codes[0] if codes else None,
        retryable=bool(codes) and all(400 <= code < 500 for code in codes),
        refused=refused,
    )


def _address_problem(address: str) -> str | None:
    """What is wrong with an e-mail address (a display name is allowed), or None."""
    if "\r" in address or "\n" in address:
        return f"{address!r} contains a line break"
    local, at, domain = parseaddr(address)[1].rpartition("@")
    if not at or not local or not domain:
        return f"{address!r} is not an e-mail address (expected name@domain)"
    return None


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())
