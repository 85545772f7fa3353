"""SLA clocks: due times per level, pauses, warning, breach, met, re-opening, determinism."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from collector.tickets.model import LEVELS, Level, NewEvent, Ticket, TicketEvent
from collector.tickets.sla import (
    DEFAULT_TARGETS,
    HOUR_MS,
    LEVEL_NAMES_EN,
    LEVEL_NAMES_ZH,
    MINUTE_MS,
    LevelTargets,
    SlaPolicy,
    format_duration_ms,
    level_name,
    sla_status,
)
from tests.fakes import FakeClock

T0 = 1_700_000_000_000
DAY = 24 * HOUR_MS
POLICY = SlaPolicy()


class SlaTimeline(FakeClock[int]):
    """The fake clock in unix ms, plus a ticket's events, each written "now"."""

    def __init__(self, now: int = T0) -> None:
        super().__init__(now)
        self.events: list[NewEvent] = []

    def record(self, kind: Any, actor: str = "user:erin", **details: Any) -> None:
        self.events.append(NewEvent(self.now, actor, kind, details))


def make(level: Level = "1", customer: str = "acme") -> Ticket:
    return Ticket(
        id=7,
        customer=customer,
        title="host unreachable",
        level=level,
        state="open",
        source="heartbeat",
        created_ms=T0,
        updated_ms=T0,
    )


def opened_clock() -> SlaTimeline:
    clock = SlaTimeline()
    clock.record("opened", actor="system")
    return clock


# -- targets ---------------------------------------------------------------------------

# level: (response, remote response, resolution) — SERVICE-COMMITMENTS.md + our defaults
EXPECTED = {
    "1": (30 * MINUTE_MS, 30 * MINUTE_MS, 4 * HOUR_MS),
    "2": (30 * MINUTE_MS, 30 * MINUTE_MS, 8 * HOUR_MS),
    "3": (2 * HOUR_MS, 2 * HOUR_MS, 24 * HOUR_MS),
    "4": (2 * HOUR_MS, 2 * HOUR_MS, 72 * HOUR_MS),
    "consult": (2 * HOUR_MS, None, 72 * HOUR_MS),
    "other": (6 * HOUR_MS, None, 15 * DAY),
}


def test_every_level_has_targets_and_names() -> None:
    assert set(EXPECTED) == set(LEVELS) == set(DEFAULT_TARGETS)
    assert set(LEVEL_NAMES_ZH) == set(LEVEL_NAMES_EN) == set(LEVELS)
    assert LEVEL_NAMES_ZH["1"].startswith("一级故障")
    assert level_name("other") == "其它问题 / other problem"


@pytest.mark.parametrize("level", LEVELS)
def test_due_times_per_level(level: Level) -> None:
    response, remote, resolution = EXPECTED[level]
    clock = opened_clock()
    status = sla_status(make(level), clock.events, POLICY, T0)
    assert status.response.target_ms == response
    assert status.response.started_ms == T0
    assert status.response.due_ms == T0 + response
    assert status.resolution.due_ms == T0 + resolution
    assert status.response.state == "running"
    assert status.remote_response.state == "not_applicable"  # no session approved yet

    clock.advance(10 * MINUTE_MS)
    clock.record("remote_approved", actor="user:carl")
    status = sla_status(make(level), clock.events, POLICY, clock.now)
    if remote is None:
        assert status.remote_response.state == "not_applicable"
        assert status.remote_response.due_ms is None
    else:
        assert status.remote_response.state == "running"
        assert status.remote_response.due_ms == clock.now + remote


# -- the response clock ----------------------------------------------------------------


def test_warning_at_three_quarters_then_breach() -> None:
    clock = opened_clock()
    ticket = make("1")  # 30 min response

    def state_at(ms: int) -> str:
        return sla_status(ticket, clock.events, POLICY, T0 + ms).response.state

    warning_at = int(30 * MINUTE_MS * 0.75)
    assert state_at(warning_at - 1) == "running"
    assert state_at(warning_at) == "warning"
    status = sla_status(ticket, clock.events, POLICY, T0)
    assert status.response.warning_ms == T0 + warning_at
    assert state_at(30 * MINUTE_MS) == "warning"  # due "by" then: not yet breached
    assert state_at(30 * MINUTE_MS + 1) == "breached"
    late = sla_status(ticket, clock.events, POLICY, T0 + 45 * MINUTE_MS).response
    assert late.breached_ms == T0 + 30 * MINUTE_MS
    assert late.elapsed_ms == 45 * MINUTE_MS
    assert late.remaining_ms == -15 * MINUTE_MS


def test_an_internal_acknowledgement_does_not_stop_the_response_clock() -> None:
    clock = opened_clock()
    clock.advance(5 * MINUTE_MS)
    clock.record("acknowledged")
    response = sla_status(make("1"), clock.events, POLICY, T0 + 31 * MINUTE_MS).response
    assert response.state == "breached"
    assert response.stopped_ms is None


def test_contact_in_time_is_met_and_stops_the_clock() -> None:
    clock = opened_clock()
    clock.advance(12 * MINUTE_MS)
    clock.record("contacted", via="phone", note="called")
    for later in (0, HOUR_MS, 30 * DAY):
        response = sla_status(make("1"), clock.events, POLICY, clock.now + later).response
        assert response.state == "met"
        assert response.stopped_ms == T0 + 12 * MINUTE_MS
        assert response.elapsed_ms == 12 * MINUTE_MS
        assert response.breached_ms is None


def test_late_contact_stays_breached() -> None:
    clock = opened_clock()
    clock.advance(31 * MINUTE_MS)
    clock.record("contacted", via="phone", note="called")
    response = sla_status(make("1"), clock.events, POLICY, clock.now + DAY).response
    assert response.state == "breached"
    assert response.stopped_ms == T0 + 31 * MINUTE_MS
    assert response.breached_ms == T0 + 30 * MINUTE_MS


def test_resolving_without_acknowledging_counts_as_the_response() -> None:
    clock = opened_clock()
    clock.advance(5 * MINUTE_MS)
    clock.record("resolved", cause="c")
    response = sla_status(make("1"), clock.events, POLICY, clock.now + DAY).response
    assert response.state == "met"
    assert response.stopped_ms == T0 + 5 * MINUTE_MS


def test_a_reopening_starts_a_new_response_measurement() -> None:
    clock = opened_clock()
    clock.advance(40 * MINUTE_MS)
    clock.record("contacted", via="email", note="mailed")  # late: breached
    clock.advance(HOUR_MS)
    clock.record("resolved", cause="c")
    clock.advance(DAY)
    clock.record("reopened", actor="user:carl", reason="no", trigger="rejected")
    reopened_at = clock.now
    status = sla_status(make("1"), clock.events, POLICY, clock.now + 5 * MINUTE_MS)
    assert status.response.state == "running"
    assert status.response.started_ms == reopened_at
    assert status.response.due_ms == reopened_at + 30 * MINUTE_MS
    clock.advance(10 * MINUTE_MS)
    clock.record("contacted", via="remote", note="on the host with them")
    status = sla_status(make("1"), clock.events, POLICY, clock.now)
    assert status.response.state == "met"
    assert status.response.elapsed_ms == 10 * MINUTE_MS


# -- pauses ----------------------------------------------------------------------------


def test_pause_and_resume_shift_the_due_time_by_exactly_the_pause() -> None:
    clock = opened_clock()
    ticket = make("3")  # 2 h response, 24 h resolution
    clock.advance(20 * MINUTE_MS)
    clock.record("waiting", reason="customer to reboot")
    paused = sla_status(ticket, clock.events, POLICY, clock.now + 15 * MINUTE_MS)
    assert paused.response.state == "paused"
    assert paused.response.paused
    assert paused.response.elapsed_ms == 20 * MINUTE_MS  # frozen while paused
    assert paused.resolution.paused
    clock.advance(45 * MINUTE_MS)
    clock.record("resumed")
    status = sla_status(ticket, clock.events, POLICY, clock.now)
    assert not status.response.paused
    assert status.response.state == "running"
    assert status.response.due_ms == T0 + 2 * HOUR_MS + 45 * MINUTE_MS
    assert status.resolution.due_ms == T0 + 24 * HOUR_MS + 45 * MINUTE_MS
    assert status.response.elapsed_ms == 20 * MINUTE_MS


def test_a_clock_breached_while_paused_stays_breached_and_paused() -> None:
    clock = opened_clock()
    clock.advance(31 * MINUTE_MS)
    clock.record("waiting", reason="r")
    response = sla_status(make("1"), clock.events, POLICY, clock.now + HOUR_MS).response
    assert response.state == "breached"
    assert response.paused
    assert response.elapsed_ms == 31 * MINUTE_MS


@pytest.mark.parametrize("seed", range(25))
def test_property_each_pause_before_the_due_time_pushes_it_back_by_its_length(
    seed: int,
) -> None:
    rng = random.Random(seed)
    level: Level = rng.choice(LEVELS)
    target = DEFAULT_TARGETS[level].response_ms
    clock = opened_clock()
    total_pause = 0
    while True:
        run = rng.randrange(1, max(2, target // 5))
        if clock.now - T0 - total_pause + run >= target:
            break
        clock.advance(run)
        clock.record("waiting", reason="r")
        pause = rng.randrange(1, 3 * HOUR_MS)
        clock.advance(pause)
        clock.record("resumed")
        total_pause += pause
    status = sla_status(make(level), clock.events, POLICY, clock.now)
    assert status.response.due_ms == T0 + target + total_pause
    assert status.response.elapsed_ms == clock.now - T0 - total_pause
    # and the clock breaches one millisecond after that due time, not before
    due = T0 + target + total_pause
    assert sla_status(make(level), clock.events, POLICY, due).response.state == "warning"
    assert sla_status(make(level), clock.events, POLICY, due + 1).response.state == "breached"


# -- the resolution clock across re-openings -------------------------------------------


def test_resolution_time_accumulates_across_reopenings_and_skips_the_resolved_gap() -> None:
    clock = opened_clock()
    ticket = make("2")  # 8 h resolution
    clock.advance(HOUR_MS)
    clock.record("acknowledged")
    clock.advance(HOUR_MS)
    clock.record("resolved", cause="c")  # 2 h used
    stopped = sla_status(ticket, clock.events, POLICY, clock.now + 3 * DAY).resolution
    assert stopped.state == "met"
    assert stopped.stopped_ms == clock.now
    assert stopped.elapsed_ms == 2 * HOUR_MS
    clock.advance(3 * DAY)  # resolved for three days: does not count
    clock.record("reopened", actor="rule:x", reason="recurrence", trigger="recurrence")
    clock.advance(30 * MINUTE_MS)
    clock.record("waiting", reason="r")
    clock.advance(HOUR_MS)  # paused: does not count either
    clock.record("resumed")
    clock.advance(30 * MINUTE_MS)
    status = sla_status(ticket, clock.events, POLICY, clock.now).resolution
    assert status.state == "running"
    assert status.started_ms == T0
    assert status.stopped_ms is None
    assert status.elapsed_ms == 3 * HOUR_MS
    assert status.due_ms == clock.now + 5 * HOUR_MS


def test_resolution_breached_before_resolve_stays_breached() -> None:
    clock = opened_clock()
    clock.advance(5 * HOUR_MS)
    clock.record("resolved", cause="c")
    resolution = sla_status(make("1"), clock.events, POLICY, clock.now).resolution
    assert resolution.state == "breached"
    assert resolution.breached_ms == T0 + 4 * HOUR_MS


# -- the remote-response clock ---------------------------------------------------------


def test_remote_response_from_approval_to_login() -> None:
    clock = opened_clock()
    clock.advance(HOUR_MS)
    clock.record("remote_approved", actor="user:carl")
    clock.advance(20 * MINUTE_MS)
    clock.record("remote_connected")
    remote = sla_status(make("2"), clock.events, POLICY, clock.now + DAY).remote_response
    assert remote.state == "met"
    assert remote.started_ms == T0 + HOUR_MS
    assert remote.elapsed_ms == 20 * MINUTE_MS


# -- policy overrides ------------------------------------------------------------------


def test_per_customer_override() -> None:
    fast = LevelTargets(response_ms=10 * MINUTE_MS, resolution_ms=2 * HOUR_MS)
    policy = SlaPolicy(customers={"bank": {"1": fast}})
    clock = opened_clock()
    bank = sla_status(make("1", customer="bank"), clock.events, policy, T0)
    acme = sla_status(make("1", customer="acme"), clock.events, policy, T0)
    assert bank.response.due_ms == T0 + 10 * MINUTE_MS
    assert bank.resolution.due_ms == T0 + 2 * HOUR_MS
    assert bank.remote_response.target_ms is None
    assert acme.response.due_ms == T0 + 30 * MINUTE_MS
    other_level = sla_status(make("3", customer="bank"), clock.events, policy, T0)
    assert other_level.response.due_ms == T0 + 2 * HOUR_MS


def test_warning_fraction_is_configurable_and_checked() -> None:
    policy = SlaPolicy(warning_fraction=0.5)
    clock = opened_clock()
    status = sla_status(make("1"), clock.events, policy, T0 + 15 * MINUTE_MS)
    assert status.response.state == "warning"
    assert status.response.warning_after_ms == 15 * MINUTE_MS
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="warning_fraction"):
            SlaPolicy(warning_fraction=bad)


# -- determinism: computed only from what is stored ---------------------------------------


def random_history(rng: random.Random) -> list[TicketEvent]:
    """A plausible timeline with distinct times."""
    at = T0
    events = [TicketEvent(1, 7, at, "system", "opened")]
    waiting = False
    for kind in rng.choices(
        ["acknowledged", "waiting", "resumed", "resolved", "reopened", "comment"], k=12
    ):
        at += rng.randrange(1, 3 * HOUR_MS)
        if (kind == "waiting" and waiting) or (kind == "resumed" and not waiting):
            continue
        waiting = kind == "waiting" or (waiting and kind != "resumed")
        events.append(TicketEvent(len(events) + 1, 7, at, "user:erin", kind))  # type: ignore[arg-type]
    return events


@pytest.mark.parametrize("seed", range(20))
def test_property_status_depends_only_on_stored_events(seed: int) -> None:
    rng = random.Random(seed)
    events = random_history(rng)
    ticket = make(rng.choice(LEVELS))
    end = events[-1].at_ms + DAY
    nows = sorted(rng.randrange(T0, end) for _ in range(10))
    shuffled = list(events)
    rng.shuffle(shuffled)
    previous: dict[tuple[str, int | None], int] = {}
    for now in nows:
        status = sla_status(ticket, events, POLICY, now)
        # same inputs, same answer (a restart recomputes exactly this)
        assert sla_status(ticket, list(events), POLICY, now) == status
        # the order events are handed over in does not matter (distinct times)
        assert sla_status(ticket, shuffled, POLICY, now) == status
        # events after "now" are ignored: the past is not rewritten by the future
        past = [e for e in events if e.at_ms <= now]
        assert sla_status(ticket, past, POLICY, now) == status
        for clock in status.clocks:
            if not clock.applicable:
                continue
            assert clock.started_ms is not None
            assert 0 <= clock.elapsed_ms <= now - clock.started_ms
            # never runs backwards within one measurement (a re-opening starts a new
            # response measurement; the resolution clock keeps its one start)
            measurement = (clock.name, clock.started_ms)
            assert clock.elapsed_ms >= previous.get(measurement, 0)
            previous[measurement] = clock.elapsed_ms
            assert (clock.state == "breached") == (clock.elapsed_ms > (clock.target_ms or 0))


def test_next_change_is_the_next_warning_or_due_time() -> None:
    clock = opened_clock()
    status = sla_status(make("1"), clock.events, POLICY, T0)
    assert status.next_change_ms() == T0 + int(30 * MINUTE_MS * 0.75)
    status = sla_status(make("1"), clock.events, POLICY, T0 + 25 * MINUTE_MS)
    assert status.next_change_ms() == T0 + 30 * MINUTE_MS
    clock.record("waiting", reason="r")
    assert sla_status(make("1"), clock.events, POLICY, T0).next_change_ms() is None


def test_status_as_dict_is_json_ready() -> None:
    status = sla_status(make("1"), opened_clock().events, POLICY, T0)
    data = status.as_dict()
    assert set(data["clocks"]) == {"response", "remote_response", "resolution"}
    assert data["clocks"]["response"]["due_ms"] == T0 + 30 * MINUTE_MS


def test_no_opened_event_starts_at_created_ms() -> None:
    ticket = replace(make("1"), created_ms=T0 - MINUTE_MS)
    status = sla_status(ticket, [], POLICY, T0)
    assert status.response.started_ms == T0 - MINUTE_MS


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (45_000, "45s"),
        (30 * MINUTE_MS, "30m"),
        (125 * MINUTE_MS, "2h 5m"),
        (3 * DAY + 4 * HOUR_MS, "3d 4h"),
        (-90_000, "-1m 30s"),
    ],
)
def test_format_duration(ms: int, text: str) -> None:
    assert format_duration_ms(ms) == text
