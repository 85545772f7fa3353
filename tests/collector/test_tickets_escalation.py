"""Escalation: warning, breach and later-ladder notifications, due once each, at the right time."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from collector.tickets.escalation import (
    EscalationPolicy,
    EscalationStep,
    Notification,
    Recipient,
    Trigger,
    due_notifications,
    next_check_ms,
    notification_event,
    sent_keys,
)
from collector.tickets.model import Level, NewEvent, Ticket
from collector.tickets.sla import MINUTE_MS, SlaPolicy, sla_status

T0 = 1_700_000_000_000
HOOK = Recipient("webhook", "http://127.0.0.1:9/hook")
ONCALL = Recipient("email", "oncall@vendor.example")
BOSS = Recipient("email", "boss@vendor.example")
DIRECTOR = Recipient("email", "director@vendor.example")

POLICY = EscalationPolicy(
    steps=(
        EscalationStep(Trigger("warning"), (HOOK,), frozenset({"response"})),
        EscalationStep(Trigger("breach"), (HOOK, ONCALL), frozenset({"response"})),
        EscalationStep(Trigger("breach", 30 * MINUTE_MS), (BOSS,), frozenset({"response"})),
        EscalationStep(
            Trigger("breach", 60 * MINUTE_MS), (DIRECTOR,), frozenset({"response"}), min_level="1"
        ),
    )
)
SLA = SlaPolicy()
DIGEST = hashlib.sha256(b"http://127.0.0.1:9/hook").hexdigest()[:12]


def make(level: Level = "1", **changes: Any) -> Ticket:
    ticket = Ticket(
        id=42,
        customer="acme",
        title="db1 unreachable",
        level=level,
        state="open",
        source="heartbeat",
        created_ms=T0,
        updated_ms=T0,
        hostname="db1",
    )
    return replace(ticket, **changes)


@dataclass
class Service:
    """What the ticket service does each tick: compute, send what is due, record it."""

    ticket: Ticket
    policy: EscalationPolicy = POLICY
    events: list[NewEvent] = field(default_factory=lambda: [NewEvent(T0, "system", "opened")])
    delivered: list[tuple[int, Notification]] = field(default_factory=list)

    def tick(self, now: int) -> list[Notification]:
        status = sla_status(self.ticket, self.events, SLA, now)
        due = due_notifications(self.ticket, status, self.policy, sent_keys(self.events), now)
        for notification in due:
            self.delivered.append((now, notification))
            self.events.append(notification_event(notification, now))
        return due


def targets(notifications: list[Notification]) -> list[tuple[int, str]]:
    return [(n.step, n.target) for n in notifications]


# -- the ladder over time --------------------------------------------------------------


def test_warning_then_breach_then_the_later_ladder_each_once() -> None:
    service = Service(make("1"))  # response target 30 min, warning at 22.5 min
    warning = T0 + int(30 * MINUTE_MS * 0.75)
    due = T0 + 30 * MINUTE_MS
    assert service.tick(T0) == []
    assert service.tick(warning - 1) == []
    assert targets(service.tick(warning)) == [(0, HOOK.target)]
    assert service.tick(warning + MINUTE_MS) == []  # recorded: not again
    assert service.tick(due) == []  # due "by" then: not breached yet
    assert targets(service.tick(due + 1)) == [(1, HOOK.target), (1, ONCALL.target)]
    assert service.tick(due + 10 * MINUTE_MS) == []
    assert service.tick(due + 30 * MINUTE_MS) == []
    assert targets(service.tick(due + 30 * MINUTE_MS + 1)) == [(2, BOSS.target)]
    assert targets(service.tick(due + 60 * MINUTE_MS + 1)) == [(3, DIRECTOR.target)]
    assert service.tick(due + 600 * MINUTE_MS) == []
    assert len(service.delivered) == 5
    assert len({n.key for _, n in service.delivered}) == 5


def test_a_late_first_tick_sends_every_step_reached_so_far() -> None:
    service = Service(make("1"))
    late = service.tick(T0 + 61 * MINUTE_MS)
    assert [n.step for n in late] == [0, 1, 1, 2]
    assert service.tick(T0 + 61 * MINUTE_MS) == []


def test_min_level_filters_less_severe_tickets() -> None:
    service = Service(make("2"))  # same 30 min response target as level 1
    service.tick(T0 + 120 * MINUTE_MS)
    assert DIRECTOR.target not in {n.target for _, n in service.delivered}
    assert BOSS.target in {n.target for _, n in service.delivered}
    severe = EscalationStep(Trigger("breach"), (BOSS,), min_level="2")
    assert severe.applies_to("1") and severe.applies_to("2")
    assert not severe.applies_to("3") and not severe.applies_to("consult")


def test_a_ticket_whose_customer_was_contacted_does_not_escalate() -> None:
    service = Service(make("1"))
    contact = {"via": "phone", "note": "called"}
    service.events.append(NewEvent(T0 + 5 * MINUTE_MS, "user:erin", "contacted", contact))
    assert service.tick(T0 + 10 * 60 * MINUTE_MS) == []


def test_an_internal_acknowledgement_does_not_hold_the_ladder() -> None:
    service = Service(make("1"))
    service.events.append(NewEvent(T0 + 5 * MINUTE_MS, "user:erin", "acknowledged"))
    assert service.tick(T0 + 31 * MINUTE_MS) != []


def test_a_pause_holds_the_ladder() -> None:
    service = Service(make("1"))
    service.tick(T0 + 31 * MINUTE_MS)  # warning + breach
    service.events.append(NewEvent(T0 + 31 * MINUTE_MS, "user:erin", "waiting", {"reason": "r"}))
    assert service.tick(T0 + 10 * 60 * MINUTE_MS) == []  # clock time stands still
    service.events.append(NewEvent(T0 + 10 * 60 * MINUTE_MS, "user:carl", "resumed"))
    # 1 min elapsed past due when paused; the +30m step needs 29 more minutes of clock time
    assert service.tick(T0 + 10 * 60 * MINUTE_MS + 29 * MINUTE_MS) == []
    assert [n.step for n in service.tick(T0 + 10 * 60 * MINUTE_MS + 29 * MINUTE_MS + 1)] == [2]


def test_a_reopened_ticket_escalates_afresh() -> None:
    service = Service(make("1"))
    service.tick(T0 + 31 * MINUTE_MS)
    first = {n.key for _, n in service.delivered}
    reopened_at = T0 + 10 * 60 * MINUTE_MS
    service.events += [
        NewEvent(T0 + 40 * MINUTE_MS, "user:erin", "acknowledged"),
        NewEvent(T0 + 60 * MINUTE_MS, "user:erin", "resolved", {"cause": "c"}),
        NewEvent(reopened_at, "user:carl", "reopened", {"reason": "no"}),
    ]
    service.ticket = replace(service.ticket, state="reopened", reopen_count=1)
    again = service.tick(reopened_at + 31 * MINUTE_MS)
    assert [n.step for n in again] == [0, 1, 1]
    assert not first & {n.key for n in again}
    assert all(n.key.endswith("/reopen:1") for n in again)


def test_several_clocks_per_step() -> None:
    both = EscalationPolicy((EscalationStep(Trigger("breach"), (HOOK,)),))  # response+resolution
    service = Service(make("1"), policy=both)
    assert [n.payload["clock"]["name"] for n in service.tick(T0 + 4 * 60 * MINUTE_MS + 1)] == [
        "response",
        "resolution",
    ]


# -- what a notification holds ---------------------------------------------------------


def test_key_subject_and_payload() -> None:
    service = Service(make("1", assignee="erin"))
    notification = service.tick(T0 + 31 * MINUTE_MS)[1]
    assert notification.key == (
        f"ticket:42/response/breach/step:1/webhook:http://127.0.0.1:9#{DIGEST}/reopen:0"
    )
    assert notification.channel == "webhook"
    assert notification.target == "http://127.0.0.1:9/hook"
    assert notification.target_label == f"http://127.0.0.1:9#{DIGEST}"
    assert notification.subject == "[aftercare] response SLA breached: ticket #42 db1 unreachable"
    payload = json.loads(json.dumps(notification.payload))  # plain JSON
    assert payload["version"] == 1
    assert payload["event"] == "sla_breach"
    assert payload["trigger"] == "breach"
    assert payload["step"] == 1
    assert payload["ticket"] == {
        "id": 42,
        "customer": "acme",
        "host": "db1",
        "agent_id": None,
        "level": "1",
        "level_name": "一级故障 (重大故障)",
        "level_name_en": "level 1 (critical)",
        "state": "open",
        "title": "db1 unreachable",
        "assignee": "erin",
        "waiting_on_customer": False,
        "reopen_count": 0,
        "created_ms": T0,
    }
    clock = payload["clock"]
    assert clock["name"] == "response"
    assert clock["breached"] is True
    assert clock["due_ms"] == clock["breached_ms"] == T0 + 30 * MINUTE_MS
    assert clock["due"] == "2023-11-14T22:43:20+00:00"
    assert "31m of 30m used" in payload["summary"]
    text = service.delivered[0][1].text()
    assert "Ticket:    #42 db1 unreachable" in text


def test_notification_events_round_trip_to_sent_keys() -> None:
    service = Service(make("1"))
    service.tick(T0 + 31 * MINUTE_MS)
    recorded = [e for e in service.events if e.kind == "notification"]
    assert len(recorded) == 3
    assert recorded[0].details["clock"] == "response"
    assert recorded[0].actor == "system"
    assert sent_keys(service.events) == {n.key for _, n in service.delivered}


def test_next_check_is_when_the_next_step_fires() -> None:
    ticket = make("1")
    events = [NewEvent(T0, "system", "opened")]
    status = sla_status(ticket, events, SLA, T0)
    assert next_check_ms(ticket, status, POLICY) == T0 + int(30 * MINUTE_MS * 0.75)
    status = sla_status(ticket, events, SLA, T0 + 25 * MINUTE_MS)
    assert next_check_ms(ticket, status, POLICY) == T0 + 30 * MINUTE_MS + 1
    contact = {"via": "portal", "note": "replied"}
    events.append(NewEvent(T0 + 25 * MINUTE_MS, "user:erin", "contacted", contact))
    status = sla_status(ticket, events, SLA, T0 + 25 * MINUTE_MS)
    assert next_check_ms(ticket, status, POLICY) is None


@pytest.mark.parametrize(
    ("text", "trigger", "canonical"),
    [
        ("warning", Trigger("warning"), "warning"),
        ("breach", Trigger("breach"), "breach"),
        ("breach+30m", Trigger("breach", 30 * MINUTE_MS), "breach+30m"),
        (" breach + 0.5h ", Trigger("breach", 30 * MINUTE_MS), "breach+30m"),
        ("breach+1h30m", Trigger("breach", 90 * MINUTE_MS), "breach+90m"),
        ("breach+2d", Trigger("breach", 2 * 86_400_000), "breach+2d"),
    ],
)
def test_trigger_parse(text: str, trigger: Trigger, canonical: str) -> None:
    assert Trigger.parse(text) == trigger
    assert str(trigger) == canonical


@pytest.mark.parametrize(
    "text", ["breech", "warning+5m", "breach+", "breach+soon", "", "breach-5m"]
)
def test_trigger_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"trigger|duration"):
        Trigger.parse(text)


def test_webhook_secrets_stay_out_of_keys_timeline_and_payload() -> None:
    secret = Recipient("webhook", "https://hooks.example.com:8443/services/T0/B0/s3cr3tT0k3n?x=1")
    policy = EscalationPolicy((EscalationStep(Trigger("breach"), (secret,)),))
    service = Service(make("1"), policy=policy)
    (notification,) = service.tick(T0 + 31 * MINUTE_MS)
    assert notification.target == secret.target  # what the notifier POSTs to
    stored = json.dumps([e.details for e in service.events]) + json.dumps(notification.payload)
    assert "s3cr3t" not in stored and "s3cr3t" not in notification.key
    assert "https://hooks.example.com:8443#" in notification.key
    other = Recipient("webhook", "https://hooks.example.com:8443/services/T0/B0/other")
    assert other.label != secret.label  # different URLs, different keys
