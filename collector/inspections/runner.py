"""Running an inspection: the playbook on every host, then gathering and analysis.

``InspectionRunner.start`` records the run (the state machine refuses it without the
customer's consent), starts the inspection playbook on every host in scope in
parallel (``RunService.start``), and waits in the background, polling the recorded
runs, for every host's result up to ``run_timeout``. Each host ends with an outcome
(collected, offline, refused, failed, timed_out), never silently skipped. It then
gathers the period's data (``gather``), calls the injected ``analyse``, opens a
ticket per fault finding (linked both ways), writes drift to the hosts' change
records, and leaves the inspection awaiting its report (due in 3 working days).
A run interrupted by a restart is waited for again with ``resume``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from collector.errors import CollectorError
from collector.history.model import HistorySeries
from collector.inspections import gather, lifecycle, schedule
from collector.inspections.config import InspectionsConfig
from collector.inspections.errors import InspectionNotFound, InspectionStateError
from collector.inspections.inputs import HostInput, HostOutcome, InspectionInput
from collector.inspections.model import (
    NOT_STARTED,
    ChangeRecord,
    HostResult,
    Inspection,
    NewInspectionEvent,
)
from collector.inspections.selector import select_hosts
from collector.runs.model import FINISHED_RUN_STATES, RunRecord
from collector.runs.service import RunService
from collector.store.base import AgentRecord
from collector.store.writer import StoreThread
from collector.tickets.model import LEVELS, NewTicket
from collector.tickets.service import TicketService

log = logging.getLogger(__name__)

__all__ = [
    "Analyse",
    "History",
    "InspectionRunner",
    "hosts_in_scope",
    "no_history",
    "save_transition",
]

Analyse = Callable[[InspectionInput], dict[str, Any]]
History = Callable[[str, int, int], Awaitable[Mapping[str, Sequence[HistorySeries]]]]

DAY_MS = 86_400_000
POLL_SECONDS = 0.5
_OUTCOMES: Mapping[str, HostOutcome] = {
    "ok": "collected",
    "refused": "refused",
    "failed": "failed",
    "cancelled": "failed",
    "timed_out": "timed_out",
    "undeliverable": "offline",
}


async def no_history(
    agent_id: str, since_ms: int, until_ms: int
) -> Mapping[str, Sequence[HistorySeries]]:
    """No metric history (tests that do not exercise capacity trends)."""
    return {}


async def hosts_in_scope(db: StoreThread, customer: str, selector: str) -> list[AgentRecord]:
    """The customer's unrevoked hosts the selector matches."""
    agents = await db.call(db.store.list_agents, customer)
    return select_hosts(agents, customer, selector)


async def save_transition(
    db: StoreThread, now_ms: int, transition: lifecycle.Transition, report_json: str | None = None
) -> Inspection:
    """Store a transition's inspection and events (optimistic: Conflict if it changed)."""
    changed = replace(transition.inspection, updated_ms=now_ms)
    return await db.call(db.store.update_inspection, changed, transition.events, report_json)


class InspectionRunner:
    """Runs inspections and turns their results into a draft report."""

    def __init__(
        self,
        db: StoreThread,
        runs: RunService,
        tickets: TicketService,
        config: InspectionsConfig,
        clock_ms: Callable[[], int],
        analyse: Analyse,
        history: History = no_history,
    ) -> None:
        self._db = db
        self._store = db.store
        self._runs = runs
        self._tickets = tickets
        self.config = config
        self._clock_ms = clock_ms
        self.analyse = analyse
        self._history = history
        self._running: dict[int, asyncio.Task[None]] = {}
        self._starting: set[int] = set()

    async def start(self, inspection: Inspection, actor: str) -> Inspection:
        """Start the inspection playbook on every host in scope (FailedPrecondition
        unless consented, or failed and run again); the rest happens in the background."""
        if inspection.state == "running":
            raise InspectionStateError(inspection.id, "running", "run", (), "it is running already")
        agents = await hosts_in_scope(self._db, inspection.customer, inspection.hosts)
        now = self._clock_ms()
        period_start = await self._period_start(inspection)
        pending = [HostResult(a.agent_id, a.hostname, "pending") for a in agents]
        self._starting.add(inspection.id)  # a concurrent tick must not "resume" it
        try:
            running = await save_transition(
                self._db,
                self._clock_ms(),
                lifecycle.start_run(inspection, actor, pending, period_start, now),
            )
            params = self._params(running, now)
            started = await asyncio.gather(*(self._start_host(actor, a, params) for a in agents))
            running = await self._update_hosts(running.id, list(started))
            self._spawn(running.id)
        finally:
            self._starting.discard(inspection.id)
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

    def resume(self, inspection_id: int) -> None:
        """Wait (again) for a running inspection's recorded runs: after a restart."""
        self._spawn(inspection_id)

    def is_waiting(self, inspection_id: int) -> bool:
        """Whether this process is waiting for the inspection's runs."""
        return inspection_id in self._running or inspection_id in self._starting

    async def wait_idle(self) -> None:
        """Until every run being waited for has finished (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def stop(self) -> None:
        """Stop waiting (the next start resumes the runs from the store)."""
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

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
        if host.outcome != "pending":
            return host
        if host.run_id is None:  # the collector stopped between recording and starting it
            return replace(host, outcome="failed", detail="the run was never started; run again")
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
            document = await asyncio.to_thread(self.analyse, data)  # CPU work: a thread
        except Exception as exc:
            log.exception("inspection %d: analysis failed", inspection.id)
            await save_transition(
                self._db,
                self._clock_ms(),
                lifecycle.analysis_failed(inspection, f"{type(exc).__name__}: {exc}", now),
            )
            return
        ticket_ids = await self._open_fault_tickets(inspection, document, now)
        await self._record_drift(inspection, document, now)
        due = schedule.report_due_ms(now, self.config.calendar)
        await save_transition(
            self._db,
            self._clock_ms(),
            lifecycle.analysed(inspection, document, ticket_ids, due, now),
        )

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
            step_outputs=_texts(await self._runs.read_step_outputs(host.run_id))
            if host.run_id and outcome == "collected"
            else {},
            previous_step_outputs=_texts(await self._runs.read_step_outputs(previous[1]))
            if previous
            else None,
            previous_inspection_id=str(previous[0]) if previous else None,
            history=await self._history(host.agent_id, start, end),
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

    async def _get(self, inspection_id: int) -> Inspection:
        inspection = await self._db.call(self._store.get_inspection, inspection_id)
        if inspection is None:
            raise InspectionNotFound(inspection_id)
        return inspection


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
