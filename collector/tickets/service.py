"""The ticket service: faults in, closed-loop tickets out.

Glues the pure ticket logic (lifecycle, SLA, escalation, report) to the store, the
rule engine's alerts, Alertmanager and the notifiers. Contracts:

- A rule alert counts as recovered only after it has been absent for the recovery
  delay (default 30 s), so one missed sample does not flap the ticket.
- One ticket per fault: the de-duplication key (host + rule + labels, or an
  Alertmanager fingerprint) finds the ticket. A fault that keeps firing adds no
  events; one that fires again after recovering, being resolved or (within the
  reopen window) being closed adds a ``refired`` event and moves the ticket back.
- No fault goes silent: a rule alert still firing one recovery delay after its ticket
  was resolved or closed (it never cleared, or cleared for less than the recovery
  delay) re-opens the ticket, or opens a new one outside the reopen window; the
  check reads the stored ticket, so it holds across a restart.
- SLA clocks and escalations are computed from stored timestamps and events only.
  Every due notification goes through the outbox (``collector.outbox``): stored once
  (by ticket and notification key), then sent and recorded on the ticket together
  with its mark, so a restart or a new leader changes nothing and sends nothing
  twice (docs/notifications-outbox.md names the one window a receiver must dedupe).
- Callers pass the acting ``Principal``; customers see and act on their own
  customer's tickets only (another customer's ticket is "not found").
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from collector.alert_scope import EvaluationScope
from collector.alertmanager import AlertmanagerPayload, ticket_fields
from collector.auth import Principal
from collector.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from collector.outbox import Notice, Outbox, OutboxEntry, Sender
from collector.store.chunks import chunks
from collector.store.writer import StoreThread
from collector.tickets import knowhow, lifecycle
from collector.tickets.config import TicketsConfig
from collector.tickets.customer_notices import as_customer_sees_it, due_customer_notices
from collector.tickets.escalation import (
    Notification,
    complaint_notifications,
    due_notifications,
)
from collector.tickets.model import (
    ACTIVE_STATES,
    KINDS,
    LEVELS,
    TICKET_STATES,
    URGENCIES,
    Level,
    NewEvent,
    NewTicket,
    Ticket,
    TicketEvent,
    TicketState,
)
from collector.tickets.report import draft_report
from collector.tickets.report_language import DEFAULT_LANGUAGE
from collector.tickets.report_language import LANGUAGES as REPORT_LANGUAGES
from collector.tickets.sla import SlaStatus, sla_status
from collector.tickets.stats import TicketStats, parse_period, ticket_stats

log = logging.getLogger(__name__)

STATS_MAX_TICKETS = 100_000  # a customer's tickets read for statistics (newest first)
KNOWHOW_SCAN = 5000  # resolved or closed tickets searched for know-how (newest first)
TICKETS_PER_TRANSACTION = 100  # rule tickets opened together (ingest commits go between)

ENGINEER_ACTIONS = frozenset(
    {"acknowledge", "comment", "assign", "resolve", "reopen", "wait", "resume", "contact"}
)
CUSTOMER_ACTIONS = frozenset({"comment", "confirm", "reject", "resume"})
FIRING_STATES: frozenset[TicketState] = frozenset({"open", "acknowledged", "reopened"})
RETRY_FAILED_DELIVERY_MS = 60_000  # = collector.outbox.retry_delay_ms(1) and (2)
NOTICE_KIND = "ticket"  # the outbox kind of ticket notifications


class FaultAlert(Protocol):
    """What the rule engine reports for a firing rule (see collector.rules.engine.Alert)."""

    @property
    def rule(self) -> str: ...
    @property
    def level(self) -> int: ...
    @property
    def value(self) -> float: ...
    @property
    def summary(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def dedup_key(self) -> str: ...
    @property
    def heartbeat(self) -> bool: ...
    @property
    def playbook(self) -> str | None: ...
    @property
    def labels(self) -> Any: ...
    @property
    def host(self) -> Any: ...  # HostRef: agent_id, customer, hostname


class TicketMetrics(Protocol):
    """Counters the service updates (collector.metrics.CollectorMetrics provides them)."""

    def ticket_opened(self, level: str, source: str) -> None: ...
    def sla_breached(self, clock: str, level: str) -> None: ...
    def notification(self, channel: str, ok: bool) -> None: ...
    def set_active_tickets(self, counts: Mapping[tuple[str, str], int]) -> None: ...


Deliver = Callable[[Notification], None]
DiagnosticsHook = Callable[[Ticket, str], Awaitable[None]]  # (new ticket, playbook name)


@dataclass(frozen=True)
class ManualTicket:
    """A ticket a person opens."""

    title: str
    description: str
    level: str
    customer: str
    agent_id: str | None = None
    hostname: str = ""
    host_customer: str = ""  # the customer the host is enrolled under (with agent_id)
    kind: str = "fault"  # fault | complaint | inquiry
    urgency: str = ""  # inquiries: urgent | pressing | general ("": general)


@dataclass(frozen=True)
class TicketActionRequest:
    """An action on a ticket and its arguments (unused ones empty)."""

    action: str
    text: str = ""
    assignee: str = ""
    cause: str = ""
    actions: str = ""
    prevention: str = ""
    via: str = ""  # contact: phone | email | portal | remote
    impact: str = ""  # resolve: the effect on the customer's service
    losses: str = ""  # resolve: what was lost (data, hours of service)


@dataclass(frozen=True)
class TicketView:
    """A ticket with its SLA clocks, and its timeline when asked for one."""

    ticket: Ticket
    sla: SlaStatus
    events: tuple[TicketEvent, ...] = ()


class TicketService:
    """All ticket operations; every store access goes through the single writer."""

    def __init__(
        self,
        db: StoreThread,
        config: TicketsConfig,
        deliver: Deliver,
        metrics: TicketMetrics,
        clock_ms: Callable[[], int],
        recovery_delay_ms: int = 30_000,
        public_url: str = "",
        outbox: Outbox | None = None,
    ) -> None:
        """``outbox``: the collector's (its sender of ticket notifications is registered
        here); default: one of this service's own."""
        self._db = db
        self._store = db.store
        self.config = config
        self._deliver = deliver
        self._metrics = metrics
        self._clock_ms = clock_ms
        self._firing: dict[str, str] = {}  # rule dedup key -> customer
        self._owner: dict[str, tuple[str | None, bool]] = {}  # key -> (agent id, heartbeat)
        # firing when adopted (at the start, or taken over from another replica) and not
        # re-evaluated yet -> until when the rules get to fire it again (the settle)
        self._restored: dict[str, int] = {}
        self._settle_ms = 0
        self._scope: EvaluationScope | None = None  # None: every alert (one collector)
        self._absent_since: dict[str, int] = {}  # firing key -> first evaluation without it
        self._recovery_delay_ms = recovery_delay_ms
        self._public_url = public_url  # links in customer notices (else CLI commands)
        self.on_rule_ticket: DiagnosticsHook | None = None  # runs the rule's playbook
        # told of a ticket's new state after a person's action (ends its remote sessions)
        self.on_acted: Callable[[int, str], Awaitable[None]] | None = None
        self._outbox = outbox or Outbox(db, f"tickets:{secrets.token_hex(4)}")
        self._outbox.register(NOTICE_KIND, Sender(self._deliver_entry, self._delivery_events))

    async def start(self, settle_ms: int) -> None:
        """Treat rule tickets that were firing at the last stop as still firing.

        For ``settle_ms`` (the longest rule ``for`` plus a few evaluations) they are not
        marked recovered just because the rules have not fired again yet: the
        engine's pending state starts afresh at every start.
        """
        self._settle_ms = settle_ms
        await self._adopt(None, self._clock_ms())

    async def _adopt(self, scope: EvaluationScope | None, now_ms: int) -> None:
        """Take the stored rule tickets ``scope`` covers (None: all) as firing, with
        the settle time to fire again before they count as recovered."""
        # resolved too: an alert still firing when its ticket was resolved stays "known"
        restore: frozenset[TicketState] = FIRING_STATES | {"resolved"}
        active = await self._db.call(self._store.list_tickets, None, restore, None, 10_000)
        for ticket in active:
            if ticket.source not in ("rule", "heartbeat") or not ticket.dedup_key:
                continue
            owner = (ticket.agent_id, ticket.source == "heartbeat")
            if ticket.dedup_key in self._firing:
                continue
            if scope is not None and not scope.covers(*owner):
                continue
            self._firing[ticket.dedup_key] = ticket.customer
            self._owner[ticket.dedup_key] = owner
            self._restored[ticket.dedup_key] = now_ms + self._settle_ms

    # -- reading ------------------------------------------------------------------------

    async def list_tickets(
        self,
        who: Principal,
        states: Sequence[str],
        level: str | None,
        customer: str | None,
        limit: int = 500,
    ) -> list[TicketView]:
        """Tickets ``who`` may see, newest first (at most ``limit``), with their SLA status."""
        scope = who.visible_customer(customer)
        wanted = _states(states)
        checked = _level(level) if level is not None else None
        tickets = await self._db.call(self._store.list_tickets, scope, wanted, checked, limit)
        now = self._clock_ms()
        timelines = await self._db.call(self._store.ticket_events_many, [t.id for t in tickets])
        return [
            TicketView(ticket, sla_status(ticket, timelines[ticket.id], self.config.sla, now))
            for ticket in tickets
        ]

    async def get(self, who: Principal, ticket_id: int) -> TicketView:
        """One ticket with its timeline; NotFound if absent or not visible to ``who``.
        A customer's view leaves out the escalation recipients (``as_customer_sees_it``)."""
        ticket = await self._visible(who, ticket_id)
        events = await self._db.call(self._store.ticket_events, ticket_id)
        status = sla_status(ticket, events, self.config.sla, self._clock_ms())
        if who.role == "customer":  # internal recipients stay internal
            events = [as_customer_sees_it(e) for e in events]
        return TicketView(ticket, status, tuple(events))

    async def similar(self, who: Principal, ticket_id: int) -> list[knowhow.Match]:
        """Resolved tickets like this one, with their cause and actions (know-how,
        ``collector.tickets.knowhow``), among the ``KNOWHOW_SCAN`` newest resolved or
        closed tickets: every customer's for engineers, the customer's own for a
        customer user. NotFound if the ticket is not visible to ``who``."""
        ticket = await self._visible(who, ticket_id)
        scope = ticket.customer if who.role == "customer" else None
        candidates = await self._db.call(
            self._store.list_tickets, scope, ("resolved", "closed"), None, KNOWHOW_SCAN
        )
        return knowhow.similar(ticket, candidates)

    async def report(
        self, who: Principal, ticket_id: int, fmt: str, language: str = DEFAULT_LANGUAGE
    ) -> str:
        """The fault analysis report as Markdown, HTML or JSON; Markdown and HTML in
        ``language`` ("en" or "zh-CN"; JSON holds the data, not the words)."""
        if language not in REPORT_LANGUAGES:
            raise InvalidRequest(
                f"unknown report language {language!r}: use one of {', '.join(REPORT_LANGUAGES)}"
            )
        view = await self.get(who, ticket_id)
        customer = view.ticket.customer
        report = draft_report(
            view.ticket,
            view.events,
            view.sla,
            vendor=self.config.report_vendor,
            timezone=self.config.timezone_of(customer),
        )
        if fmt == "md":
            return report.markdown(language)
        if fmt == "html":
            return report.html(language)
        if fmt == "json":
            return json.dumps(report.as_dict(), indent=2, ensure_ascii=False, sort_keys=True)
        raise InvalidRequest(f"unknown report format {fmt!r}: use md, html or json")

    async def stats(self, who: Principal, customer: str, period: str) -> TicketStats:
        """Statistics of ``customer``'s tickets opened in ``period`` (2026, 2026Q4,
        2026-11 in the tickets calendar's zone). Customers: their own customer only
        (naming another is refused); engineers and admins must name one."""
        scope = who.visible_customer(customer)
        if not scope:
            raise InvalidRequest("name the customer (--customer)")
        span = parse_period(period, self.config.sla.calendar.timezone)
        tickets = await self._db.call(
            self._store.list_tickets, scope, None, None, STATS_MAX_TICKETS
        )
        if len(tickets) == STATS_MAX_TICKETS and tickets[-1].created_ms >= span.start_ms:
            raise InvalidRequest(
                f"customer {scope!r} has more than {STATS_MAX_TICKETS} tickets since the "
                "start of this period; ask for a shorter, older period"
            )
        in_span = [ticket for ticket in tickets if span.contains(ticket.created_ms)]
        events = await self._db.call(self._store.ticket_events_many, [t.id for t in in_span])
        timelines = [(ticket, events[ticket.id]) for ticket in in_span]
        return ticket_stats(scope, span, timelines, self.config.sla, self._clock_ms())

    # -- people -------------------------------------------------------------------------

    async def create(self, who: Principal, manual: ManualTicket) -> int:
        """Open a ticket by hand; customers open tickets for their own customer only
        (naming another customer is refused, not silently replaced)."""
        customer = who.visible_customer(manual.customer) or ""
        if not customer:
            raise InvalidRequest("name the customer (--customer) or a host (--host)")
        if not who.can_see(customer):
            raise PermissionDenied(f"user {who.name!r} may not open tickets for {customer!r}")
        if manual.agent_id is not None and manual.host_customer != customer:
            raise InvalidRequest(
                f"host {manual.hostname or manual.agent_id!r} does not belong to customer "
                f"{customer!r}; a ticket's host must be one of its customer's hosts"
            )
        title = manual.title.strip()
        if not title:
            raise InvalidRequest("a ticket needs a title")
        new = NewTicket(
            customer=customer,
            title=title[:200],
            level=_level(manual.level),
            source="customer" if who.role == "customer" else "engineer",
            description=manual.description,
            agent_id=manual.agent_id,
            hostname=manual.hostname,
            **_kind_and_urgency(manual.kind, manual.urgency),
        )
        now = self._clock_ms()
        opened = lifecycle.create_event(new, _actor(who), now)
        ticket = await self._db.call(self._store.create_ticket, new, opened)
        self._metrics.ticket_opened(ticket.level, ticket.source)
        return ticket.id

    async def act(self, who: Principal, ticket_id: int, request: TicketActionRequest) -> Ticket:
        """Apply an action as ``who``; PermissionDenied if the role may not take it."""
        allowed = CUSTOMER_ACTIONS if who.role == "customer" else ENGINEER_ACTIONS
        if request.action not in allowed:
            raise PermissionDenied(
                f"{_with_article(who.role)} user cannot {request.action!r} a ticket; "
                f"possible: {', '.join(sorted(allowed))}"
            )
        ticket = await self._visible(who, ticket_id)
        transition = _transition(ticket, request, _actor(who), self._clock_ms())
        saved = await self._db.call(self._store.update_ticket, transition.ticket, transition.events)
        if self.on_acted is not None:
            await self.on_acted(saved.id, saved.state)
        return saved

    async def regrade(self, who: Principal, ticket_id: int, level: str, reason: str) -> Ticket:
        """Change the ticket's level (engineers and admins; grading is the vendor's step).

        Recorded as a ``regraded`` event (so also in the audit chain); the SLA clocks
        restart from this moment against the new level's targets (``sla.py``).
        """
        if who.role == "customer":
            raise PermissionDenied(
                "a customer user cannot change a ticket's level: grading is the vendor's "
                "step; comment on the ticket to ask for it"
            )
        ticket = await self._visible(who, ticket_id)
        transition = lifecycle.regrade(ticket, level, reason, _actor(who), self._clock_ms())
        return await self._db.call(self._store.update_ticket, transition.ticket, transition.events)

    async def rate(self, who: Principal, ticket_id: int, score: int, comment: str) -> None:
        """The customer's satisfaction rating of a closed ticket (customer users of the
        ticket's customer only; another customer's ticket is NotFound). Recorded as a
        ``rated`` event (timeline and audit chain); a new rating replaces the earlier.
        """
        if who.role != "customer":
            raise PermissionDenied(
                f"{_with_article(who.role)} user cannot rate a ticket: the satisfaction "
                "rating is the customer's; customer users rate their closed tickets"
            )
        ticket = await self._visible(who, ticket_id)
        transition = lifecycle.rate(ticket, score, comment, _actor(who), self._clock_ms())
        await self._db.call(self._store.add_ticket_events, ticket.id, transition.events)

    # -- faults -------------------------------------------------------------------------

    async def apply_alerts(
        self,
        alerts: Sequence[FaultAlert],
        now_ms: int,
        scope: EvaluationScope | None = None,
    ) -> None:
        """Reconcile tickets with the set of rule alerts firing now.

        ``scope`` (replicas, ``collector.alert_scope``): only the alerts it covers are
        this replica's; tickets of keys it no longer covers are left to their new
        owner, and stored tickets of keys it newly covers are adopted (with the
        settle time). None: every alert (a single collector).
        """
        if scope is not None:
            await self._follow(scope, now_ms)
            alerts = [a for a in alerts if scope.covers(a.host.agent_id, a.heartbeat)]
        current = {alert.dedup_key: alert for alert in alerts}
        fired = [alert for key, alert in current.items() if key not in self._firing]
        for key, alert in current.items():
            if key in self._firing:
                await self._refire_if_closed_while_firing(alert, now_ms)
        await self._rules_fired(fired, now_ms)
        for alert in fired:
            self._firing[alert.dedup_key] = alert.host.customer
            self._owner[alert.dedup_key] = (alert.host.agent_id, bool(alert.heartbeat))
        for key in current:
            self._restored.pop(key, None)
            self._absent_since.pop(key, None)
        for key in [k for k in self._firing if k not in current]:
            if self._restored.get(key, 0) > now_ms:
                continue  # adopted: the rules have not had the time to fire it again
            absent_since = self._absent_since.setdefault(key, now_ms)
            if now_ms - absent_since < self._recovery_delay_ms:
                continue  # a single missed sample (a slow check) is not a recovery
            self._restored.pop(key, None)
            del self._absent_since[key]
            self._owner.pop(key, None)
            await self._fault_cleared(self._firing.pop(key), key, "rule", now_ms)

    async def _follow(self, scope: EvaluationScope, now_ms: int) -> None:
        """Forget the keys ``scope`` no longer covers; adopt those it newly covers."""
        for key in [k for k in self._firing if not scope.covers(*self._owner_of(k))]:
            del self._firing[key]
            self._owner.pop(key, None)
            self._restored.pop(key, None)
            self._absent_since.pop(key, None)
        before, self._scope = self._scope, scope
        gained = scope if before is None else scope.gained(before)
        if before is not None and not gained.empty():
            await self._adopt(gained, now_ms)

    def _owner_of(self, key: str) -> tuple[str | None, bool]:
        return self._owner.get(key, (None, False))

    async def _refire_if_closed_while_firing(self, alert: FaultAlert, now_ms: int) -> None:
        """A fault still firing a recovery delay after its ticket was resolved or closed
        re-opens that ticket (or opens a new one outside the reopen window): no fault
        goes silent, whether it never cleared or cleared only briefly."""
        ticket = await self._db.call(
            self._store.find_ticket_by_dedup, alert.host.customer, alert.dedup_key
        )
        if ticket is None or ticket.state not in ("resolved", "closed"):
            return
        ended_ms = max(ticket.resolved_ms or 0, ticket.closed_ms or 0)
        if now_ms - ended_ms < self._recovery_delay_ms:
            return  # give the fix one recovery delay to show in the rules
        await self._fault_fired(
            _rule_ticket(alert), _rule_details(alert), f"rule:{alert.rule}", now_ms
        )

    async def apply_alertmanager(self, payload: AlertmanagerPayload, now_ms: int) -> list[str]:
        """Open/update tickets for firing alerts and recover resolved ones.

        Returns a problem per alert that could not become a ticket (e.g. no
        ``customer`` label); the other alerts are applied regardless.
        """
        problems = []
        settings = self.config.alertmanager
        for index, alert in enumerate(payload.alerts):
            try:
                new = ticket_fields(alert, settings.level_for(alert.labels))
            except InvalidRequest as exc:
                problems.append(f"alerts[{index}] ({alert.name or alert.fingerprint}): {exc}")
                continue
            assert new.dedup_key is not None
            current = await self._db.call(
                self._store.find_ticket_by_dedup, new.customer, new.dedup_key
            )
            if alert.status == "firing" and current and current.state in FIRING_STATES:
                continue  # Alertmanager repeats firing alerts: nothing new
            if alert.status == "firing":
                details = {
                    "summary": new.title,
                    "labels": dict(alert.labels),
                    "starts_ms": alert.starts_ms,
                }
                await self._fault_fired(new, details, "alertmanager", now_ms)
            else:
                await self._fault_cleared(new.customer, new.dedup_key, "alertmanager", now_ms)
        return problems

    async def fault_fired(
        self, new: NewTicket, details: dict[str, Any], actor: str, now_ms: int
    ) -> Ticket:
        """Open, re-fire or re-open the ticket for a fault from any source."""
        return await self._fault_fired(new, details, actor, now_ms)

    async def fault_cleared(self, customer: str, dedup_key: str, actor: str, now_ms: int) -> None:
        """Mark the fault's active ticket recovered (if it is firing)."""
        await self._fault_cleared(customer, dedup_key, actor, now_ms)

    async def _fault_fired(
        self, new: NewTicket, details: dict[str, Any], actor: str, now_ms: int
    ) -> Ticket:
        assert new.dedup_key is not None
        for attempt in range(3):
            try:
                return await self._open_or_refire(new, details, actor, now_ms)
            except Conflict:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _rules_fired(self, alerts: Sequence[FaultAlert], now_ms: int) -> None:
        """Open the tickets of newly firing rule alerts: one read finds their faults'
        stored tickets and one transaction opens the new ones, so an alert storm (a
        site's hosts going silent together) costs two store calls, not two per alert.
        Faults with a ticket to re-fire or re-open, and a group that lost a race to
        another replica (Conflict), go one by one. At most TICKETS_PER_TRANSACTION
        tickets are opened per transaction, so ingest commits go in between."""
        faults = [(_rule_ticket(a), _rule_details(a), f"rule:{a.rule}") for a in alerts]
        if not faults:
            return
        stored = await self._db.call(
            self._store.find_tickets_by_dedup,
            [(new.customer, str(new.dedup_key)) for new, _, _ in faults],
        )
        fresh: list[tuple[NewTicket, dict[str, Any], str]] = []
        others: list[tuple[NewTicket, dict[str, Any], str]] = []
        for fault in faults:
            ticket = stored.get((fault[0].customer, str(fault[0].dedup_key)))
            (fresh if self._opens_new(ticket, now_ms) else others).append(fault)
        for group in chunks(fresh, TICKETS_PER_TRANSACTION):
            try:
                tickets = await self._db.call(
                    self._store.create_tickets,
                    [
                        (new, lifecycle.create_event(new, actor, now_ms, details))
                        for new, details, actor in group
                    ],
                )
            except Conflict:
                others += group
                continue
            for ticket, (_, details, _) in zip(tickets, group, strict=True):
                await self._opened(ticket, details)
        for new, details, actor in others:
            await self._fault_fired(new, details, actor, now_ms)

    def _opens_new(self, existing: Ticket | None, now_ms: int) -> bool:
        """Whether a fault whose newest ticket is ``existing`` gets a new ticket (none
        yet, or closed outside the reopen window) rather than that one."""
        return existing is None or (
            existing.state == "closed"
            and not lifecycle.should_reopen(existing, now_ms, self.config.reopen_window_ms)
        )

    async def _opened(self, ticket: Ticket, details: dict[str, Any]) -> None:
        """Count and log a ticket just opened for a fault; start its rule's playbook."""
        self._metrics.ticket_opened(ticket.level, ticket.source)
        log.info("ticket %d opened: %s", ticket.id, ticket.title)
        playbook = details.get("playbook")
        if playbook and self.on_rule_ticket is not None:
            await self.on_rule_ticket(ticket, str(playbook))

    async def _open_or_refire(
        self, new: NewTicket, details: dict[str, Any], actor: str, now_ms: int
    ) -> Ticket:
        assert new.dedup_key is not None
        existing = await self._db.call(
            self._store.find_ticket_by_dedup, new.customer, new.dedup_key
        )
        if self._opens_new(existing, now_ms):
            opened = lifecycle.create_event(new, actor, now_ms, details)
            ticket = await self._db.call(self._store.create_ticket, new, opened)
            await self._opened(ticket, details)
            return ticket
        assert existing is not None
        history = await self._db.call(self._store.ticket_events, existing.id)
        transition = lifecycle.refire(
            existing, details.get("value"), details, actor, now_ms, history=history
        )
        return await self._db.call(self._store.update_ticket, transition.ticket, transition.events)

    async def _fault_cleared(self, customer: str, dedup_key: str, actor: str, now_ms: int) -> None:
        ticket = await self._db.call(self._store.find_ticket_by_dedup, customer, dedup_key)
        if ticket is None or ticket.state not in FIRING_STATES:
            return
        transition = lifecycle.recover(ticket, actor, now_ms)
        await self._db.call(self._store.update_ticket, transition.ticket, transition.events)

    # -- clocks -------------------------------------------------------------------------

    async def tick(self, now_ms: int) -> None:
        """Escalate along the chain, tell customers (opened, awaiting confirmation,
        auto-confirm soon), count breaches, and auto-confirm old resolutions."""
        tickets = await self._db.call(self._store.list_tickets, None, ACTIVE_STATES, None, 10_000)
        self._metrics.set_active_tickets(Counter((t.level, t.state) for t in tickets))
        timelines = await self._db.call(self._store.ticket_events_many, [t.id for t in tickets])
        languages = await self._notice_languages({t.customer for t in tickets})
        notices: list[Notice] = []
        for ticket in tickets:
            try:
                language = languages.get(ticket.customer, "")
                notices += await self._tick_ticket(ticket, timelines[ticket.id], now_ms, language)
            except Conflict:
                log.info("ticket %d changed during the SLA check; next tick", ticket.id)
        await self._outbox.enqueue(notices, now_ms)  # already stored ones: unchanged
        if self._outbox.may_have_due(NOTICE_KIND, now_ms):  # else: the leader's sweep
            await self._outbox.send_due(now_ms, (NOTICE_KIND,))

    async def _notice_languages(self, customers: set[str]) -> dict[str, str]:
        """The language setting of each customer that gets notices ("" when unset)."""
        told = [c for c in sorted(customers) if c in self.config.customer_notices.contacts]
        languages: dict[str, str] = {}
        for customer in told:
            setting: str | None = await self._db.call(self._store.customer_language, customer)
            languages[customer] = setting or ""
        return languages

    async def _tick_ticket(
        self, ticket: Ticket, events: Sequence[TicketEvent], now_ms: int, language: str = ""
    ) -> list[Notice]:
        """One ticket's SLA duties, from its timeline as read at the start of the tick;
        customer notices in ``language`` (the customer's setting; "": both); returns the
        notifications due (for the outbox)."""
        status = sla_status(ticket, events, self.config.sla, now_ms)
        await self._record_breaches(ticket, events, status)
        sent = {e.details.get("key") for e in events if e.kind == "notification"}
        chain = self.config.teams.recipients_for(ticket)  # None: no team, fixed lists
        due = due_notifications(ticket, status, self.config.escalation, sent, now_ms, chain)  # type: ignore[arg-type]
        recipients = self.config.complaint_recipients
        due += complaint_notifications(ticket, status, recipients, sent, now_ms)  # type: ignore[arg-type]
        due += due_customer_notices(
            ticket,
            self.config.customer_notices,
            self.config.auto_confirm_ms,
            sent,  # type: ignore[arg-type]
            self._public_url,
            now_ms,
            language,
        )
        due_ms = lifecycle.auto_confirm_due_ms(ticket, self.config.auto_confirm_ms)
        if due_ms is not None and due_ms <= now_ms:
            transition = lifecycle.auto_confirm(ticket, self.config.auto_confirm_ms, now_ms)
            await self._db.call(self._store.update_ticket, transition.ticket, transition.events)
        return [_notice(ticket.id, notification) for notification in due]

    async def _record_breaches(
        self, ticket: Ticket, events: Sequence[TicketEvent], status: SlaStatus
    ) -> None:
        """Put each clock's first breach on the timeline (and count it) exactly once."""
        recorded = {
            (e.details.get("clock"), e.details.get("reopen_count"), e.details.get("regraded_ms"))
            for e in events
            if e.kind == "escalation" and e.details.get("type") == "breach"
        }
        for clock in status.clocks:
            if clock.state != "breached" or clock.breached_ms is None:
                continue
            if (clock.name, ticket.reopen_count, clock.regraded_ms) in recorded:
                continue
            regraded = {} if clock.regraded_ms is None else {"regraded_ms": clock.regraded_ms}
            event = NewEvent(
                at_ms=clock.breached_ms,
                actor="system",
                kind="escalation",
                details={
                    "type": "breach",
                    "clock": clock.name,
                    "reopen_count": ticket.reopen_count,
                    **regraded,
                    "summary": f"{clock.name} SLA breached",
                },
            )
            await self._db.call(self._store.add_ticket_events, ticket.id, [event])
            self._metrics.sla_breached(clock.name, ticket.level)

    def _deliver_entry(self, entry: OutboxEntry) -> None:
        """Send one stored ticket notification (on a thread); counts the outcome."""
        notification = _notification(entry)
        try:
            self._deliver(notification)
        except Exception:
            self._metrics.notification(notification.channel, False)
            raise
        self._metrics.notification(notification.channel, True)

    def _delivery_events(self, entry: OutboxEntry, error: str | None, at_ms: int) -> list[NewEvent]:
        """The ticket's record of a delivery (or of its first failure)."""
        notification = _notification(entry)
        details: dict[str, Any] = {
            "step": notification.step,
            "channel": notification.channel,
            "target": notification.target_label,
            "subject": notification.subject,
            "delivered": error is None,
        }
        if notification.audience == "customer":
            details["audience"] = "customer"
            details["notice"] = notification.payload.get("event", "")
        if error is None:
            details["key"] = notification.key  # only delivered ones count as sent
        else:
            details["error"] = error
        return [NewEvent(at_ms=at_ms, actor="system", kind="notification", details=details)]

    async def _visible(self, who: Principal, ticket_id: int) -> Ticket:
        ticket = await self._db.call(self._store.get_ticket, ticket_id)
        if ticket is None or not who.can_see(ticket.customer):
            raise NotFound(f"no ticket {ticket_id}; `aftercare tickets` lists yours")
        return ticket


def _transition(
    ticket: Ticket, request: TicketActionRequest, actor: str, now: int
) -> lifecycle.Transition:
    action = request.action
    if action == "acknowledge":
        return lifecycle.acknowledge(ticket, actor, now)
    if action == "comment":
        return lifecycle.comment(ticket, request.text, actor, now)
    if action == "assign":
        return lifecycle.assign(ticket, request.assignee or None, actor, now)
    if action == "resolve":
        return lifecycle.resolve(
            ticket,
            request.cause,
            request.actions,
            request.prevention,
            actor,
            now,
            impact=request.impact,
            losses=request.losses,
        )
    if action == "reopen":
        return lifecycle.reopen(ticket, request.text, actor, now)
    if action == "confirm":
        return lifecycle.confirm(ticket, actor, now)
    if action == "reject":
        return lifecycle.reject(ticket, request.text, actor, now)
    if action == "wait":
        return lifecycle.wait_on_customer(ticket, request.text, actor, now)
    if action == "resume":
        return lifecycle.resume(ticket, actor, now, request.text)
    if action == "contact":
        return lifecycle.contact(ticket, request.via, request.text, actor, now)
    raise InvalidRequest(f"unknown ticket action {action!r}")


def _notice(ticket_id: int, notification: Notification) -> Notice:
    """The outbox notice of a ticket's notification (one per ticket and key)."""
    return Notice(
        kind=NOTICE_KIND,
        dedup=f"ticket:{ticket_id}:{notification.key}",
        channel=notification.channel,
        target=notification.target,
        subject=notification.subject,
        payload=notification.payload,
        body=notification.body,
        target_label=notification.target_label,
        ticket_id=ticket_id,
        meta={
            "key": notification.key,
            "step": notification.step,
            "audience": notification.audience,
        },
    )


def _notification(entry: OutboxEntry) -> Notification:
    """The ticket notification stored in ``entry``, with its delivery id."""
    notice = entry.notice
    audience: Literal["internal", "customer"] = (
        "customer" if notice.meta.get("audience") == "customer" else "internal"
    )
    return Notification(
        key=str(notice.meta.get("key", notice.dedup)),
        step=int(notice.meta.get("step", -1)),
        channel="email" if notice.channel == "email" else "webhook",
        target=notice.target,
        subject=notice.subject,
        payload=notice.payload,
        target_label=notice.target_label,
        body=notice.body,
        audience=audience,
        delivery_id=entry.delivery_id,
    )


def _rule_ticket(alert: FaultAlert) -> NewTicket:
    host = alert.host
    return NewTicket(
        customer=host.customer,
        title=alert.summary[:200] or f"{alert.rule} on {host.hostname}",
        level=_level(str(alert.level)),
        source="heartbeat" if alert.heartbeat else "rule",
        description=alert.description,
        agent_id=host.agent_id,
        hostname=host.hostname,
        rule=alert.rule,
        dedup_key=alert.dedup_key,
        labels=dict(alert.labels),
    )


def _rule_details(alert: FaultAlert) -> dict[str, Any]:
    return {
        "value": alert.value,
        "summary": alert.summary,
        "playbook": alert.playbook,
        "labels": dict(alert.labels),
    }


def _states(states: Sequence[str]) -> frozenset[TicketState] | None:
    if not states:
        return None
    unknown = [s for s in states if s not in TICKET_STATES]
    if unknown:
        raise InvalidRequest(f"unknown state {unknown[0]!r}: use {', '.join(TICKET_STATES)}")
    return frozenset(s for s in TICKET_STATES if s in states)


def _level(level: str) -> Level:
    for known in LEVELS:
        if known == level:
            return known
    raise InvalidRequest(f"unknown fault level {level!r}: use {', '.join(LEVELS)}")


def _kind_and_urgency(kind: str, urgency: str) -> dict[str, Any]:
    """Checked ``kind`` and ``urgency`` of a new ticket (an inquiry defaults to general)."""
    chosen = next((k for k in KINDS if k == kind), None)
    if chosen is None:
        raise InvalidRequest(f"unknown kind of request {kind!r}: use {', '.join(KINDS)}")
    if chosen != "inquiry":
        if urgency:
            raise InvalidRequest("--urgency applies to inquiries only (--kind inquiry)")
        return {"kind": chosen, "urgency": ""}
    level = next((u for u in URGENCIES if u and u == (urgency or "general")), None)
    if level is None:
        raise InvalidRequest(f"unknown urgency {urgency!r}: use urgent, pressing or general")
    return {"kind": chosen, "urgency": level}


def _actor(who: Principal) -> str:
    return f"user:{who.name}"


def _with_article(word: str) -> str:
    """``word`` with its indefinite article: "an engineer", "a customer"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"
