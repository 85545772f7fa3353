"""The inspection service: plans in, signed inspection reports out.

Glues the pure parts (schedule, lifecycle, gather) to the store, the playbook runs,
the ticket service and the notifiers. Contracts:

- Engineers and admins plan, reschedule, run and publish; customer users of the
  inspection's customer consent, decline, sign and reject. Another customer's
  inspection or plan is "not found"; a customer asking to plan or run is refused.
- ``tick(now)`` (every evaluation interval, on a fake clock in tests) creates each
  plan's occurrences, announces them ``notice`` before their date, starts the run of
  every consented inspection whose date has come, and escalates (once, recorded)
  reports past their due date. An unconsented inspection is never run: it waits
  and shows overdue.
- A run starts the inspection playbook on every host in scope in parallel and waits
  for every result up to the run timeout; each host ends with an outcome
  (collected, offline, refused, failed, timed_out), never silently skipped. A run
  interrupted by a restart is picked up again by the next tick from the recorded runs.
- ``analyse`` and ``render`` are injected: the collector passes
  ``collector.inspections.analysis.analyse`` and ``collector.inspections.render.render``;
  tests pass simple fakes. ``history`` gives a host's metric history (the default,
  ``no_history``, is empty until the history store is wired in).
- The published report is canonical JSON whose sha256 the signature binds; the
  store refuses to change it afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from collector.auth import Principal
from collector.errors import (
    CollectorError,
    Conflict,
    FailedPrecondition,
    InvalidRequest,
    PermissionDenied,
)
from collector.history.model import HistorySeries
from collector.inspections import gather, lifecycle, notify, schedule
from collector.inspections.config import InspectionsConfig
from collector.inspections.errors import InspectionNotFound, InspectionStateError, PlanNotFound
from collector.inspections.inputs import HostInput, HostOutcome, InspectionInput
from collector.inspections.model import (
    ACTIVE_STATES,
    LISTABLE_STATES,
    NOT_STARTED,
    PLAN_EVERY,
    REPORT_LANGUAGES,
    ChangeRecord,
    Every,
    HostResult,
    Inspection,
    InspectionEvent,
    NewInspection,
    NewInspectionEvent,
    Plan,
    PlanChange,
    is_overdue,
    status,
)
from collector.inspections.render import canonical_bytes
from collector.inspections.selector import check_selector, select_hosts
from collector.runs import RunService
from collector.store.base import FINISHED_RUN_STATES, AgentRecord, RunRecord
from collector.store.writer import StoreThread
from collector.tickets.escalation import Recipient
from collector.tickets.model import LEVELS, NewTicket
from collector.tickets.service import TicketService

log = logging.getLogger(__name__)

__all__ = [
    "Analyse",
    "History",
    "InspectionMetrics",
    "InspectionService",
    "InspectionView",
    "PlanRequest",
    "Render",
    "no_history",
]

Analyse = Callable[[InspectionInput], dict[str, Any]]
Render = Callable[[Mapping[str, Any], str, str], bytes]
History = Callable[[str, int, int], Mapping[str, Sequence[HistorySeries]]]

REPORT_FORMATS = ("html", "pdf", "md", "json")
DAY_MS = 86_400_000
POLL_SECONDS = 0.5
RETRY_ANNOUNCE_MS = 60_000
_OUTCOMES: Mapping[str, HostOutcome] = {
    "ok": "collected",
    "refused": "refused",
    "failed": "failed",
    "cancelled": "failed",
    "timed_out": "timed_out",
    "undeliverable": "offline",
}
_SIGNOFF_KEYS = ("name", "title", "comment", "at_ms", "report_sha256", "decision", "reason")


def no_history(
    agent_id: str, since_ms: int, until_ms: int
) -> Mapping[str, Sequence[HistorySeries]]:
    """The default metric history: none (until the history store is merged)."""
    return {}


class InspectionMetrics(Protocol):
    """Gauges and counters the service updates (collector.metrics provides them)."""

    def set_inspections(
        self, by_state: Mapping[tuple[str, str], int], overdue: Mapping[str, int]
    ) -> None: ...
    def inspection_report_late(self, customer: str) -> None: ...


@dataclass(frozen=True)
class PlanRequest:
    """``aftercare inspection plan`` arguments (times already parsed)."""

    customer: str
    every: str
    first_ms: int
    hosts: str = ""
    engineer: str = ""
    notice_ms: int = 7 * DAY_MS
    config_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class InspectionView:
    """An inspection with its shown status, and its timeline when asked for one."""

    inspection: Inspection
    status: str
    overdue: bool
    events: tuple[InspectionEvent, ...] = ()


class InspectionService:
    """All inspection operations; every store access goes through the single writer."""

    def __init__(
        self,
        db: StoreThread,
        runs: RunService,
        tickets: TicketService,
        config: InspectionsConfig,
        deliver: notify.Deliver,
        metrics: InspectionMetrics,
        clock_ms: Callable[[], int],
        analyse: Analyse,
        render: Render,
        history: History = no_history,
    ) -> None:
        self._db = db
        self._store = db.store
        self._runs = runs
        self._tickets = tickets
        self.config = config
        self._deliver = deliver
        self._metrics = metrics
        self._clock_ms = clock_ms
        self._analyse = analyse
        self._render = render
        self._history = history
        self._running: dict[int, asyncio.Task[None]] = {}
        self._announce_failed: dict[int, int] = {}  # inspection id -> last failed attempt

    # -- plans ----------------------------------------------------------------------------

    async def create_plan(self, who: Principal, request: PlanRequest) -> Plan:
        """A new schedule for a customer (engineers and admins); audited."""
        _require_staff(who, "plan inspections")
        every = _every(request.every)
        hosts = check_selector(request.hosts)
        await self._scope_or_refuse(request.customer, hosts)
        now = self._clock_ms()
        plan = Plan(
            id=0,
            customer=request.customer,
            every=every,
            first_ms=request.first_ms,
            hosts=hosts,
            engineer=request.engineer or who.name,
            notice_ms=request.notice_ms,
            config_files=_config_files(request.config_files),
            state="active",
            created_ms=now,
            created_by=who.name,
            updated_ms=now,
        )
        if plan.first_ms <= now:
            raise InvalidRequest("--first: the first date has passed; choose a future one")
        plan = await self._db.call(self._store.create_plan, plan)
        await self._audit(who, "inspection.plan_created", plan, _plan_details(plan))
        await self._materialise(plan, now)
        return plan

    async def modify_plan(self, who: Principal, plan_id: int, change: PlanChange) -> Plan:
        """Change an active plan; its not yet started inspections follow it (a new date
        needs the customer's consent again). Audited with the changes."""
        _require_staff(who, "change inspection plans")
        plan = await self._visible_plan(who, plan_id)
        if plan.state != "active":
            raise FailedPrecondition(f"inspection plan {plan_id} is cancelled; plan anew")
        hosts = check_selector(change.hosts) if change.hosts is not None else plan.hosts
        if change.hosts is not None:
            await self._scope_or_refuse(plan.customer, hosts)
        now = self._clock_ms()
        changed = replace(
            plan,
            every=change.every or plan.every,
            first_ms=plan.first_ms if change.first_ms is None else change.first_ms,
            hosts=hosts,
            engineer=change.engineer or plan.engineer,
            notice_ms=plan.notice_ms if change.notice_ms is None else change.notice_ms,
            config_files=plan.config_files
            if change.config_files is None
            else _config_files(change.config_files),
            updated_ms=now,
        )
        if changed == replace(plan, updated_ms=now):
            return plan
        saved = await self._db.call(self._store.update_plan, changed)
        details = {
            key: {"from": before, "to": after}
            for key, (before, after) in _differences(plan, saved).items()
        }
        await self._audit(who, "inspection.plan_changed", saved, details)
        await self._replan(saved, f"user:{who.name}", now)
        await self._materialise(saved, now)
        return saved

    async def cancel_plan(self, who: Principal, plan_id: int, reason: str) -> Plan:
        """Stop a plan: its not yet started inspections are cancelled. Audited."""
        _require_staff(who, "cancel inspection plans")
        plan = await self._visible_plan(who, plan_id)
        if plan.state == "cancelled":
            raise FailedPrecondition(f"inspection plan {plan_id} is already cancelled")
        now = self._clock_ms()
        saved = await self._db.call(
            self._store.update_plan, replace(plan, state="cancelled", updated_ms=now)
        )
        await self._audit(who, "inspection.plan_cancelled", saved, {"reason": reason})
        for inspection in await self._plan_inspections(plan.id, NOT_STARTED):
            transition = lifecycle.cancel(
                inspection, f"user:{who.name}", reason or "plan cancelled", now
            )
            await self._save(transition)
        return saved

    async def list_plans(self, who: Principal, customer: str | None) -> list[Plan]:
        """Plans ``who`` may see (customers: their own, read-only)."""
        return await self._db.call(self._store.list_plans, who.visible_customer(customer))

    # -- reading --------------------------------------------------------------------------

    async def list_inspections(
        self, who: Principal, customer: str | None, states: Sequence[str], limit: int = 500
    ) -> list[InspectionView]:
        """Inspections ``who`` may see, newest first; ``states`` may name the computed
        ``due`` and ``overdue`` too."""
        scope = who.visible_customer(customer)
        wanted = _listable(states)
        now = self._clock_ms()
        found = await self._db.call(self._store.list_inspections, scope, None, 10_000)
        views = [self._view(i, now) for i in found]
        if wanted:
            views = [
                v
                for v in views
                if v.status in wanted
                or v.inspection.state in wanted
                or ("overdue" in wanted and v.overdue)
            ]
        return views[:limit]

    async def get(self, who: Principal, inspection_id: int) -> InspectionView:
        """One inspection with its timeline; NotFound if absent or not visible."""
        inspection = await self._visible(who, inspection_id)
        events = await self._db.call(self._store.inspection_events, inspection_id)
        return replace(self._view(inspection, self._clock_ms()), events=tuple(events))

    # -- the customer ---------------------------------------------------------------------

    async def consent(self, who: Principal, inspection_id: int) -> Inspection:
        """The customer agrees to the inspection at its date."""
        inspection = await self._customer_action(who, inspection_id, "consent to")
        return await self._save(lifecycle.consent(inspection, _actor(who), self._clock_ms()))

    async def decline(
        self, who: Principal, inspection_id: int, reason: str, proposed_ms: int | None
    ) -> Inspection:
        """The customer declines, with a reason and optionally another date."""
        inspection = await self._customer_action(who, inspection_id, "decline")
        now = self._clock_ms()
        return await self._save(
            lifecycle.decline(inspection, _actor(who), reason, proposed_ms, now)
        )

    async def sign(
        self,
        who: Principal,
        inspection_id: int,
        name: str,
        title: str,
        comment: str,
        seen_sha256: str,
    ) -> Inspection:
        """Sign the published report whose sha256 the signer saw (mismatch: refused)."""
        inspection = await self._customer_action(who, inspection_id, "sign")
        now = self._clock_ms()
        signed = await self._save(
            lifecycle.sign(inspection, _actor(who), name, title, comment, seen_sha256, now)
        )
        await self._audit_inspection(who, "inspection.signed", signed, {"sha256": seen_sha256})
        return signed

    async def reject(self, who: Principal, inspection_id: int, reason: str) -> Inspection:
        """Reject the published report, with a reason."""
        inspection = await self._customer_action(who, inspection_id, "reject")
        rejected = await self._save(
            lifecycle.reject(inspection, _actor(who), reason, self._clock_ms())
        )
        await self._audit_inspection(who, "inspection.rejected", rejected, {"reason": reason})
        return rejected

    # -- engineers ------------------------------------------------------------------------

    async def reschedule(self, who: Principal, inspection_id: int, at_ms: int) -> Inspection:
        """Move the date (e.g. to the customer's proposal); consent is asked again."""
        _require_staff(who, "reschedule inspections")
        inspection = await self._visible(who, inspection_id)
        return await self._save(
            lifecycle.reschedule(inspection, _actor(who), at_ms, self._clock_ms())
        )

    async def run(self, who: Principal, inspection_id: int) -> Inspection:
        """Start the run now (only once the customer consented); it continues in the
        background. FailedPrecondition before consent."""
        _require_staff(who, "run inspections")
        inspection = await self._visible(who, inspection_id)
        return await self._start(inspection, _actor(who))

    async def publish(self, who: Principal, inspection_id: int, summary: str) -> Inspection:
        """Fix the report: the draft plus the summary, stored as canonical JSON with its
        sha256 (immutable afterwards)."""
        _require_staff(who, "publish inspection reports")
        inspection = await self._visible(who, inspection_id)
        now = self._clock_ms()
        document = dict(inspection.draft or {})
        document["summary"] = summary.strip()
        document["published"] = {"by": who.name, "at_ms": now}
        document["signoff"] = None
        data = canonical_bytes(document)
        sha256 = hashlib.sha256(data).hexdigest()
        transition = lifecycle.publish(inspection, _actor(who), summary, sha256, now)
        published = await self._save(transition, report_json=data.decode())
        await self._audit_inspection(who, "inspection.published", published, {"sha256": sha256})
        return published

    async def report(
        self, who: Principal, inspection_id: int, fmt: str, lang: str
    ) -> tuple[bytes, str]:
        """The published report rendered as ``fmt`` in ``lang`` ("" = the customer's
        preferred language, else zh-CN), and its sha256 (what a signature binds)."""
        if fmt not in REPORT_FORMATS:
            raise InvalidRequest(f"unknown report format {fmt!r}: use {', '.join(REPORT_FORMATS)}")
        inspection = await self._visible(who, inspection_id)
        preferred: str | None = await self._db.call(
            self._store.customer_language, inspection.customer
        )
        language = lang or preferred or "zh-CN"
        if language not in REPORT_LANGUAGES:
            raise InvalidRequest(f"unknown language {language!r}: use zh-CN or en")
        stored = await self._db.call(self._store.inspection_report, inspection_id)
        if stored is None:
            raise InspectionStateError(
                inspection.id,
                inspection.state,
                "report",
                lifecycle.POSSIBLE[inspection.state],
                "the report is not published yet",
            )
        document = json.loads(stored)
        if inspection.signoff is not None:
            document["signoff"] = {k: inspection.signoff.get(k, "") for k in _SIGNOFF_KEYS}
        try:
            # rendering (a PDF above all) is CPU work: off the event loop
            content = await asyncio.to_thread(self._render, document, fmt, language)
            return content, inspection.report_sha256
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc

    # -- admins ---------------------------------------------------------------------------

    async def set_language(self, who: Principal, customer: str, language: str) -> None:
        """Set the customer's preferred report language (admins)."""
        if who.role != "admin":
            raise PermissionDenied("only an admin can change a customer's settings")
        if language not in REPORT_LANGUAGES:
            raise InvalidRequest(f"unknown language {language!r}: use zh-CN or en")
        now = self._clock_ms()
        await self._db.call(self._store.set_customer_language, customer, language, who.name, now)
        await self._db.call(
            self._store.append_audit,
            f"user:{who.name}",
            "customer.language_set",
            customer,
            {"language": language},
            now,
        )

    async def language(self, who: Principal, customer: str) -> str:
        """The customer's preferred report language ("" when not set)."""
        scope = who.visible_customer(customer) or customer
        preferred: str | None = await self._db.call(self._store.customer_language, scope)
        return preferred or ""

    # -- the clock ------------------------------------------------------------------------

    async def tick(self, now_ms: int) -> None:
        """Create occurrences, announce, start due runs, resume interrupted ones,
        escalate late reports, and refresh the metrics."""
        for plan in await self._db.call(self._store.list_plans, None):
            if plan.state == "active":
                await self._materialise(plan, now_ms)
        active = await self._db.call(self._store.list_inspections, None, ACTIVE_STATES, 10_000)
        for inspection in active:
            try:
                await self._tick_one(inspection, now_ms)
            except Conflict:
                log.info("inspection %d changed during the tick; next tick", inspection.id)
            except CollectorError as exc:  # one inspection's problem must not stop the rest
                log.warning("inspection %d: %s; trying again next tick", inspection.id, exc)
        await self._refresh_metrics(now_ms)

    async def wait_idle(self) -> None:
        """Until every run started by this service has finished (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel the runs being waited for (the next start resumes them)."""
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _tick_one(self, inspection: Inspection, now_ms: int) -> None:
        state = inspection.state
        if state == "planned":
            if now_ms >= schedule.announce_at_ms(inspection.scheduled_ms, inspection.notice_ms):
                await self._announce(inspection, now_ms)
        elif state == "consented" and inspection.scheduled_ms <= now_ms:
            await self._start(inspection, "system")
        elif state == "running" and inspection.id not in self._running:
            self._spawn(inspection.id)  # interrupted by a restart: wait for its runs again
        elif state == "awaiting_report":
            due = inspection.report_due_ms
            if due is not None and due < now_ms and inspection.late_notified_ms is None:
                await self._report_late(inspection, now_ms)

    async def _materialise(self, plan: Plan, now_ms: int) -> None:
        existing = await self._db.call(self._store.plan_occurrences, plan.id)
        for index in schedule.due_occurrences(plan, existing, now_ms, self.config.calendar):
            new = NewInspection(
                plan_id=plan.id,
                customer=plan.customer,
                occurrence=index,
                scheduled_ms=schedule.occurrence_ms(
                    plan.first_ms, plan.every, index, self.config.calendar
                ),
                engineer=plan.engineer,
                hosts=plan.hosts,
                notice_ms=plan.notice_ms,
                config_files=plan.config_files,
            )
            event = NewInspectionEvent(now_ms, "system", "planned", {"plan_id": plan.id})
            try:
                await self._db.call(self._store.create_inspection, new, event)
            except Conflict:
                return  # another tick created it meanwhile

    async def _replan(self, plan: Plan, actor: str, now_ms: int) -> None:
        for inspection in await self._plan_inspections(plan.id, NOT_STARTED):
            when = schedule.occurrence_ms(
                plan.first_ms, plan.every, inspection.occurrence, self.config.calendar
            )
            transition = lifecycle.replan(
                inspection,
                actor,
                when,
                plan.engineer,
                plan.hosts,
                plan.notice_ms,
                plan.config_files,
                now_ms,
            )
            if transition is not None:
                await self._save(transition)

    # -- announcing and escalating --------------------------------------------------------

    async def _announce(self, inspection: Inspection, now_ms: int) -> None:
        failed_at = self._announce_failed.get(inspection.id)
        if failed_at is not None and now_ms - failed_at < RETRY_ANNOUNCE_MS:
            return
        agents = await self._scope(inspection.customer, inspection.hosts)
        subject, payload, text = notify.application(
            inspection, [a.hostname for a in agents], self._checklist()
        )
        recipients = self.config.announce_to(inspection.customer)
        results = await self._send_all(recipients, subject, payload, text)
        if recipients and not any(r["delivered"] for r in results):
            self._announce_failed[inspection.id] = now_ms
            log.warning("inspection %d: application not delivered; retrying", inspection.id)
            return
        self._announce_failed.pop(inspection.id, None)
        details = {"deliveries": results, "hosts": payload["inspection"]["hosts"]}
        if not recipients:
            details["note"] = f"no recipients configured under announce.{inspection.customer}"
        await self._save(lifecycle.announce(inspection, now_ms, details))

    async def _report_late(self, inspection: Inspection, now_ms: int) -> None:
        subject, payload, text = notify.late_report(inspection)
        results = await self._send_all(self.config.late_report, subject, payload, text)
        await self._save(lifecycle.report_late(inspection, now_ms, {"deliveries": results}))
        self._metrics.inspection_report_late(inspection.customer)

    async def _send_all(
        self, recipients: Iterable[Recipient], subject: str, payload: Mapping[str, Any], text: str
    ) -> list[dict[str, Any]]:
        results = []
        for recipient in recipients:
            entry: dict[str, Any] = {"channel": recipient.channel, "target": recipient.label}
            try:
                await asyncio.to_thread(self._deliver, recipient, subject, payload, text)
            except Exception as exc:  # delivery errors are recorded, never fatal
                entry.update(delivered=False, error=str(exc))
            else:
                entry["delivered"] = True
            results.append(entry)
        return results

    def _checklist(self) -> list[str]:
        playbook = (self._runs.catalogue.playbooks if self._runs.catalogue else {}).get(
            self.config.playbook
        )
        return [step.name for step in playbook.steps] if playbook is not None else []

    # -- running --------------------------------------------------------------------------

    async def _start(self, inspection: Inspection, actor: str) -> Inspection:
        if inspection.state == "running":
            raise InspectionStateError(inspection.id, "running", "run", (), "it is running already")
        agents = await self._scope(inspection.customer, inspection.hosts)
        now = self._clock_ms()
        period_start = await self._period_start(inspection)
        pending = [HostResult(a.agent_id, a.hostname, "pending") for a in agents]
        running = await self._save(
            lifecycle.start_run(inspection, actor, pending, period_start, now)
        )
        params = self._params(running, now)
        started = await asyncio.gather(*(self._start_host(actor, a, params) for a in agents))
        running = await self._update_hosts(running.id, list(started))
        self._spawn(running.id)
        return running

    async def _start_host(
        self, actor: str, agent: AgentRecord, params: Mapping[str, str]
    ) -> HostResult:
        try:
            run = await self._runs.start(actor, agent, self.config.playbook, params, None)
        except CollectorError as exc:
            return HostResult(agent.agent_id, agent.hostname, "failed", str(exc))
        return _host_result(agent.agent_id, agent.hostname, run)

    def _params(self, inspection: Inspection, now_ms: int) -> dict[str, str]:
        days = -(-(now_ms - (inspection.period_start_ms or now_ms)) // DAY_MS)
        params = {"since": f"{min(max(days, 1), 999)}d"}
        catalogue = self._runs.catalogue
        playbook = catalogue.playbooks.get(self.config.playbook) if catalogue else None
        if playbook is not None and any(p.name == "config_files" for p in playbook.parameters):
            params["config_files"] = ",".join(inspection.config_files)
        return params

    def _spawn(self, inspection_id: int) -> None:
        task = asyncio.create_task(self._complete(inspection_id))
        self._running[inspection_id] = task
        task.add_done_callback(lambda _: self._running.pop(inspection_id, None))

    async def _complete(self, inspection_id: int) -> None:
        """Wait for the host runs, then gather, analyse and store the draft."""
        try:
            inspection = await self._wait_for_hosts(inspection_id)
            if inspection.state == "running":
                await self._analyse_and_store(inspection)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("inspection %d: completing the run failed", inspection_id)

    async def _wait_for_hosts(self, inspection_id: int) -> Inspection:
        inspection = await self._get(inspection_id)
        deadline = (inspection.run_started_ms or self._clock_ms()) + self.config.run_timeout_ms
        while True:
            results = []
            for host in inspection.host_results:
                results.append(await self._host_now(host, deadline))
            if tuple(results) != inspection.host_results:
                inspection = await self._update_hosts(inspection.id, results)
            if all(h.outcome != "pending" for h in inspection.host_results):
                return inspection
            await asyncio.sleep(POLL_SECONDS)
            inspection = await self._get(inspection_id)

    async def _host_now(self, host: HostResult, deadline_ms: int) -> HostResult:
        if host.outcome != "pending" or host.run_id is None:
            return host
        run = await self._db.call(self._store.get_run, host.run_id)
        if run is None:
            return replace(host, outcome="failed", detail="the run record is missing")
        result = _host_result(host.agent_id, host.hostname, run)
        if result.outcome == "pending" and self._clock_ms() >= deadline_ms:
            waited = self.config.run_timeout_ms // 60_000
            return replace(
                result,
                outcome="timed_out",
                detail=f"no result within {waited} min (run {run.run_id} is {run.state})",
            )
        return result

    async def _update_hosts(self, inspection_id: int, results: Sequence[HostResult]) -> Inspection:
        current = await self._get(inspection_id)
        now = self._clock_ms()
        before = {h.agent_id: h for h in current.host_results}
        events = [
            NewInspectionEvent(
                now,
                "system",
                "host_result",
                {
                    "host": h.hostname,
                    "agent_id": h.agent_id,
                    "outcome": h.outcome,
                    "detail": h.detail,
                    "run_id": h.run_id,
                },
            )
            for h in results
            if h.outcome != "pending" and before.get(h.agent_id) != h
        ]
        changed = replace(current, host_results=tuple(results), updated_ms=now)
        return await self._db.call(self._store.update_inspection, changed, events)

    async def _analyse_and_store(self, inspection: Inspection) -> None:
        now = self._clock_ms()
        data = await self._gather(inspection, now)
        try:
            document = await asyncio.to_thread(self._analyse, data)  # CPU work: a thread
        except Exception as exc:
            log.exception("inspection %d: analysis failed", inspection.id)
            await self._save(
                lifecycle.analysis_failed(inspection, f"{type(exc).__name__}: {exc}", now)
            )
            return
        ticket_ids = await self._open_fault_tickets(inspection, document, now)
        await self._record_drift(inspection, document, now)
        due = schedule.report_due_ms(now, self.config.calendar)
        await self._save(lifecycle.analysed(inspection, document, ticket_ids, due, now))

    async def _gather(self, inspection: Inspection, now_ms: int) -> InspectionInput:
        start = inspection.period_start_ms or now_ms
        pairs = []
        for ticket in await self._db.call(
            self._store.list_tickets, inspection.customer, None, None, 10_000
        ):
            if gather.in_period(ticket, start, now_ms):
                pairs.append((ticket, await self._db.call(self._store.ticket_events, ticket.id)))
        hosts = [
            await self._host_input(inspection, h, start, now_ms) for h in inspection.host_results
        ]
        return InspectionInput(
            inspection_id=str(inspection.id),
            customer=inspection.customer,
            customer_name=inspection.customer,
            period_start_ms=start,
            period_end_ms=now_ms,
            engineer=inspection.engineer,
            hosts=hosts,
            tickets=gather.ticket_summaries(pairs, self._tickets.config.sla, start, now_ms),
            alerts=gather.alert_summaries(pairs, start, now_ms),
            config_files=inspection.config_files,
        )

    async def _host_input(
        self, inspection: Inspection, host: HostResult, start: int, end: int
    ) -> HostInput:
        agent = await self._db.call(self._store.get_agent, host.agent_id)
        gaps = gather.gap_summaries(
            await self._db.call(self._store.gaps, host.agent_id), start, end
        )
        previous = await self._previous_run(inspection, host.agent_id)
        outcome: HostOutcome = "failed" if host.outcome == "pending" else host.outcome
        run = await self._db.call(self._store.get_run, host.run_id) if host.run_id else None
        return HostInput(
            agent_id=host.agent_id,
            hostname=host.hostname,
            outcome=outcome,
            detail=host.detail,
            run_id=host.run_id,
            playbook_version=run.version if run is not None else "",
            step_outputs=_texts(self._runs.step_outputs(host.run_id))
            if host.run_id and outcome == "collected"
            else {},
            previous_step_outputs=_texts(self._runs.step_outputs(previous[1]))
            if previous
            else None,
            previous_inspection_id=str(previous[0]) if previous else None,
            history=self._history(host.agent_id, start, end),
            connected_ms=gather.connected_ms(
                gaps, start, end, agent.last_seen_ms if agent is not None else None
            ),
            gaps=gaps,
        )

    async def _previous_run(self, inspection: Inspection, agent_id: str) -> tuple[int, str] | None:
        """The newest earlier inspection that collected this host: (id, run id)."""
        earlier = await self._db.call(
            self._store.list_inspections, inspection.customer, None, 10_000
        )
        for other in earlier:  # newest first
            if other.id == inspection.id or other.state in NOT_STARTED:
                continue
            if (other.run_started_ms or 0) >= (inspection.run_started_ms or 0):
                continue
            for host in other.host_results:
                if host.agent_id == agent_id and host.outcome == "collected" and host.run_id:
                    return other.id, host.run_id
        return None

    async def _period_start(self, inspection: Inspection) -> int:
        """The previous inspection's run, else the plan's creation."""
        others = await self._db.call(
            self._store.list_inspections, inspection.customer, None, 10_000
        )
        starts = [
            o.run_started_ms
            for o in others
            if o.id != inspection.id and o.run_started_ms is not None and o.state != "failed"
        ]
        if starts:
            return max(starts)
        plan = await self._db.call(self._store.get_plan, inspection.plan_id)
        return plan.created_ms if plan is not None else inspection.created_ms

    async def _open_fault_tickets(
        self, inspection: Inspection, document: Mapping[str, Any], now_ms: int
    ) -> list[int]:
        """A ticket per fault finding (dedup "inspection:AGENT:KEY"), linked both ways."""
        ids: list[int] = []
        for host in document.get("hosts", []):
            for finding in host.get("findings", []):
                if finding.get("state") != "fault":
                    continue
                new = _fault_ticket(inspection, host, finding)
                details = {
                    "summary": new.title,
                    "inspection_id": inspection.id,
                    "finding": finding.get("key", ""),
                    "evidence": list(finding.get("evidence", []))[:20],
                }
                actor = f"inspection:{inspection.id}"
                ticket = await self._tickets.fault_fired(new, details, actor, now_ms)
                ids.append(ticket.id)
        return ids

    async def _record_drift(
        self, inspection: Inspection, document: Mapping[str, Any], now_ms: int
    ) -> None:
        records = [
            ChangeRecord(
                agent_id=str(host.get("agent_id", "")),
                at_ms=now_ms,
                source="inspection",
                kind=str(change.get("kind", "")),
                item=str(change.get("item", "")),
                before=_optional_text(change.get("before")),
                after=_optional_text(change.get("after")),
                inspection_id=inspection.id,
            )
            for host in document.get("hosts", [])
            for change in host.get("drift", [])
        ]
        if records:
            await self._db.call(self._store.add_change_records, records)

    # -- helpers --------------------------------------------------------------------------

    async def _scope(self, customer: str, selector: str) -> list[AgentRecord]:
        agents = await self._db.call(self._store.list_agents, customer)
        return select_hosts(agents, customer, selector)

    async def _scope_or_refuse(self, customer: str, selector: str) -> None:
        if not customer:
            raise InvalidRequest("name the customer (--customer)")
        if not await self._scope(customer, selector):
            what = f"matching --hosts {selector!r}" if selector else "enrolled"
            raise InvalidRequest(
                f"customer {customer!r} has no hosts {what}; check `aftercare agents`"
            )

    async def _plan_inspections(self, plan_id: int, states: Iterable[str]) -> list[Inspection]:
        return await self._db.call(
            self._store.list_inspections, None, frozenset(states), 10_000, plan_id
        )

    async def _get(self, inspection_id: int) -> Inspection:
        inspection = await self._db.call(self._store.get_inspection, inspection_id)
        if inspection is None:
            raise InspectionNotFound(inspection_id)
        return inspection

    async def _visible(self, who: Principal, inspection_id: int) -> Inspection:
        inspection = await self._db.call(self._store.get_inspection, inspection_id)
        if inspection is None or not who.can_see(inspection.customer):
            raise InspectionNotFound(inspection_id)
        return inspection

    async def _visible_plan(self, who: Principal, plan_id: int) -> Plan:
        plan = await self._db.call(self._store.get_plan, plan_id)
        if plan is None or not who.can_see(plan.customer):
            raise PlanNotFound(plan_id)
        return plan

    async def _customer_action(self, who: Principal, inspection_id: int, verb: str) -> Inspection:
        inspection = await self._visible(who, inspection_id)
        if who.role != "customer":
            raise PermissionDenied(
                f"only a customer user of {inspection.customer!r} can {verb} an inspection"
            )
        return inspection

    async def _save(
        self, transition: lifecycle.Transition, report_json: str | None = None
    ) -> Inspection:
        changed = replace(transition.inspection, updated_ms=self._clock_ms())
        return await self._db.call(
            self._store.update_inspection, changed, transition.events, report_json
        )

    def _view(self, inspection: Inspection, now_ms: int) -> InspectionView:
        return InspectionView(
            inspection, status(inspection, now_ms), is_overdue(inspection, now_ms)
        )

    async def _refresh_metrics(self, now_ms: int) -> None:
        every = await self._db.call(self._store.list_inspections, None, None, 100_000)
        by_state: Counter[tuple[str, str]] = Counter((i.customer, str(i.state)) for i in every)
        overdue = Counter(i.customer for i in every if is_overdue(i, now_ms))
        for customer in {i.customer for i in every}:
            overdue.setdefault(customer, 0)
        self._metrics.set_inspections(by_state, overdue)

    async def _audit(
        self, who: Principal, action: str, plan: Plan, details: Mapping[str, Any]
    ) -> None:
        await self._db.call(
            self._store.append_audit,
            f"user:{who.name}",
            action,
            f"plan:{plan.id}",
            {"customer": plan.customer, **details},
            self._clock_ms(),
        )

    async def _audit_inspection(
        self, who: Principal, action: str, inspection: Inspection, details: Mapping[str, Any]
    ) -> None:
        await self._db.call(
            self._store.append_audit,
            f"user:{who.name}",
            action,
            f"inspection:{inspection.id}",
            {"customer": inspection.customer, **details},
            self._clock_ms(),
        )


# -- pure helpers -------------------------------------------------------------------------


def _require_staff(who: Principal, what: str) -> None:
    if who.role not in ("engineer", "admin"):
        raise PermissionDenied(f"only engineers and admins can {what}")


def _actor(who: Principal) -> str:
    return f"user:{who.name}"


def _every(value: str) -> Every:
    for every in PLAN_EVERY:
        if every == value:
            return every
    raise InvalidRequest(f"--every {value!r}: use quarter or month")


def _config_files(paths: Sequence[str]) -> tuple[str, ...]:
    checked = []
    for path in paths:
        if not path.startswith("/") or "," in path or len(path) > 4096:
            raise InvalidRequest(f"--config-file {path!r}: give an absolute path without commas")
        checked.append(path)
    if len(checked) > 100:
        raise InvalidRequest("at most 100 --config-file paths")
    return tuple(checked)


def _listable(states: Sequence[str]) -> frozenset[str]:
    unknown = [s for s in states if s not in LISTABLE_STATES]
    if unknown:
        raise InvalidRequest(f"unknown state {unknown[0]!r}: use {', '.join(LISTABLE_STATES)}")
    return frozenset(states)


def _plan_details(plan: Plan) -> dict[str, Any]:
    return {
        "every": plan.every,
        "first_ms": plan.first_ms,
        "hosts": plan.hosts,
        "engineer": plan.engineer,
        "notice_ms": plan.notice_ms,
        "config_files": list(plan.config_files),
    }


def _differences(before: Plan, after: Plan) -> dict[str, tuple[Any, Any]]:
    old, new = _plan_details(before), _plan_details(after)
    return {key: (old[key], new[key]) for key in old if old[key] != new[key]}


def _host_result(agent_id: str, hostname: str, run: RunRecord) -> HostResult:
    if run.state not in FINISHED_RUN_STATES:
        return HostResult(agent_id, hostname, "pending", "", run.run_id)
    outcome = _OUTCOMES.get(run.state, "failed")
    detail = "" if outcome == "collected" else run.message or run.state
    return HostResult(agent_id, hostname, outcome, detail, run.run_id)


def _texts(outputs: Mapping[str, bytes]) -> dict[str, str]:
    return {step: data.decode("utf-8", "replace") for step, data in outputs.items()}


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _fault_ticket(
    inspection: Inspection, host: Mapping[str, Any], finding: Mapping[str, Any]
) -> NewTicket:
    level = str(finding.get("level") or "3")
    title = finding.get("title") or {}
    text = title.get("en") or title.get("zh-CN") or finding.get("key", "finding")
    hostname = str(host.get("hostname", ""))
    agent_id = str(host.get("agent_id", ""))
    return NewTicket(
        customer=inspection.customer,
        title=f"{text} ({hostname})"[:200],
        level=next((lvl for lvl in LEVELS if lvl == level), "3"),
        source="inspection",
        description="\n".join(str(e) for e in finding.get("evidence", []))[:4000],
        agent_id=agent_id or None,
        hostname=hostname,
        dedup_key=f"inspection:{agent_id}:{finding.get('key', '')}",
        labels={"inspection": str(inspection.id), "finding": str(finding.get("key", ""))},
    )
