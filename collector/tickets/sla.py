"""SLA clocks: targets per fault level, and each ticket's clocks computed from its timeline.

Pure and deterministic: ``sla_status`` reads only the ticket's stored fields and its
events up to ``now_ms`` (events after ``now_ms`` are ignored), so a collector restart,
another replica, or a recomputation next week gives the same answer.

Clocks (targets per level in ``DEFAULT_TARGETS``, from SERVICE-COMMITMENTS.md;
resolution targets are our defaults, configurable like the rest):

``response``
    Starts at the latest ``opened`` or ``reopened`` event (``created_ms`` if the
    timeline has no ``opened`` event); stops at the first ``contacted`` (an engineer
    reached the customer, the contracts' 支持服务响应时间) — or ``resolved``: resolving
    is a response too — after that start. An internal ``acknowledged`` does not stop
    it. Each re-opening starts a new response measurement; the status shows the
    latest one.
``remote_response``
    Starts at the latest ``remote_approved`` event (the customer consented to remote
    support); stops at the first ``remote_connected`` (the engineer is logged in) or
    ``resolved`` after it. ``not_applicable`` until a session is approved, and for
    levels without a remote target (consult, other).
``resolution``
    Runs from ``opened`` to ``resolved``; stops at ``resolved`` (or ``closed``) and
    runs again from ``reopened``. Time **accumulates across re-openings**: the
    elapsed time is the sum of every open period (opened→resolved, reopened→resolved,
    ..., the current one up to now), and it is compared with one target. The time a
    ticket spent resolved or closed before it was re-opened does not count; the time
    it was open before the fix that did not hold does. ``started_ms`` is the first
    opening; ``due_ms`` assumes the clock keeps running from now on.

Regrading (a ``regraded`` event: an engineer changed the level; grading is the
vendor's confirmation of the request, from which the contracts measure): every clock
still running restarts at that moment against the new level's targets — the response
and remote-response measurements start again, and the resolution clock drops the
time accumulated before (it counts from the regrade, and accumulates across later
re-openings as usual). A clock that had already stopped keeps its result, measured
against the level in force when its measurement started. ``Clock.regraded_ms`` is
the regrade a measurement started at (None if it did not), so escalation starts a
fresh ladder for it.

Kinds of request (``Ticket.kind``) set their own targets over the level's
(``DEFAULT_REQUEST_TARGETS``, SERVICE-COMMITMENTS.md): a complaint (投诉) is answered
within 2 h and concluded within 15 days; an inquiry (询检问题) is answered (its
resolution clock) within 3 h if urgent, 6 h if pressing and 3 working days if
general, its response following its level. Working days come from the policy's
``WorkingCalendar``: the target is the span from the measurement's start to the same
wall-clock time on the 3rd working day after (weekends and holidays skipped), and a
pause pushes that due time back by its length like any other.

Every clock pauses while the ticket waits on the customer (from a ``waiting`` event
to the next ``resumed``): paused time is excluded from ``elapsed_ms``, so each pause
pushes the due time back by exactly its length.

Clock states: ``not_applicable`` (no target, or not started); ``met`` (stopped with
elapsed ≤ target); ``breached`` (elapsed > target, whether stopped, running or
paused; ``breached_ms`` is when it crossed); otherwise ``paused`` if a pause is in
progress, ``warning`` if elapsed ≥ ``warning_fraction`` * target, else ``running``.
While paused, ``due_ms`` is "now + remaining" and moves with the pause.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from collector.calendar import WorkingCalendar
from collector.tickets.model import Level, NewEvent, Ticket, TicketEvent

__all__ = [
    "CLOCK_NAMES",
    "DAY_MS",
    "DEFAULT_REQUEST_TARGETS",
    "DEFAULT_TARGETS",
    "HOUR_MS",
    "LEVEL_NAMES_EN",
    "LEVEL_NAMES_ZH",
    "MINUTE_MS",
    "REMOTE_APPROVED",
    "REMOTE_CONNECTED",
    "Clock",
    "ClockName",
    "ClockState",
    "Event",
    "LevelTargets",
    "RequestTargets",
    "SlaPolicy",
    "SlaStatus",
    "format_duration_ms",
    "level_name",
    "request_key",
    "sla_status",
]

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

ClockName = Literal["response", "remote_response", "resolution"]
CLOCK_NAMES: tuple[ClockName, ...] = ("response", "remote_response", "resolution")
ClockState = Literal["running", "paused", "warning", "met", "breached", "not_applicable"]

# Session events (written by the remote-session feature); plain strings so that the
# clock works as soon as those kinds exist in the timeline.
REMOTE_APPROVED = "remote_approved"
REMOTE_CONNECTED = "remote_connected"

Event = TicketEvent | NewEvent
"""Stored or not-yet-stored timeline entries: both have at_ms, actor, kind, details."""

LEVEL_NAMES_ZH: Mapping[Level, str] = {
    "1": "一级故障 (重大故障)",
    "2": "二级故障 (主要故障)",
    "3": "三级故障 (次要故障)",
    "4": "四级故障",
    "consult": "技术咨询",
    "other": "其它问题",
}
LEVEL_NAMES_EN: Mapping[Level, str] = {
    "1": "level 1 (critical)",
    "2": "level 2 (major)",
    "3": "level 3 (minor)",
    "4": "level 4",
    "consult": "technical consultation",
    "other": "other problem",
}


def level_name(level: Level) -> str:
    """Both names of a fault level, e.g. "一级故障 (重大故障) / level 1 (critical)"."""
    return f"{LEVEL_NAMES_ZH[level]} / {LEVEL_NAMES_EN[level]}"


# -- targets and policy ------------------------------------------------------------------


@dataclass(frozen=True)
class LevelTargets:
    """The targets of one fault level, in ms. ``remote_response_ms`` None: no remote target."""

    response_ms: int
    resolution_ms: int
    remote_response_ms: int | None = None

    def target(self, clock: ClockName) -> int | None:
        """The target of ``clock`` in ms (None: the clock does not apply)."""
        if clock == "response":
            return self.response_ms
        if clock == "resolution":
            return self.resolution_ms
        return self.remote_response_ms


DEFAULT_TARGETS: Mapping[Level, LevelTargets] = {
    "1": LevelTargets(30 * MINUTE_MS, 4 * HOUR_MS, 30 * MINUTE_MS),
    "2": LevelTargets(30 * MINUTE_MS, 8 * HOUR_MS, 30 * MINUTE_MS),
    "3": LevelTargets(2 * HOUR_MS, 24 * HOUR_MS, 2 * HOUR_MS),
    "4": LevelTargets(2 * HOUR_MS, 72 * HOUR_MS, 2 * HOUR_MS),
    "consult": LevelTargets(2 * HOUR_MS, 72 * HOUR_MS, None),
    "other": LevelTargets(6 * HOUR_MS, 15 * DAY_MS, None),
}


@dataclass(frozen=True)
class RequestTargets:
    """What a kind of request sets over its level's targets (None: the level's)."""

    response_ms: int | None = None
    resolution_ms: int | None = None
    resolution_working_days: int | None = None  # instead of resolution_ms


DEFAULT_REQUEST_TARGETS: Mapping[str, RequestTargets] = {
    "complaint": RequestTargets(response_ms=2 * HOUR_MS, resolution_ms=15 * DAY_MS),
    "inquiry/urgent": RequestTargets(resolution_ms=3 * HOUR_MS),
    "inquiry/pressing": RequestTargets(resolution_ms=6 * HOUR_MS),
    "inquiry/general": RequestTargets(resolution_working_days=3),
}
"""Keyed by kind, or kind/urgency for inquiries (an inquiry without urgency: general)."""


def request_key(ticket: Ticket) -> str | None:
    """The ``DEFAULT_REQUEST_TARGETS`` key of a ticket; None for faults."""
    if ticket.kind == "fault":
        return None
    if ticket.kind == "inquiry":
        return f"inquiry/{ticket.urgency or 'general'}"
    return ticket.kind


@dataclass(frozen=True)
class SlaPolicy:
    """Targets per level, per-customer overrides (complete ``LevelTargets`` per level:
    the config loader merges partial overrides), the warning fraction, the targets of
    kinds of request and the working-day calendar they count in."""

    levels: Mapping[Level, LevelTargets] = field(default_factory=lambda: dict(DEFAULT_TARGETS))
    customers: Mapping[str, Mapping[Level, LevelTargets]] = field(default_factory=dict)
    warning_fraction: float = 0.75
    requests: Mapping[str, RequestTargets] = field(
        default_factory=lambda: dict(DEFAULT_REQUEST_TARGETS)
    )
    calendar: WorkingCalendar = field(default_factory=WorkingCalendar)

    def __post_init__(self) -> None:
        if not 0 < self.warning_fraction < 1:
            raise ValueError(f"warning_fraction {self.warning_fraction!r} must be between 0 and 1")

    def targets(self, customer: str, level: Level) -> LevelTargets:
        """The targets for a ticket of ``customer`` at ``level``."""
        override = self.customers.get(customer, {}).get(level)
        if override is not None:
            return override
        return self.levels.get(level, DEFAULT_TARGETS[level])


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Clock:
    """One SLA clock of one ticket at ``SlaStatus.now_ms``. Times are unix ms,
    durations ms; every field but name/state/elapsed_ms/paused may be None when the
    clock is ``not_applicable``."""

    name: ClockName
    state: ClockState
    target_ms: int | None
    started_ms: int | None = None
    due_ms: int | None = None
    warning_ms: int | None = None  # when elapsed reaches warning_after_ms
    warning_after_ms: int | None = None  # warning_fraction * target
    stopped_ms: int | None = None  # set when stopped (met, or breached and stopped)
    elapsed_ms: int = 0  # running time, pauses excluded
    paused: bool = False
    breached_ms: int | None = None  # when elapsed passed the target
    regraded_ms: int | None = None  # the measurement restarted at this regrade

    @property
    def applicable(self) -> bool:
        """Whether the clock has a target and has started."""
        return self.state != "not_applicable"

    @property
    def stopped(self) -> bool:
        """Whether the clock has stopped (met, or breached and then stopped)."""
        return self.stopped_ms is not None

    @property
    def remaining_ms(self) -> int | None:
        """Target minus elapsed (negative once breached); None if not applicable."""
        if self.target_ms is None or not self.applicable:
            return None
        return self.target_ms - self.elapsed_ms


@dataclass(frozen=True)
class SlaStatus:
    """Every clock of one ticket, as of ``now_ms``."""

    ticket_id: int
    now_ms: int
    response: Clock
    remote_response: Clock
    resolution: Clock

    @property
    def clocks(self) -> tuple[Clock, Clock, Clock]:
        """The clocks in ``CLOCK_NAMES`` order."""
        return (self.response, self.remote_response, self.resolution)

    def clock(self, name: ClockName) -> Clock:
        """The clock called ``name``."""
        return {c.name: c for c in self.clocks}[name]

    @property
    def breached(self) -> bool:
        """Whether any clock is breached."""
        return any(c.state == "breached" for c in self.clocks)

    def next_change_ms(self) -> int | None:
        """The earliest future moment a running clock reaches its warning or due time
        (when to look again); None if nothing is running."""
        moments = [
            moment
            for c in self.clocks
            if c.applicable and not c.stopped and not c.paused
            for moment in (c.warning_ms, c.due_ms)
            if moment is not None and moment > self.now_ms
        ]
        return min(moments, default=None)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (clock fields as in ``Clock``)."""
        return {
            "ticket_id": self.ticket_id,
            "now_ms": self.now_ms,
            "clocks": {c.name: asdict(c) for c in self.clocks},
        }


# -- computation -------------------------------------------------------------------------

Interval = tuple[int, int | None]  # [start, end); end None: still open
Segment = tuple[int, int]


def sla_status(
    ticket: Ticket, events: Sequence[Event], policy: SlaPolicy, now_ms: int
) -> SlaStatus:
    """The ticket's clocks at ``now_ms``, from its level, customer, ``created_ms`` and
    the events at or before ``now_ms`` (ordered by time; ties keep the given order)."""
    timeline = sorted((e for e in events if e.at_ms <= now_ms), key=lambda e: e.at_ms)
    pauses = _pauses(timeline)
    regrades = [e for e in timeline if e.kind == "regraded"]

    def clock(name: ClockName, runs: list[Interval]) -> Clock:
        if not runs:
            target = policy.targets(ticket.customer, ticket.level).target(name)
            return _clock(name, target, runs, pauses, now_ms, policy.warning_fraction)
        start = runs[0][0] if name == "resolution" else runs[-1][0]
        level = _level_at(regrades, ticket.level, start)
        target = _request_target(ticket, policy, name, start)
        if target is None:
            target = policy.targets(ticket.customer, level).target(name)
        result = _clock(name, target, runs, pauses, now_ms, policy.warning_fraction)
        if result.applicable and any(e.at_ms == start for e in regrades):
            return replace(result, regraded_ms=start)
        return result

    return SlaStatus(
        ticket_id=ticket.id,
        now_ms=now_ms,
        response=clock("response", _response_runs(timeline, ticket.created_ms)),
        remote_response=clock("remote_response", _remote_runs(timeline)),
        resolution=clock("resolution", _resolution_runs(timeline, ticket.created_ms)),
    )


def _request_target(
    ticket: Ticket, policy: SlaPolicy, name: ClockName, start_ms: int
) -> int | None:
    """The kind of request's target for clock ``name`` measured from ``start_ms``;
    None when the kind sets none (the level's applies)."""
    key = request_key(ticket)
    targets = policy.requests.get(key) if key else None
    if targets is None:
        return None
    if name == "response":
        return targets.response_ms
    if name == "resolution" and targets.resolution_working_days is not None:
        due = policy.calendar.add_working_days(start_ms, targets.resolution_working_days)
        return due - start_ms
    return targets.resolution_ms if name == "resolution" else None


def _level_at(regrades: Sequence[Event], current: Level, at_ms: int) -> Level:
    """The level in force at ``at_ms``: the ``previous`` of the first regrade after it,
    or the ticket's current level (a regrade applies from its own moment on)."""
    for event in regrades:
        if event.at_ms > at_ms:
            previous = str(event.details.get("previous", current))
            return next((lvl for lvl in DEFAULT_TARGETS if lvl == previous), current)
    return current


def _pauses(timeline: Sequence[Event]) -> list[Interval]:
    """Waiting-on-customer periods: each ``waiting`` to the next ``resumed``."""
    pauses: list[Interval] = []
    start: int | None = None
    for event in timeline:
        if event.kind == "waiting" and start is None:
            start = event.at_ms
        elif event.kind == "resumed" and start is not None:
            pauses.append((start, event.at_ms))
            start = None
    if start is not None:
        pauses.append((start, None))
    return pauses


def _response_runs(timeline: Sequence[Event], created_ms: int) -> list[Interval]:
    start, stop = created_ms, None
    for event in timeline:
        if event.kind in ("opened", "reopened"):
            start, stop = event.at_ms, None
        elif event.kind == "regraded" and stop is None:
            start = event.at_ms
        elif event.kind in ("contacted", "resolved") and stop is None:
            stop = event.at_ms
    return [(start, stop)]


def _remote_runs(timeline: Sequence[Event]) -> list[Interval]:
    start: int | None = None
    stop: int | None = None
    for event in timeline:
        kind: str = event.kind
        if kind == REMOTE_APPROVED:
            start, stop = event.at_ms, None
        elif kind == "regraded" and start is not None and stop is None:
            start = event.at_ms
        elif kind in (REMOTE_CONNECTED, "resolved") and start is not None and stop is None:
            stop = event.at_ms
    return [] if start is None else [(start, stop)]


def _resolution_runs(timeline: Sequence[Event], created_ms: int) -> list[Interval]:
    runs: list[Interval] = []
    start: int | None = created_ms
    for event in timeline:
        if event.kind == "opened" and not runs and start is not None:
            start = event.at_ms
        elif event.kind in ("resolved", "closed") and start is not None:
            runs.append((start, event.at_ms))
            start = None
        elif event.kind == "reopened" and start is None:
            start = event.at_ms
        elif event.kind == "regraded" and start is not None:
            runs, start = [], event.at_ms  # counts afresh from the regrade
    if start is not None:
        runs.append((start, None))
    return runs


def _clock(
    name: ClockName,
    target: int | None,
    runs: list[Interval],
    pauses: list[Interval],
    now_ms: int,
    warning_fraction: float,
) -> Clock:
    if target is None or not runs:
        return Clock(name=name, state="not_applicable", target_ms=target)
    stopped = runs[-1][1]
    segments = _active_segments(runs, pauses, now_ms)
    elapsed = sum(end - begin for begin, end in segments)
    tail = stopped if stopped is not None else now_ms
    warning_after = int(target * warning_fraction)
    paused = stopped is None and any(end is None for _, end in pauses)
    due = _crossing(segments, target, tail)
    breached = elapsed > target
    return Clock(
        name=name,
        state=_state(stopped is not None, breached, paused, elapsed >= warning_after),
        target_ms=target,
        started_ms=runs[0][0],
        due_ms=due,
        warning_ms=_crossing(segments, warning_after, tail),
        warning_after_ms=warning_after,
        stopped_ms=stopped,
        elapsed_ms=elapsed,
        paused=paused,
        breached_ms=due if breached else None,
    )


def _state(stopped: bool, breached: bool, paused: bool, warned: bool) -> ClockState:
    if breached:
        return "breached"
    if stopped:
        return "met"
    if paused:
        return "paused"
    return "warning" if warned else "running"


def _active_segments(
    runs: Iterable[Interval], pauses: Sequence[Interval], now_ms: int
) -> list[Segment]:
    """The running periods up to ``now_ms`` minus the pauses, in time order."""
    segments: list[Segment] = []
    for start, end in runs:
        segments.extend(_subtract((start, min(end, now_ms) if end is not None else now_ms), pauses))
    return [(a, b) for a, b in segments if b > a]


def _subtract(segment: Segment, pauses: Sequence[Interval]) -> list[Segment]:
    pieces = [segment]
    for p_start, p_end in pauses:
        stop = p_end if p_end is not None else max(segment[1], p_start)
        pieces = [part for piece in pieces for part in _cut(piece, p_start, stop)]
    return pieces


def _cut(segment: Segment, start: int, end: int) -> list[Segment]:
    a, b = segment
    if end <= a or start >= b:
        return [segment]
    return [(x, y) for x, y in ((a, start), (end, b)) if y > x]


def _crossing(segments: Sequence[Segment], threshold: int, tail_ms: int) -> int:
    """When the running time reaches ``threshold``: inside the known segments, or
    extrapolated from ``tail_ms`` (now, or the stop) if it has not yet."""
    accumulated = 0
    for begin, end in segments:
        if accumulated + (end - begin) >= threshold:
            return begin + (threshold - accumulated)
        accumulated += end - begin
    return tail_ms + (threshold - accumulated)


def format_duration_ms(ms: int) -> str:
    """A short human duration: "45s", "30m", "2h 5m", "3d 4h" (sign kept, seconds floored)."""
    if ms < 0:
        return "-" + format_duration_ms(-ms)
    seconds = ms // SECOND_MS
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if secs or not parts:
        parts.append(f"{secs}s")
    return " ".join(parts[:2])
