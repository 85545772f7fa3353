"""Notices to the customer: which are due for a ticket (pure; the service delivers them).

The contracts require that customers are told, not only the vendor's staff. Each
customer's contacts (webhook URLs, e-mail addresses: ``customer_notices.customers``
in the tickets config) receive, in Chinese and English, with a link:

``opened``
    a ticket opened for them (sent while it is unresolved: open, acknowledged,
    recovered or re-opened);
``awaiting_confirmation``
    a fix waits for their confirmation (the ticket is resolved);
``auto_confirm_soon``
    the fix will be confirmed automatically (``auto_confirm`` after the resolution)
    in ``remind_before`` or less unless they confirm or reject it first.

The link is ``PUBLIC_URL/tickets/ID`` when the collector has ``--public-url``, else
the ``aftercare`` command to run. Customer notices never go to the escalation
recipients and carry nothing of the escalation (no internal addresses, no clock
internals). Keys make each notice once-only across restarts, like escalation keys;
a new resolution (after a re-opening) asks again for confirmation.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from collector.errors import format_ms
from collector.tickets.escalation import Notification, Recipient
from collector.tickets.lifecycle import UNRESOLVED_STATES, auto_confirm_due_ms
from collector.tickets.model import Ticket, TicketEvent
from collector.tickets.sla import DAY_MS, LEVEL_NAMES_EN, LEVEL_NAMES_ZH, format_duration_ms

__all__ = [
    "NOTICE_KINDS",
    "CustomerNoticePolicy",
    "NoticeKind",
    "as_customer_sees_it",
    "due_customer_notices",
    "ticket_link",
]

NoticeKind = Literal["opened", "awaiting_confirmation", "auto_confirm_soon"]
NOTICE_KINDS: tuple[NoticeKind, ...] = ("opened", "awaiting_confirmation", "auto_confirm_soon")
PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class CustomerNoticePolicy:
    """Each customer's contacts, and how long before auto-confirmation to remind them."""

    contacts: Mapping[str, tuple[Recipient, ...]] = field(default_factory=dict)
    remind_before_ms: int = DAY_MS


_INTERNAL_DETAILS = frozenset({"target", "key", "error"})


def as_customer_sees_it(event: TicketEvent) -> TicketEvent:
    """``event`` without what names the vendor's internal recipients: an escalation
    notification keeps its step, channel, subject and delivery flag, not its target,
    key or delivery error (which may quote an address). Other events are unchanged."""
    if event.kind != "notification" or event.details.get("audience") == "customer":
        return event
    kept = {k: v for k, v in event.details.items() if k not in _INTERNAL_DETAILS}
    return replace(event, details=kept)


def ticket_link(ticket_id: int, public_url: str, command: str = "show") -> str:
    """Where the customer looks at the ticket: the public URL, else the CLI command."""
    if public_url:
        return f"{public_url.rstrip('/')}/tickets/{ticket_id}"
    return f"aftercare ticket {command} {ticket_id}"


def due_customer_notices(
    ticket: Ticket,
    policy: CustomerNoticePolicy,
    auto_confirm_ms: int,
    already_sent: AbstractSet[str],
    public_url: str,
    now_ms: int,
    language: str = "",
) -> list[Notification]:
    """The notices ``ticket``'s customer should have now and has not had (by key), in
    ``language`` ("zh-CN" or "en": the customer's setting; "": both, Chinese first)."""
    recipients = policy.contacts.get(ticket.customer, ())
    kinds = _due_kinds(ticket, policy, auto_confirm_ms, now_ms)
    due = []
    for kind in kinds:
        for recipient in recipients:
            key = _key(ticket, kind, recipient)
            if key not in already_sent:
                notice = _notice(key, kind, ticket, recipient, auto_confirm_ms, public_url, now_ms)
                due.append(_in_language(notice, kind, ticket, language))
    return due


def _in_language(
    notice: Notification, kind: NoticeKind, ticket: Ticket, language: str
) -> Notification:
    """``notice`` with its subject and text in one language only (none: both)."""
    if language not in ("zh-CN", "en"):
        return notice
    chinese = language == "zh-CN"
    payload = notice.payload
    zh_subject, _, en_subject = _SUBJECTS[kind].partition(" / ")
    what = "工单" if chinese else "ticket"
    subject = (
        f"[aftercare] {zh_subject if chinese else en_subject}: {what} #{ticket.id} {ticket.title}"
    )
    sentence = payload["summary_zh"] if chinese else payload["summary"]
    link_label, ticket_label = ("链接", "工单") if chinese else ("Link", "Ticket")
    body = f"{sentence}\n\n{link_label}: {payload['link']}\n{ticket_label}: #{ticket.id}\n"
    changed = {**payload, "language": language}
    return replace(notice, subject=subject, payload=changed, body=body)


def _due_kinds(
    ticket: Ticket, policy: CustomerNoticePolicy, auto_confirm_ms: int, now_ms: int
) -> list[NoticeKind]:
    if ticket.state in UNRESOLVED_STATES:
        return ["opened"]
    if ticket.state != "resolved":
        return []
    kinds: list[NoticeKind] = ["awaiting_confirmation"]
    due_ms = auto_confirm_due_ms(ticket, auto_confirm_ms)
    if due_ms is not None and due_ms - policy.remind_before_ms <= now_ms < due_ms:
        kinds.append("auto_confirm_soon")
    return kinds


def _key(ticket: Ticket, kind: NoticeKind, recipient: Recipient) -> str:
    key = f"customer:ticket:{ticket.id}/{kind}/{recipient.channel}:{recipient.label}"
    if kind != "opened":
        key += f"/resolved:{ticket.resolved_ms}"
    return key


def _notice(
    key: str,
    kind: NoticeKind,
    ticket: Ticket,
    recipient: Recipient,
    auto_confirm_ms: int,
    public_url: str,
    now_ms: int,
) -> Notification:
    command = "show" if kind == "opened" else "confirm"
    link = ticket_link(ticket.id, public_url, command)
    auto_ms = auto_confirm_due_ms(ticket, auto_confirm_ms) if kind != "opened" else None
    zh, en = _sentences(kind, ticket, auto_ms, now_ms)
    payload: dict[str, Any] = {
        "version": PAYLOAD_VERSION,
        "event": f"customer_{kind}",
        "key": key,
        "at_ms": now_ms,
        "at": format_ms(now_ms),
        "summary": en,
        "summary_zh": zh,
        "link": link,
        "ticket": {
            "id": ticket.id,
            "customer": ticket.customer,
            "host": ticket.hostname,
            "title": ticket.title,
            "level": ticket.level,
            "level_name": LEVEL_NAMES_ZH[ticket.level],
            "level_name_en": LEVEL_NAMES_EN[ticket.level],
            "state": ticket.state,
        },
    }
    if auto_ms is not None:
        payload["auto_confirm_ms"] = auto_ms
        payload["auto_confirm_at"] = format_ms(auto_ms)
    subject = f"[aftercare] {_SUBJECTS[kind]}: ticket #{ticket.id} {ticket.title}"
    body = "\n".join([zh, en, "", f"链接 / Link: {link}", f"Ticket: #{ticket.id}"]) + "\n"
    return Notification(
        key,
        -1,
        recipient.channel,
        recipient.target,
        subject,
        payload,
        recipient.label,
        body=body,
        audience="customer",
    )


_SUBJECTS: Mapping[NoticeKind, str] = {
    "opened": "工单已受理 / ticket opened",
    "awaiting_confirmation": "请确认故障已排除 / please confirm the fix",
    "auto_confirm_soon": "即将自动确认 / the fix will be confirmed automatically",
}


def _sentences(
    kind: NoticeKind, ticket: Ticket, auto_ms: int | None, now_ms: int
) -> tuple[str, str]:
    """The notice in Chinese and in English."""
    what = f"#{ticket.id} “{ticket.title}”"
    where = f" ({ticket.hostname})" if ticket.hostname else ""
    if kind == "opened":
        return (
            f"您的工单 {what}{where} 已受理。故障等级: {LEVEL_NAMES_ZH[ticket.level]}。"
            "工程师将按服务承诺与您联系。",
            f"Ticket {what}{where} was opened for you, {LEVEL_NAMES_EN[ticket.level]}. "
            "An engineer will contact you within the committed response time.",
        )
    when = format_ms(auto_ms) if auto_ms is not None else "?"
    if kind == "awaiting_confirmation" and auto_ms is None:  # a complaint: never automatic
        return (
            f"工单 {what}{where} 的问题已处理。请确认是否解决 (确认或驳回)。",
            f"Ticket {what}{where} was dealt with: please confirm or reject the outcome.",
        )
    if kind == "awaiting_confirmation":
        return (
            f"工单 {what}{where} 的故障已处理。请确认是否解决 (确认或驳回)。"
            f"如无答复, 将于 {when} 自动确认。",
            f"The fault of ticket {what}{where} was fixed: please confirm or reject the fix; "
            f"without an answer it is confirmed automatically at {when}.",
        )
    left = format_duration_ms(max(0, (auto_ms or now_ms) - now_ms))
    return (
        f"工单 {what}{where} 的处理结果将于 {when} ({left} 后) 自动确认。如未解决请及时驳回。",
        f"The fix of ticket {what}{where} will be confirmed automatically at {when} "
        f"(in {left}); reject it before then if the fault is not cleared.",
    )
