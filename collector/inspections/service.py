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
- Runs are ``InspectionRunner``'s (runner.py): every host in scope in parallel, each
  ending with an outcome, never silently skipped. A run interrupted by a restart is
  picked up again by the next tick.
- ``analyse`` and ``render`` are injected: the collector passes
  ``collector.inspections.analysis.analyse`` and ``collector.inspections.render.render``;
  tests pass simple fakes. ``history`` gives a host's metric history (the collector passes
  ``HostHistory(db).history``; the default, ``no_history``, is empty).
- The published report is canonical JSON whose sha256 the signature binds; the
  store refuses to change it afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from collector.auth import Principal
from collector.errors import (
    CollectorError,
    Conflict,
    FailedPrecondition,
    InvalidRequest,
    PermissionDenied,
)
from collector.inspections import lifecycle, notify, schedule
from collector.inspections.config import InspectionsConfig
from collector.inspections.errors import InspectionNotFound, InspectionStateError, PlanNotFound
from collector.inspections.model import (
    ACTIVE_STATES,
    LISTABLE_STATES,
    NOT_STARTED,
    REPORT_LANGUAGES,
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
from collector.inspections.rendered import Render, RenderedReports
from collector.inspections.runner import (
    Analyse,
    History,
    InspectionRunner,
    hosts_in_scope,
    no_history,
    save_transition,
)
from collector.inspections.selector import check_selector
from collector.outbox import Notice, Outbox, OutboxEntry, Sender
from collector.runs.service import RunService
from collector.store.writer import StoreThread
from collector.tickets.escalation import Channel, Recipient
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
]

REPORT_FORMATS = ("html", "pdf", "md", "json")
PRERENDERED_FORMATS = (
    "pdf",
    "html",
)  # made at publication and sign-off, in the customer's language
DAY_MS = 86_400_000
RETRY_ANNOUNCE_MS = 60_000
NOTICE_KIND = "inspection"  # the outbox kind of inspection notices
_SIGNOFF_KEYS = ("name", "title", "comment", "at_ms", "report_sha256", "decision", "reason")


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
        rendered_dir: Path | None = None,
        link_base: str = "",
        outbox: Outbox | None = None,
    ) -> None:
        """``outbox``: the collector's (the sender of inspection notices is registered
        here); default: one of this service's own."""
        self._db = db
        self._link_base = link_base  # portal address for customer notices (else CLI commands)
        self._store = db.store
        self._runs = runs
        self.config = config
        self._deliver = deliver
        self._metrics = metrics
        self._clock_ms = clock_ms
        self.rendered = RenderedReports(rendered_dir, render)
        self._prerendering: set[asyncio.Task[None]] = set()
        self.runner = InspectionRunner(db, runs, tickets, config, clock_ms, analyse, history)
        self._announce_failed: dict[int, int] = {}  # inspection id -> last failed attempt
        self._outbox = outbox or Outbox(db, f"inspections:{secrets.token_hex(4)}")
        self._outbox.register(NOTICE_KIND, Sender(self._deliver_entry))

    # -- plans ----------------------------------------------------------------------------

    async def create_plan(self, who: Principal, request: PlanRequest) -> Plan:
        """A new schedule for a customer (engineers and admins); audited."""
        _require_staff(who, "plan inspections")
        every = schedule.parse_every(request.every)
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
        self._prerender(signed)
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
        return await self.runner.start(inspection, _actor(who))

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
        self._prerender(published)
        self._in_background(self._tell_published(published))
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
        document = await self._shown_document(inspection)
        try:
            content = await self.rendered.get(inspection.report_sha256, document, fmt, language)
            return content, inspection.report_sha256
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc

    async def _shown_document(self, inspection: Inspection) -> dict[str, Any]:
        """The published report with the sign-off block as it stands."""
        stored = await self._db.call(self._store.inspection_report, inspection.id)
        if stored is None:
            raise InspectionStateError(
                inspection.id,
                inspection.state,
                "report",
                lifecycle.POSSIBLE[inspection.state],
                "the report is not published yet",
            )
        document: dict[str, Any] = json.loads(stored)
        if inspection.signoff is not None:
            document["signoff"] = {k: inspection.signoff.get(k, "") for k in _SIGNOFF_KEYS}
        return document

    def _prerender(self, inspection: Inspection) -> None:
        """Render the report's HTML and PDF in the customer's language in the background,
        so the customer's requests find them made."""
        self._in_background(self._prerender_now(inspection))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._prerendering.add(task)
        task.add_done_callback(self._prerendering.discard)

    async def _tell_published(self, inspection: Inspection) -> None:
        """Tell the customer's announce recipients the report waits for sign-off (with the
        portal link); the deliveries are audited ("inspection.report_notice")."""
        recipients = self.config.announce_to(inspection.customer)
        if not recipients:
            return
        language = await self._notice_language(inspection.customer)
        subject, payload, text = notify.report_published(inspection, self._link_base, language)
        message = (subject, payload, text)
        results = await self._send_all(recipients, message, _dedup(inspection, "published"))
        await self._db.call(
            self._store.append_audit,
            "system",
            "inspection.report_notice",
            f"inspection:{inspection.id}",
            {"customer": inspection.customer, "deliveries": results},
            self._clock_ms(),
        )

    async def _notice_language(self, customer: str) -> str:
        """The customer's language for notices ("" when unset: the bilingual text)."""
        setting: str | None = await self._db.call(self._store.customer_language, customer)
        return setting or ""

    async def _prerender_now(self, inspection: Inspection) -> None:
        try:
            preferred: str | None = await self._db.call(
                self._store.customer_language, inspection.customer
            )
            document = await self._shown_document(inspection)
            for fmt in PRERENDERED_FORMATS:
                await self.rendered.get(
                    inspection.report_sha256, document, fmt, preferred or "zh-CN"
                )
        except Exception:  # a request renders it later; nothing is lost
            log.exception("inspection %d: rendering the report ahead failed", inspection.id)

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
        """Until every run being waited for and every rendering ahead has finished
        (tests, shutdown)."""
        await self.runner.wait_idle()
        while self._prerendering:
            await asyncio.gather(*self._prerendering, return_exceptions=True)

    async def stop(self) -> None:
        """Stop waiting for runs (the next start resumes them) and stop rendering ahead
        (a request renders what is missing)."""
        await self.runner.stop()
        for task in list(self._prerendering):
            task.cancel()
        await asyncio.gather(*self._prerendering, return_exceptions=True)

    async def _tick_one(self, inspection: Inspection, now_ms: int) -> None:
        state = inspection.state
        if state == "planned":
            if now_ms >= schedule.announce_at_ms(inspection.scheduled_ms, inspection.notice_ms):
                await self._announce(inspection, now_ms)
        elif state == "consented" and inspection.scheduled_ms <= now_ms:
            await self.runner.start(inspection, "system")
        elif state == "running" and not self.runner.is_waiting(inspection.id):
            self.runner.resume(inspection.id)  # interrupted by a restart
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
        agents = await hosts_in_scope(self._db, inspection.customer, inspection.hosts)
        subject, payload, text = notify.application(
            inspection,
            [a.hostname for a in agents],
            self._checklist(),
            self._link_base,
            await self._notice_language(inspection.customer),
        )
        recipients = self.config.announce_to(inspection.customer)
        message = (subject, payload, text)
        results = await self._send_all(recipients, message, _dedup(inspection, "application"))
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
        message = notify.late_report(inspection)
        results = await self._send_all(
            self.config.late_report, message, _dedup(inspection, "late_report")
        )
        await self._save(lifecycle.report_late(inspection, now_ms, {"deliveries": results}))
        self._metrics.inspection_report_late(inspection.customer)

    async def _send_all(
        self,
        recipients: Iterable[Recipient],
        message: tuple[str, Mapping[str, Any], str],
        dedup: str,
    ) -> list[dict[str, Any]]:
        """Send ``message`` (subject, payload, text) to each recipient through the outbox
        (stored once per ``dedup`` and recipient: a repeat after a restart or a new
        leader sends nothing twice; a failed one is retried by the outbox too)."""
        subject, payload, text = message
        results = []
        now_ms = self._clock_ms()
        for recipient in recipients:
            notice = Notice(
                kind=NOTICE_KIND,
                dedup=f"{dedup}:{recipient.channel}:{recipient.label}",
                channel=recipient.channel,
                target=recipient.target,
                subject=subject,
                payload=payload,
                body=text,
                target_label=recipient.label,
            )
            entry: dict[str, Any] = {"channel": recipient.channel, "target": recipient.label}
            error = await self._outbox.send_now(notice, now_ms)
            if error is None:
                entry["delivered"] = True
            else:  # delivery errors are recorded, never fatal
                entry.update(delivered=False, error=error)
            results.append(entry)
        return results

    def _deliver_entry(self, entry: OutboxEntry) -> None:
        """Send one stored inspection notice (on a thread)."""
        notice = entry.notice
        channel: Channel = "email" if notice.channel == "email" else "webhook"
        recipient = Recipient(channel, notice.target, delivery_id=entry.delivery_id)
        self._deliver(recipient, notice.subject, notice.payload, notice.body)

    def _checklist(self) -> list[str]:
        playbook = (self._runs.catalogue.playbooks if self._runs.catalogue else {}).get(
            self.config.playbook
        )
        return [step.name for step in playbook.steps] if playbook is not None else []

    # -- helpers --------------------------------------------------------------------------

    async def _scope_or_refuse(self, customer: str, selector: str) -> None:
        if not customer:
            raise InvalidRequest("name the customer (--customer)")
        if not await hosts_in_scope(self._db, customer, selector):
            what = f"matching --hosts {selector!r}" if selector else "enrolled"
            raise InvalidRequest(
                f"customer {customer!r} has no hosts {what}; check `aftercare agents`"
            )

    async def _plan_inspections(self, plan_id: int, states: Iterable[str]) -> list[Inspection]:
        return await self._db.call(
            self._store.list_inspections, None, frozenset(states), 10_000, plan_id
        )

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
        return await save_transition(self._db, self._clock_ms(), transition, report_json)

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


def _dedup(inspection: Inspection, event: str) -> str:
    """The outbox name of ``event``'s notices for ``inspection`` at its current version
    (a retry keeps the name; a re-announcement after a change gets a new one)."""
    return f"inspection:{inspection.id}:{event}:v{inspection.version}"
