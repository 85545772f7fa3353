"""Which approval notices are due, and what they say (pure: no store, no network).

A notice is due for each of the customer's contacts while the thing waits for the
customer (and none with the same key is already stored, when the caller knows):

``customer_session_awaiting_approval``
    a remote session request is pending (and has not lapsed);
``customer_run_awaiting_approval``
    the host reported that a playbook run waits for the customer's approval, and
    nobody approved it through the collector yet.

The key ``notice:KIND:ID/CHANNEL:LABEL`` (the recipient's label: webhooks as
scheme://host:port#digest) names each notice per recipient: it is the notice's
``dedup`` in the outbox (stored, hence sent, once) and travels in the webhook
payload. A notice names only its own session or run and its own customer: the link
is ``LINK_BASE/sessions/ID`` or ``LINK_BASE/runs/ID`` (else the ``aftercare`` command
to run).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from collector import notice_texts as messages
from collector.errors import format_ms
from collector.runs.model import RunRecord
from collector.sessions.model import RemoteSession
from collector.tickets.escalation import Recipient

Gettext = Callable[[str], str]

__all__ = [
    "PAYLOAD_VERSION",
    "RUN_EVENT",
    "SESSION_EVENT",
    "CustomerNotice",
    "run_link",
    "run_notices",
    "run_waits",
    "session_link",
    "session_notices",
    "session_waits",
]

PAYLOAD_VERSION = 1
SESSION_EVENT = "customer_session_awaiting_approval"
BOTH = "zh-CN,en"  # the payload's language when the customer has none set
SUBJECT_PREFIX = "[aftercare] "
RUN_EVENT = "customer_run_awaiting_approval"


@dataclass(frozen=True)
class CustomerNotice:
    """One notice to one recipient: what the deliverer sends and the audit records."""

    key: str
    customer: str
    event: str
    about: str  # the session or run id
    recipient: Recipient
    subject: str
    text: str
    payload: Mapping[str, Any]


def session_waits(session: RemoteSession, now_ms: int) -> bool:
    """Whether ``session`` still waits for the customer (pending, not lapsed)."""
    return session.state == "pending" and now_ms < session.pending_expires_ms


def run_waits(run: RunRecord) -> bool:
    """Whether ``run`` still waits for the customer's approval (nobody approved it)."""
    return run.state == "waiting_approval" and run.approved_by is None


def session_link(session_id: str, link_base: str) -> str:
    """The session's portal page, else the command that approves it."""
    if link_base:
        return f"{link_base.rstrip('/')}/sessions/{session_id}"
    return f"aftercare session approve {session_id}"


def run_link(run_id: str, link_base: str) -> str:
    """The run's portal page, else the command that approves it."""
    if link_base:
        return f"{link_base.rstrip('/')}/runs/{run_id}"
    return f"aftercare run approve {run_id}"


def session_notices(
    session: RemoteSession,
    recipients: Sequence[Recipient],
    language: str,
    link_base: str,
    stored: AbstractSet[str],
    now_ms: int,
) -> list[CustomerNotice]:
    """The notices due for ``session`` (none once it is decided or has lapsed), in
    ``language`` ("zh-CN", "en"; anything else: both, Chinese first)."""
    if not session_waits(session, now_ms):
        return []
    link = session_link(session.session_id, link_base)
    about = {
        "id": session.session_id,
        "host": session.hostname,
        "engineer": session.engineer,
        "reason": session.reason,
        "duration_ms": session.requested_duration_ms,
        "requested_ms": session.requested_ms,
        "expires_ms": session.pending_expires_ms,
        "expires": format_ms(session.pending_expires_ms),
        "ticket_id": session.ticket_id,
        "approval": "host" if session.local_approval_required else "portal",
    }
    subject, text = _in_language(language, lambda _: _session_text(session, link, _))
    return _notices(
        SESSION_EVENT,
        ("session", about),
        session.customer,
        recipients,
        _shown(language),
        subject,
        text,
        link,
        stored,
        now_ms,
    )


def _session_text(session: RemoteSession, link: str, _: Gettext) -> tuple[str, list[str]]:
    values = {
        "host": session.hostname,
        "engineer": session.engineer,
        "minutes": session.requested_duration_ms // 60_000,
        "reason": session.reason or "-",
        "ticket": session.ticket_id,
        "expires": format_ms(session.pending_expires_ms),
        "link": link,
    }
    lines = [_(messages.SESSION_ASK) % values, _(messages.SESSION_REASON) % values]
    if session.ticket_id is not None:
        lines.append(_(messages.SESSION_TICKET) % values)
    lines.append(_(messages.SESSION_EXPIRES) % values)
    if session.local_approval_required:
        lines.append(_(messages.SESSION_ON_HOST))
    lines += ["", _(messages.LINK) % values]
    return _(messages.SESSION_SUBJECT) % values, lines


def run_notices(
    run: RunRecord,
    recipients: Sequence[Recipient],
    language: str,
    link_base: str,
    stored: AbstractSet[str],
    now_ms: int,
) -> list[CustomerNotice]:
    """The notices due for ``run`` (none unless it waits for approval, unapproved), in
    ``language`` as for ``session_notices``."""
    if not run_waits(run):
        return []
    link = run_link(run.run_id, link_base)
    about = {
        "id": run.run_id,
        "host": run.hostname,
        "playbook": run.playbook,
        "version": run.version,
        "mode": run.mode,
        "digest": run.playbook_digest,
        "params": dict(run.params),
        "requested_by": run.requested_by,
        "requested_ms": run.requested_ms,
        "ticket_id": run.ticket_id,
    }
    subject, text = _in_language(language, lambda _: _run_text(run, link, _))
    return _notices(
        RUN_EVENT,
        ("run", about),
        run.customer,
        recipients,
        _shown(language),
        subject,
        text,
        link,
        stored,
        now_ms,
    )


def _run_text(run: RunRecord, link: str, _: Gettext) -> tuple[str, list[str]]:
    params = ", ".join(f"{name}={value}" for name, value in sorted(run.params.items()))
    values = {
        "host": run.hostname,
        "playbook": run.playbook,
        "version": run.version,
        "mode": _(run.mode),
        "requested_by": run.requested_by,
        "params": params or _(messages.NO_PARAMS),
        "ticket": run.ticket_id,
        "link": link,
    }
    lines = [_(messages.RUN_ASK) % values, _(messages.RUN_PARAMS) % values]
    if run.ticket_id is not None:
        lines.append(_(messages.RUN_TICKET) % values)
    lines += ["", _(messages.LINK) % values]
    return _(messages.RUN_SUBJECT) % values, lines


def _in_language(
    language: str, texts: Callable[[Gettext], tuple[str, list[str]]]
) -> tuple[str, list[str]]:
    """Subject and lines in ``language``; for no known language both, Chinese first
    (one subject "中文 / English")."""
    if language in messages.LANGUAGES:
        return texts(messages.translations(language).gettext)
    zh_subject, zh_lines = texts(messages.translations("zh-CN").gettext)
    en_subject, en_lines = texts(messages.translations("en").gettext)
    subject = f"{zh_subject} / {en_subject.removeprefix(SUBJECT_PREFIX)}"
    return subject, [*zh_lines, "", *en_lines]


def _shown(language: str) -> str:
    return language if language in messages.LANGUAGES else BOTH


def _notices(
    event: str,
    about: tuple[str, Mapping[str, Any]],
    customer: str,
    recipients: Sequence[Recipient],
    language: str,
    subject: str,
    lines: Sequence[str],
    link: str,
    stored: AbstractSet[str],
    now_ms: int,
) -> list[CustomerNotice]:
    name, fields = about
    text = "\n".join(lines) + "\n"
    due = []
    for recipient in recipients:
        key = f"notice:{name}:{fields['id']}/{recipient.channel}:{recipient.label}"
        if key in stored:
            continue
        payload = {
            "version": PAYLOAD_VERSION,
            "event": event,
            "key": key,
            "at_ms": now_ms,
            "at": format_ms(now_ms),
            "customer": customer,
            "language": language,
            "subject": subject,
            "text": text,
            "link": link,
            name: dict(fields),
        }
        due.append(
            CustomerNotice(
                key, customer, event, str(fields["id"]), recipient, subject, text, payload
            )
        )
    return due
