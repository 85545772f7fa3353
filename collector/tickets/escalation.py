"""Escalation decisions: which notifications are due for a ticket, given its SLA status.

Pure: it decides, the service delivers (webhook POST, SMTP) and records each sent
notification on the ticket's timeline as a ``notification`` event whose details hold
the notification's ``key``. The keys recorded so far (``sent_keys``) go back into
``due_notifications``, so a notification is never sent twice — across restarts and
replicas — while a failed delivery (not recorded) is simply due again next time.

The policy is an ordered ladder of steps (逐级上传: an unanswered ticket goes up one
level at a time). Each step has

- a trigger: ``warning`` (the clock reached the SLA policy's warning fraction),
  ``breach`` (elapsed passed the target) or ``breach+DURATION`` (still running
  DURATION after the breach, counted in clock time: pauses do not advance it);
- the clocks it watches (default response and resolution; remote_response may be
  added);
- an optional ``min_level``: only tickets at least this severe (levels rank
  1, 2, 3, 4, consult, other from most to least severe: ``min_level: "2"`` matches
  levels 1 and 2);
- recipients: webhook URLs and e-mail addresses.

A trigger fires only for a clock that has started and not stopped (running or
paused): a clock stopped before the tick saw it — e.g. acknowledged a second after
its warning — notifies nobody. Keys include ``reopen_count``, so a re-opened ticket
escalates afresh; remote-response keys also include the measurement's start.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from collector.errors import format_ms
from collector.tickets.model import LEVELS, Level, NewEvent, Ticket
from collector.tickets.sla import (
    LEVEL_NAMES_EN,
    LEVEL_NAMES_ZH,
    Clock,
    ClockName,
    Event,
    SlaStatus,
    format_duration_ms,
)
from common.durations import parse_duration

__all__ = [
    "COMPLAINT_STEP",
    "DEFAULT_CLOCKS",
    "PAYLOAD_VERSION",
    "Channel",
    "EscalationPolicy",
    "EscalationStep",
    "Notification",
    "Recipient",
    "Trigger",
    "complaint_notifications",
    "due_notifications",
    "level_rank",
    "next_check_ms",
    "notification_event",
    "notification_key",
    "sent_keys",
]

PAYLOAD_VERSION = 1
Channel = Literal["webhook", "email"]
TriggerKind = Literal["warning", "breach"]
DEFAULT_CLOCKS: frozenset[ClockName] = frozenset({"response", "resolution"})
_TRIGGER = re.compile(r"(warning|breach)(?:\s*\+\s*(.+))?")
_TRIGGER_HELP = 'use "warning", "breach" or "breach+DURATION" (e.g. "breach+30m")'


def level_rank(level: Level) -> int:
    """0 for level 1 (most severe) … 5 for "other"."""
    return LEVELS.index(level)


@dataclass(frozen=True)
class Trigger:
    """When a step fires: at the warning fraction, at breach, or DURATION after breach."""

    kind: TriggerKind
    after_ms: int = 0

    @classmethod
    def parse(cls, text: str) -> Trigger:
        """Parse "warning", "breach" or "breach+30m"; ValueError shows the accepted syntax."""
        match = _TRIGGER.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"invalid trigger {text!r}: {_TRIGGER_HELP}")
        kind: TriggerKind = "warning" if match.group(1) == "warning" else "breach"
        if match.group(2) is None:
            return cls(kind)
        if kind == "warning":
            raise ValueError(f"invalid trigger {text!r}: only breach takes +DURATION")
        after_ms = round(parse_duration(match.group(2)) * 1000)
        return cls(kind, after_ms)

    def __str__(self) -> str:
        if self.after_ms:
            return f"{self.kind}+{_compact_duration(self.after_ms)}"
        return self.kind

    def fired(self, clock: Clock) -> bool:
        """Whether ``clock`` (started, not stopped) has reached this trigger."""
        threshold = self.threshold_ms(clock)
        if threshold is None or not clock.applicable or clock.stopped:
            return False
        if self.kind == "warning":
            return clock.elapsed_ms >= threshold
        return clock.elapsed_ms > threshold

    def threshold_ms(self, clock: Clock) -> int | None:
        """The elapsed clock time at which this trigger fires (None: no target)."""
        if self.kind == "warning":
            return clock.warning_after_ms
        return None if clock.target_ms is None else clock.target_ms + self.after_ms


def _compact_duration(ms: int) -> str:
    """Canonical text for key stability: "30m" whether configured as 30m or 0.5h."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


@dataclass(frozen=True)
class Recipient:
    """Where a notification goes: a webhook URL or an e-mail address. ``delivery_id``
    (not part of the recipient's identity) is set for one delivery from the outbox."""

    channel: Channel
    target: str
    delivery_id: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        """The target as it may be shown and stored: the address for e-mail; for a
        webhook scheme://host:port plus a digest of the whole URL, because webhook
        paths and queries often embed secrets (and timelines are shown to customers)."""
        if self.channel == "email":
            return self.target
        parts = urlsplit(self.target)
        digest = hashlib.sha256(self.target.encode("utf-8")).hexdigest()[:12]
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}#{digest}"


@dataclass(frozen=True)
class EscalationStep:
    """One rung of the ladder."""

    trigger: Trigger
    recipients: tuple[Recipient, ...]
    clocks: frozenset[ClockName] = DEFAULT_CLOCKS
    min_level: Level | None = None

    def applies_to(self, level: Level) -> bool:
        """Whether a ticket of ``level`` passes the ``min_level`` filter."""
        return self.min_level is None or level_rank(level) <= level_rank(self.min_level)


@dataclass(frozen=True)
class EscalationPolicy:
    """The ordered ladder; empty means no notifications."""

    steps: tuple[EscalationStep, ...] = ()


@dataclass(frozen=True)
class Notification:
    """One message to deliver. ``step`` is the index in ``EscalationPolicy.steps``;
    ``target`` is the full URL or address (for delivery only: it may hold a secret),
    ``target_label`` the form safe to store and show (``Recipient.label``).
    ``audience`` "customer": a notice to the customer (``customer_notices``; ``step``
    -1), whose ``body`` is its e-mail text. ``delivery_id`` travels with the message
    (webhook header, e-mail Message-ID) so a receiver can recognise a repeat."""

    key: str
    step: int
    channel: Channel
    target: str
    subject: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    target_label: str = ""
    body: str = ""
    audience: Literal["internal", "customer"] = "internal"
    delivery_id: str = ""  # the outbox's id of this delivery (collector/outbox.py)

    def text(self) -> str:
        """A plain-text body (for e-mail): ``body`` if set, else the summary and the
        main facts of the escalation."""
        if self.body:
            return self.body
        ticket = self.payload["ticket"]
        clock = self.payload["clock"]
        lines = [
            self.payload["summary"],
            "",
            f"Ticket:    #{ticket['id']} {ticket['title']}",
            f"Customer:  {ticket['customer']}",
            f"Host:      {ticket['host'] or '-'}",
            f"Level:     {ticket['level_name']}",
            f"State:     {ticket['state']}",
            f"Assignee:  {ticket['assignee'] or '-'}",
            f"Clock:     {clock['name']} ({clock['state']})",
            f"Target:    {format_duration_ms(clock['target_ms'])}",
            f"Elapsed:   {format_duration_ms(clock['elapsed_ms'])}",
            f"Due:       {clock['due']}",
            "",
            f"Escalation step {self.step} ({self.payload['trigger']}); key {self.key}",
        ]
        return "\n".join(lines) + "\n"


def notification_key(
    ticket: Ticket, clock: Clock, trigger: Trigger, step: int, recipient: Recipient
) -> str:
    """Stable identity of a notification: ticket, clock, trigger, step, recipient and
    re-open count (plus the measurement's start for the remote-response clock, and the
    regrade that restarted the clock, if one did)."""
    key = (
        f"ticket:{ticket.id}/{clock.name}/{trigger}/step:{step}"
        f"/{recipient.channel}:{recipient.label}/reopen:{ticket.reopen_count}"
    )
    if clock.name == "remote_response":
        key += f"/since:{clock.started_ms}"
    if clock.regraded_ms is not None:  # a regrade restarted the clock: a fresh ladder
        key += f"/regraded:{clock.regraded_ms}"
    return key


def due_notifications(
    ticket: Ticket,
    status: SlaStatus,
    policy: EscalationPolicy,
    already_sent: AbstractSet[str],
    now_ms: int,
    chain: Sequence[Recipient] | None = None,
) -> list[Notification]:
    """Every notification the policy calls for now that is not in ``already_sent``,
    in step order, then clock order (``CLOCK_NAMES``), then recipient order.

    ``chain`` (level by level, 逐级上传: the responsible engineer, their supervisor,
    theirs, … from ``teams.py``) replaces the steps' recipient lists: step N notifies
    the chain's N-th person; steps beyond the chain notify its top again. None: the
    steps' own recipients."""
    due: list[Notification] = []
    for index, step in enumerate(policy.steps):
        if not step.applies_to(ticket.level):
            continue
        recipients = step.recipients if not chain else (chain[min(index, len(chain) - 1)],)
        for clock in status.clocks:
            if clock.name not in step.clocks or not step.trigger.fired(clock):
                continue
            for recipient in recipients:
                key = notification_key(ticket, clock, step.trigger, index, recipient)
                if key not in already_sent:
                    due.append(_notification(key, ticket, clock, step, index, recipient, now_ms))
    return due


COMPLAINT_STEP = -1  # ``Notification.step`` of a complaint announcement (not a ladder step)


def complaint_notifications(
    ticket: Ticket,
    status: SlaStatus,
    recipients: Sequence[Recipient],
    already_sent: AbstractSet[str],
    now_ms: int,
) -> list[Notification]:
    """A complaint (投诉) is announced once to each of the vendor's management
    recipients (``complaints.recipients``); nothing for other kinds. Key:
    ``ticket:ID/complaint/CHANNEL:LABEL``; the payload is the escalation payload with
    ``event`` "complaint_opened" and the response clock."""
    if ticket.kind != "complaint":
        return []
    due = []
    where = "/".join(part for part in (ticket.customer, ticket.hostname) if part)
    summary = f"Complaint #{ticket.id} ({where}) {ticket.title!r}: state {ticket.state}"
    for recipient in recipients:
        key = f"ticket:{ticket.id}/complaint/{recipient.channel}:{recipient.label}"
        if key in already_sent:
            continue
        payload = {
            "version": PAYLOAD_VERSION,
            "event": "complaint_opened",
            "key": key,
            "step": COMPLAINT_STEP,
            "trigger": "complaint",
            "at_ms": now_ms,
            "at": format_ms(now_ms),
            "summary": summary,
            "ticket": _ticket_payload(ticket),
            "clock": _clock_payload(status.response),
        }
        subject = f"[aftercare] complaint: ticket #{ticket.id} {ticket.title}"
        due.append(
            Notification(
                key,
                COMPLAINT_STEP,
                recipient.channel,
                recipient.target,
                subject,
                payload,
                recipient.label,
            )
        )
    return due


def next_check_ms(ticket: Ticket, status: SlaStatus, policy: EscalationPolicy) -> int | None:
    """The earliest future moment a step would fire if nothing changes (clocks running,
    not paused); None if none will. Lets the service sleep until then."""
    moments: list[int] = []
    for step in policy.steps:
        if not step.applies_to(ticket.level):
            continue
        for clock in status.clocks:
            moment = _fire_moment(step, clock, status.now_ms)
            if moment is not None:
                moments.append(moment)
    return min(moments, default=None)


def _fire_moment(step: EscalationStep, clock: Clock, now_ms: int) -> int | None:
    threshold = step.trigger.threshold_ms(clock)
    if clock.name not in step.clocks or threshold is None or step.trigger.fired(clock):
        return None
    if not clock.applicable or clock.stopped or clock.paused:
        return None
    strict = 1 if step.trigger.kind == "breach" else 0
    return now_ms + (threshold - clock.elapsed_ms) + strict


def sent_keys(events: Iterable[Event]) -> set[str]:
    """The keys of the notifications recorded on a timeline."""
    return {
        str(event.details["key"])
        for event in events
        if event.kind == "notification" and "key" in event.details
    }


def notification_event(notification: Notification, at_ms: int, actor: str = "system") -> NewEvent:
    """The timeline event recording that ``notification`` was delivered."""
    details = {
        "key": notification.key,
        "step": notification.step,
        "channel": notification.channel,
        "target": notification.target_label or notification.target,
        "clock": notification.payload["clock"]["name"],
        "trigger": notification.payload["trigger"],
        "subject": notification.subject,
    }
    return NewEvent(at_ms=at_ms, actor=actor, kind="notification", details=details)


# -- the message -------------------------------------------------------------------------


def _notification(
    key: str,
    ticket: Ticket,
    clock: Clock,
    step: EscalationStep,
    index: int,
    recipient: Recipient,
    now_ms: int,
) -> Notification:
    summary = _summary(ticket, clock, step.trigger)
    payload = {
        "version": PAYLOAD_VERSION,
        "event": f"sla_{step.trigger.kind}",
        "key": key,
        "step": index,
        "trigger": str(step.trigger),
        "at_ms": now_ms,
        "at": format_ms(now_ms),
        "summary": summary,
        "ticket": _ticket_payload(ticket),
        "clock": _clock_payload(clock),
    }
    subject = f"[aftercare] {_headline(clock, step.trigger)}: ticket #{ticket.id} {ticket.title}"
    return Notification(
        key, index, recipient.channel, recipient.target, subject, payload, recipient.label
    )


def _ticket_payload(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "customer": ticket.customer,
        "host": ticket.hostname,
        "agent_id": ticket.agent_id,
        "level": ticket.level,
        "level_name": LEVEL_NAMES_ZH[ticket.level],
        "level_name_en": LEVEL_NAMES_EN[ticket.level],
        "state": ticket.state,
        "title": ticket.title,
        "assignee": ticket.assignee,
        "waiting_on_customer": ticket.waiting_on_customer,
        "reopen_count": ticket.reopen_count,
        "created_ms": ticket.created_ms,
    }


def _clock_payload(clock: Clock) -> dict[str, Any]:
    return {
        "name": clock.name,
        "state": clock.state,
        "target_ms": clock.target_ms,
        "elapsed_ms": clock.elapsed_ms,
        "started_ms": clock.started_ms,
        "due_ms": clock.due_ms,
        "due": format_ms(clock.due_ms) if clock.due_ms is not None else None,
        "breached": clock.state == "breached",
        "breached_ms": clock.breached_ms,
        "paused": clock.paused,
    }


def _headline(clock: Clock, trigger: Trigger) -> str:
    label = clock.name.replace("_", " ")
    if trigger.kind == "warning":
        return f"{label} SLA warning"
    if trigger.after_ms:
        return f"{label} SLA breached for {format_duration_ms(trigger.after_ms)}"
    return f"{label} SLA breached"


def _summary(ticket: Ticket, clock: Clock, trigger: Trigger) -> str:
    where = "/".join(part for part in (ticket.customer, ticket.hostname) if part)
    due = format_ms(clock.due_ms) if clock.due_ms is not None else "?"
    target = format_duration_ms(clock.target_ms or 0)
    elapsed = format_duration_ms(clock.elapsed_ms)
    return (
        f"Ticket #{ticket.id} ({LEVEL_NAMES_ZH[ticket.level]}, {where}) {ticket.title!r}: "
        f"{_headline(clock, trigger)} — {elapsed} of {target} used, due {due}; "
        f"state {ticket.state}, assignee {ticket.assignee or 'none'}"
    )
