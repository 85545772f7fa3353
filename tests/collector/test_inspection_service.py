"""The inspection service against the real SQLite store, run and ticket services, on a
fake clock: plan, announce, consent, run, analyse, publish, sign, and the attacks."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.auth import Principal
from collector.errors import FailedPrecondition, InvalidRequest, NotFound, PermissionDenied
from collector.inspections import runner as runner_module
from collector.inspections.config import InspectionsConfig
from collector.inspections.inputs import InspectionInput
from collector.inspections.model import PlanChange
from collector.inspections.render import canonical_bytes
from collector.inspections.schedule import parse_local_time
from collector.inspections.service import InspectionService, PlanRequest
from collector.metrics import CollectorMetrics
from collector.rules import HostRef
from collector.runs.catalogue import load_catalogue
from collector.runs.service import RunService
from collector.store import AgentRecord, open_store
from collector.store.writer import StoreThread
from collector.tickets.config import TicketsConfig
from collector.tickets.escalation import Recipient
from collector.tickets.service import TicketService
from playbooks.shipped import catalogue_dir
from proto import agent_pb2

DAY = 86_400_000
MINUTE = 60_000
ERIN = Principal("erin", "engineer")
ADMIN = Principal("root", "admin")
ALICE = Principal("alice", "customer", "acme")
MALLORY = Principal("mallory", "customer", "globex")
WEB = AgentRecord("ag-web", "acme", "web-1", 0, "01", 10**13, last_seen_ms=1)
DB = AgentRecord("ag-db", "acme", "db-1", 0, "02", 10**13, last_seen_ms=1)
OTHER = AgentRecord("ag-gx", "globex", "gx-1", 0, "03", 10**13)
HOOK = Recipient("webhook", "https://hooks.acme.example/inspections")
LEAD = Recipient("email", "lead@vendor.example")


def at(text: str) -> int:
    return parse_local_time(text, InspectionsConfig().calendar)


NOW = at("2026-12-04T10:00")
FIRST = at("2027-01-15T09:00")  # a Friday


@dataclass
class Sent:
    recipient: Recipient
    subject: str
    payload: Mapping[str, Any]
    text: str


@dataclass
class Outbox:
    sent: list[Sent] = field(default_factory=list)
    failing: bool = False

    def __call__(
        self, recipient: Recipient, subject: str, payload: Mapping[str, Any], text: str
    ) -> None:
        if self.failing:
            raise OSError("connection refused")
        self.sent.append(Sent(recipient, subject, payload, text))


def fake_analyse(data: InspectionInput) -> dict[str, Any]:
    """A report with a fault on every collected host and one drift entry."""
    hosts = []
    for host in data.hosts:
        findings = []
        drift = []
        if host.outcome == "collected":
            findings.append(
                {
                    "key": "filesystem.predicted_full:/var",
                    "item": "filesystem",
                    "state": "fault",
                    "level": "2",
                    "title": {"en": "/var fills within 30 days", "zh-CN": "/var 30天内将满"},
                    "evidence": [host.step_outputs.get("filesystems", "")],
                    "recommendation": None,
                }
            )
            drift.append({"kind": "package", "item": "nginx", "before": "1.24", "after": "1.26"})
        hosts.append(
            {
                "agent_id": host.agent_id,
                "hostname": host.hostname,
                "outcome": host.outcome,
                "detail": host.detail,
                "findings": findings,
                "drift": drift,
                "previous": host.previous_inspection_id,
            }
        )
    return {
        "schema": "aftercare.inspection-report/1",
        "inspection_id": data.inspection_id,
        "customer": data.customer,
        "customer_name": data.customer_name,
        "engineer": data.engineer,
        "period": {"start_ms": data.period_start_ms, "end_ms": data.period_end_ms},
        "hosts": hosts,
        "tickets": {"count": len(data.tickets)},
        "recurrence": [],
    }


def fake_render(report: Mapping[str, Any], fmt: str, lang: str) -> bytes:
    if fmt not in ("html", "pdf", "md", "json") or lang not in ("zh-CN", "en"):
        raise ValueError(f"unknown format or language {fmt!r}/{lang!r}")
    return f"{fmt}|{lang}|".encode() + canonical_bytes(report)


class World:
    """A collector's inspection service over a real store, with agents we play."""

    def __init__(
        self,
        tmp_path: Path,
        config: InspectionsConfig | None = None,
        keep_renderings: bool = False,
        link_base: str = "",
    ) -> None:
        self.now = NOW
        self.connected = {"ag-web", "ag-gx"}
        self.db = StoreThread(open_store(tmp_path / "data"))
        for agent in (WEB, DB, OTHER):
            self.db.store.add_agent(agent)
        self.registry = CollectorRegistry()
        metrics = CollectorMetrics(self.registry)
        self.outbox = Outbox()
        self.sent_runs: list[agent_pb2.RunRequest] = []
        self.runs = RunService(
            self.db, load_catalogue(catalogue_dir()), self.send, tmp_path / "runs", self.clock
        )
        self.tickets = TicketService(self.db, TicketsConfig(), lambda n: None, metrics, self.clock)
        self.service = InspectionService(
            self.db,
            self.runs,
            self.tickets,
            config or InspectionsConfig(announce={"acme": (HOOK,)}, late_report=(LEAD,)),
            self.outbox,
            metrics,
            self.clock,
            fake_analyse,
            fake_render,
            rendered_dir=tmp_path / "reports" if keep_renderings else None,
            link_base=link_base,
        )

    def clock(self) -> int:
        return self.now

    def send(self, agent_id: str, message: agent_pb2.CollectorMessage) -> bool:
        if agent_id in self.connected:
            self.sent_runs.append(message.run_request)
            return True
        return False

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    async def answer(self, agent: AgentRecord, run_id: str, status: str = "ok") -> None:
        """Play the agent: output of two steps, then the result."""
        host = HostRef(agent.agent_id, agent.customer, agent.hostname)
        for step, data in (("system summary", b"os: Debian 12\n"), ("filesystems", b"/var 97%\n")):
            chunk = agent_pb2.RunOutput(run_id=run_id, step=step, stream="stdout", data=data)
            await self.runs.on_agent_message(host, agent_pb2.AgentMessage(run_output=chunk))
        result = agent_pb2.RunResult(run_id=run_id, status=status, duration_ms=5)
        await self.runs.on_agent_message(host, agent_pb2.AgentMessage(run_result=result))

    async def plan(self, **overrides: Any) -> int:
        request = PlanRequest(customer="acme", every="quarter", first_ms=FIRST, engineer="erin")
        plan = await self.service.create_plan(ERIN, _replace(request, overrides))
        [view] = await self.service.list_inspections(ERIN, "acme", [])
        assert view.inspection.plan_id == plan.id
        return view.inspection.id

    async def consented_and_run(self) -> int:
        """Plan, consent, reach the date; both hosts answered (db-1 is offline)."""
        inspection_id = await self.plan()
        await self.service.consent(ALICE, inspection_id)
        self.now = FIRST
        await self.service.tick(self.now)
        [request] = self.sent_runs
        await self.answer(WEB, request.run_id)
        await self.service.wait_idle()
        return inspection_id


def _replace(request: PlanRequest, overrides: Mapping[str, Any]) -> PlanRequest:
    from dataclasses import replace

    return replace(request, **overrides)


def scenario(
    tmp_path: Path, body: Callable[[World], Coroutine[Any, Any, None]], **kwargs: Any
) -> None:
    world = World(tmp_path, **kwargs)
    try:
        asyncio.run(body(world))
    finally:
        world.db.close()


# -- planning -----------------------------------------------------------------------------


def test_a_plan_creates_its_first_inspection_audited_and_visible_to_the_customer(
    tmp_path: Path,
) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.plan(hosts="web-*")
        view = await w.service.get(ALICE, inspection_id)
        assert view.status == "planned" and view.inspection.scheduled_ms == FIRST
        [plan] = await w.service.list_plans(ALICE, None)
        assert plan.hosts == "web-*" and plan.every == "quarter"
        assert await w.service.list_plans(MALLORY, None) == []
        with pytest.raises(PermissionDenied):
            await w.service.create_plan(
                ALICE, PlanRequest(customer="acme", every="month", first_ms=FIRST)
            )
        await w.service.modify_plan(ERIN, plan.id, PlanChange(engineer="frank"))
        actions = [(e.action, e.target) for e in w.db.store.audit_entries()]
        assert actions == [
            ("inspection.plan_created", f"plan:{plan.id}"),
            ("inspection.plan_changed", f"plan:{plan.id}"),
        ]
        changed = w.db.store.audit_entries()[-1].details
        assert changed["engineer"] == {"from": "erin", "to": "frank"}

    scenario(tmp_path, body)


def test_bad_plans_are_refused_and_leave_nothing_behind(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        bad = [
            (PlanRequest("acme", "fortnight", FIRST), "quarter or month"),
            (PlanRequest("acme", "quarter", NOW - DAY), "has passed"),
            (PlanRequest("acme", "quarter", FIRST, hosts="mail-*"), "no hosts"),
            (PlanRequest("nobody", "quarter", FIRST), "no hosts"),
            (PlanRequest("acme", "quarter", FIRST, config_files=("etc/x",)), "absolute"),
        ]
        for request, message in bad:
            with pytest.raises(InvalidRequest, match=message):
                await w.service.create_plan(ERIN, request)
        assert w.db.store.list_plans(None) == []

    scenario(tmp_path, body)


def test_changing_the_date_replans_unstarted_inspections_and_asks_consent_again(
    tmp_path: Path,
) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.plan()
        await w.service.consent(ALICE, inspection_id)
        [plan] = await w.service.list_plans(ERIN, "acme")
        later = at("2027-01-22T09:00")
        await w.service.modify_plan(ERIN, plan.id, PlanChange(first_ms=later))
        view = await w.service.get(ERIN, inspection_id)
        assert view.inspection.scheduled_ms == later and view.inspection.state == "planned"
        await w.service.cancel_plan(ERIN, plan.id, "contract ended")
        assert (await w.service.get(ERIN, inspection_id)).inspection.state == "cancelled"
        w.now = later + 400 * DAY
        await w.service.tick(w.now)  # a cancelled plan creates nothing more
        assert len(await w.service.list_inspections(ERIN, None, [])) == 1

    scenario(tmp_path, body)


# -- announcing, consent, overdue -----------------------------------------------------------


def test_the_customer_is_notified_notice_before_the_date_with_the_application(
    tmp_path: Path,
) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.plan(notice_ms=7 * DAY)
        w.now = FIRST - 7 * DAY - 1
        await w.service.tick(w.now)
        assert w.outbox.sent == []
        w.now = FIRST - 7 * DAY
        await w.service.tick(w.now)
        await w.service.tick(w.now + MINUTE)  # announced once
        [sent] = w.outbox.sent
        application = sent.payload["inspection"]
        assert sent.recipient == HOOK and application["id"] == inspection_id
        assert application["hosts"] == ["db-1", "web-1"] and application["engineer"] == "erin"
        assert "filesystems" in application["checklist"]
        assert "consent" in sent.text
        view = await w.service.get(ALICE, inspection_id)
        assert view.status == "announced"
        [announced] = [e for e in view.events if e.kind == "announced"]
        assert announced.details["deliveries"][0]["delivered"] is True

    scenario(tmp_path, body)


def test_a_failed_announcement_is_retried_not_lost(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.plan()
        w.outbox.failing = True
        w.now = FIRST - DAY
        await w.service.tick(w.now)
        assert (await w.service.get(ERIN, inspection_id)).inspection.state == "planned"
        w.outbox.failing = False
        w.now += 2 * MINUTE
        await w.service.tick(w.now)
        assert (await w.service.get(ERIN, inspection_id)).inspection.state == "announced"

    scenario(tmp_path, body)


def test_without_consent_the_inspection_waits_and_shows_overdue(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.plan()
        w.now = FIRST + DAY
        await w.service.tick(w.now)
        assert w.sent_runs == []  # never run without consent
        view = await w.service.get(ERIN, inspection_id)
        assert view.status == "overdue" and view.inspection.state == "announced"
        listed = await w.service.list_inspections(ERIN, None, ["overdue"])
        assert [v.inspection.id for v in listed] == [inspection_id]
        assert w.metric("aftercare_inspections_overdue", customer="acme") == 1
        assert w.metric("aftercare_inspections", customer="acme", state="announced") == 1
        # the next quarter's occurrence exists already, planned
        assert w.metric("aftercare_inspections", customer="acme", state="planned") == 1

    scenario(tmp_path, body)


def test_decline_with_a_proposal_then_reschedule_and_consent(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.plan()
        proposed = at("2027-01-20T09:00")
        with pytest.raises(InvalidRequest, match="reason"):
            await w.service.decline(ALICE, inspection_id, "  ", None)
        with pytest.raises(InvalidRequest, match="passed"):
            await w.service.decline(ALICE, inspection_id, "busy", NOW - DAY)
        declined = await w.service.decline(ALICE, inspection_id, "month-end close", proposed)
        assert declined.state == "declined" and declined.proposed_ms == proposed
        with pytest.raises(PermissionDenied):
            await w.service.reschedule(ALICE, inspection_id, proposed)
        moved = await w.service.reschedule(ERIN, inspection_id, proposed)
        assert moved.state == "planned" and moved.scheduled_ms == proposed
        consented = await w.service.consent(ALICE, inspection_id)
        assert consented.state == "consented" and consented.consented_by == "user:alice"

    scenario(tmp_path, body)


def test_wrong_order_and_wrong_people_get_clear_errors(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.plan()
        with pytest.raises(FailedPrecondition, match="not consented"):
            await w.service.run(ERIN, inspection_id)
        with pytest.raises(FailedPrecondition, match="not published"):
            await w.service.sign(ALICE, inspection_id, "张三", "运维主管", "", "0" * 64)
        with pytest.raises(PermissionDenied):
            await w.service.consent(ERIN, inspection_id)  # consent is the customer's
        with pytest.raises(PermissionDenied):
            await w.service.run(ALICE, inspection_id)
        await w.service.consent(ALICE, inspection_id)
        with pytest.raises(FailedPrecondition, match="already"):
            await w.service.consent(ALICE, inspection_id)
        with pytest.raises(FailedPrecondition, match="publish"):
            await w.service.reject(ALICE, inspection_id, "no")

    scenario(tmp_path, body)


def test_another_customer_can_neither_see_nor_act(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.consented_and_run()
        published = await w.service.publish(ERIN, inspection_id, "")
        attempts: list[Callable[[], Awaitable[Any]]] = [
            lambda: w.service.get(MALLORY, inspection_id),
            lambda: w.service.consent(MALLORY, inspection_id),
            lambda: w.service.decline(MALLORY, inspection_id, "x", None),
            lambda: w.service.sign(
                MALLORY, inspection_id, "M", "boss", "", published.report_sha256
            ),
            lambda: w.service.reject(MALLORY, inspection_id, "x"),
            lambda: w.service.report(MALLORY, inspection_id, "json", "en"),
        ]
        for attempt in attempts:
            with pytest.raises(NotFound):
                await attempt()
        assert await w.service.list_inspections(MALLORY, None, []) == []
        with pytest.raises(PermissionDenied):
            await w.service.list_inspections(MALLORY, "acme", [])
        assert (await w.service.get(ALICE, inspection_id)).inspection.state == "awaiting_signoff"

    scenario(tmp_path, body)


# -- run, analysis, report, sign-off --------------------------------------------------------


def test_the_run_records_every_host_opens_tickets_and_records_drift(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.consented_and_run()
        [request] = w.sent_runs
        assert request.playbook == "quarterly-inspection" and request.params["since"] == "42d"
        view = await w.service.get(ERIN, inspection_id)
        inspection = view.inspection
        assert inspection.state == "awaiting_report"
        outcomes = {h.hostname: (h.outcome, h.detail) for h in inspection.host_results}
        assert outcomes == {
            "web-1": ("collected", ""),
            "db-1": ("offline", "the host is not connected"),
        }
        assert inspection.report_due_ms == at("2027-01-20T09:00")  # Fri + 3 working days
        web = next(h for h in (inspection.draft or {})["hosts"] if h["hostname"] == "web-1")
        assert web["findings"][0]["evidence"] == ["/var 97%\n"]  # the step's own output
        [ticket_id] = inspection.ticket_ids
        ticket = w.db.store.get_ticket(ticket_id)
        assert ticket is not None and ticket.source == "inspection" and ticket.level == "2"
        assert ticket.labels["inspection"] == str(inspection_id)
        assert ticket.dedup_key == "inspection:ag-web:filesystem.predicted_full:/var"
        [change] = w.db.store.change_records("ag-web")
        assert (change.kind, change.item, change.before, change.after) == (
            "package",
            "nginx",
            "1.24",
            "1.26",
        )
        assert change.source == "inspection" and change.inspection_id == inspection_id
        assert w.db.store.change_records("ag-db") == []

    scenario(tmp_path, body)


def test_publish_then_sign_binds_the_sha256_and_the_report_never_changes(
    tmp_path: Path,
) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.consented_and_run()
        published = await w.service.publish(ERIN, inspection_id, "All good but /var.")
        stored = w.db.store.inspection_report(inspection_id)
        assert stored is not None
        assert hashlib.sha256(stored.encode()).hexdigest() == published.report_sha256
        document = json.loads(stored)
        assert document["summary"] == "All good but /var." and document["signoff"] is None
        assert document["published"] == {"by": "erin", "at_ms": w.now}
        with pytest.raises(FailedPrecondition):
            await w.service.publish(ERIN, inspection_id, "rewritten")
        with pytest.raises(FailedPrecondition, match="not the published one"):
            await w.service.sign(ALICE, inspection_id, "张三", "运维主管", "", "f" * 64)
        with pytest.raises(PermissionDenied):
            await w.service.sign(ERIN, inspection_id, "E", "x", "", published.report_sha256)
        signed = await w.service.sign(
            ALICE, inspection_id, "张三", "运维主管", "ok", published.report_sha256
        )
        assert signed.state == "signed" and signed.signoff is not None
        assert w.db.store.inspection_report(inspection_id) == stored  # unchanged
        rendered, sha256 = await w.service.report(ALICE, inspection_id, "html", "")
        fmt, lang, body_bytes = rendered.split(b"|", 2)
        assert (fmt, lang, sha256) == (b"html", b"zh-CN", published.report_sha256)
        shown = json.loads(body_bytes)
        assert shown["signoff"]["name"] == "张三" and shown["signoff"]["decision"] == "signed"
        assert shown["signoff"]["report_sha256"] == published.report_sha256
        await w.service.set_language(ADMIN, "acme", "en")
        rendered, _ = await w.service.report(ALICE, inspection_id, "md", "")
        assert rendered.startswith(b"md|en|")
        with pytest.raises(InvalidRequest, match="format"):
            await w.service.report(ERIN, inspection_id, "docx", "en")
        with pytest.raises(PermissionDenied):
            await w.service.set_language(ERIN, "acme", "zh-CN")
        actions = [e.action for e in w.db.store.audit_entries()]
        assert "inspection.published" in actions and "inspection.signed" in actions

    scenario(tmp_path, body)


def test_the_report_is_rendered_ahead_once_and_requests_get_those_bytes(
    tmp_path: Path,
) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.consented_and_run()
        published = await w.service.publish(ERIN, inspection_id, "ok")
        await w.service.wait_idle()
        stored = w.db.store.inspection_report(inspection_id)
        assert stored is not None
        assert hashlib.sha256(stored.encode()).hexdigest() == published.report_sha256
        kept = tmp_path / "reports"
        sha = published.report_sha256
        assert sorted(p.name for p in kept.iterdir()) == [
            f"{sha}.unsigned.zh-CN.html",
            f"{sha}.unsigned.zh-CN.pdf",
        ]
        assert w.service.rendered.rendered == 2  # made at publication, in the customer's language
        first, _ = await w.service.report(ALICE, inspection_id, "pdf", "")
        again, sha256 = await w.service.report(ERIN, inspection_id, "pdf", "zh-CN")
        assert w.service.rendered.rendered == 2  # neither request rendered
        assert first == again == fake_render(json.loads(stored), "pdf", "zh-CN")
        assert sha256 == sha
        # another language: rendered once, on the first request, then kept
        english, _ = await w.service.report(ALICE, inspection_id, "pdf", "en")
        assert english == fake_render(json.loads(stored), "pdf", "en")
        await w.service.report(ALICE, inspection_id, "pdf", "en")
        assert w.service.rendered.rendered == 3
        # signing changes the sign-off block shown: a new rendering, made ahead again
        await w.service.sign(ALICE, inspection_id, "张三", "运维主管", "", sha)
        await w.service.wait_idle()
        assert w.service.rendered.rendered == 5
        signed, _ = await w.service.report(ALICE, inspection_id, "pdf", "zh-CN")
        assert w.service.rendered.rendered == 5
        shown = json.loads(signed.split(b"|", 2)[2])
        assert shown["signoff"]["name"] == "张三" and shown["signoff"]["report_sha256"] == sha
        assert not [p for p in kept.iterdir() if p.name.startswith(".")]  # no partial file

    scenario(tmp_path, body, keep_renderings=True)


def test_a_tampered_rendering_name_cannot_leave_the_directory(tmp_path: Path) -> None:
    from collector.inspections.rendered import rendering_name

    document: dict[str, Any] = {"signoff": None}
    assert rendering_name("a" * 64, document, "pdf", "en") == f"{'a' * 64}.unsigned.en.pdf"
    for sha256, fmt, lang in (
        ("../../etc/passwd", "pdf", "en"),
        ("a" * 64, "pdf/../x", "en"),
        ("a" * 64, "pdf", "../en"),
        ("A" * 64, "pdf", "en"),
    ):
        with pytest.raises(ValueError, match="no rendering"):
            rendering_name(sha256, document, fmt, lang)


def test_concurrent_requests_for_one_rendering_render_it_once(tmp_path: Path) -> None:
    from collector.inspections.rendered import RenderedReports

    async def body() -> None:
        rendered = RenderedReports(tmp_path, fake_render)
        document = {"signoff": None, "hosts": []}
        results = await asyncio.gather(
            *(rendered.get("b" * 64, document, "pdf", "en") for _ in range(5))
        )
        assert rendered.rendered == 1
        assert set(results) == {fake_render(document, "pdf", "en")}
        assert [p.name for p in tmp_path.iterdir()] == [f"{'b' * 64}.unsigned.en.pdf"]

    asyncio.run(body())


def test_a_customer_may_reject_the_published_report_with_a_reason(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.consented_and_run()
        await w.service.publish(ERIN, inspection_id, "")
        rejected = await w.service.reject(ALICE, inspection_id, "db-1 was not inspected")
        assert rejected.state == "rejected"
        assert rejected.signoff is not None and rejected.signoff["reason"] == (
            "db-1 was not inspected"
        )

    scenario(tmp_path, body)


def test_a_late_report_escalates_once_and_is_counted(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.consented_and_run()
        due = (await w.service.get(ERIN, inspection_id)).inspection.report_due_ms
        assert due is not None
        w.outbox.sent.clear()
        w.now = due
        await w.service.tick(w.now)
        assert w.outbox.sent == []
        w.now = due + 1
        await w.service.tick(w.now)
        await w.service.tick(w.now + DAY)
        [sent] = w.outbox.sent
        assert sent.recipient == LEAD and sent.payload["event"] == "inspection_report_late"
        assert w.metric("aftercare_inspection_reports_late_total", customer="acme") == 1
        view = await w.service.get(ERIN, inspection_id)
        assert view.status == "overdue" and view.inspection.late_notified_ms == due + 1
        assert [e.kind for e in view.events].count("report_late") == 1

    scenario(tmp_path, body)


def test_a_host_that_never_answers_times_out_and_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "POLL_SECONDS", 0.01)

    async def body(w: World) -> None:
        inspection_id = await w.plan()
        await w.service.consent(ALICE, inspection_id)
        w.now = FIRST
        await w.service.tick(w.now)
        await asyncio.sleep(0.05)
        assert (await w.service.get(ERIN, inspection_id)).inspection.state == "running"
        w.now = FIRST + w.service.config.run_timeout_ms
        await w.service.wait_idle()
        inspection = (await w.service.get(ERIN, inspection_id)).inspection
        web = next(h for h in inspection.host_results if h.hostname == "web-1")
        assert web.outcome == "timed_out" and "no result within 15 min" in web.detail
        assert inspection.state == "awaiting_report"

    scenario(tmp_path, body)


def test_a_refusing_host_is_listed_as_refused(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.plan()
        await w.service.consent(ALICE, inspection_id)
        w.now = FIRST
        await w.service.run(ERIN, inspection_id)
        [request] = w.sent_runs
        host = HostRef(WEB.agent_id, WEB.customer, WEB.hostname)
        update = agent_pb2.RunUpdate(run_id=request.run_id, state="refused", message="policy")
        await w.runs.on_agent_message(host, agent_pb2.AgentMessage(run_update=update))
        await w.service.wait_idle()
        inspection = (await w.service.get(ERIN, inspection_id)).inspection
        web = next(h for h in inspection.host_results if h.hostname == "web-1")
        assert (web.outcome, web.detail) == ("refused", "policy")
        assert inspection.ticket_ids == ()  # nothing collected, no finding

    scenario(tmp_path, body)


def test_the_next_inspection_gets_the_previous_step_outputs(tmp_path: Path) -> None:
    seen: list[InspectionInput] = []

    async def body(w: World) -> None:
        first_id = await w.consented_and_run()
        await w.service.publish(ERIN, first_id, "")
        second = next(
            v.inspection for v in await w.service.list_inspections(ERIN, "acme", ["planned"])
        )
        await w.service.consent(ALICE, second.id)
        w.now = second.scheduled_ms
        w.sent_runs.clear()
        await w.service.tick(w.now)
        [request] = w.sent_runs
        await w.answer(WEB, request.run_id)
        await w.service.wait_idle()
        [data] = seen
        web = next(h for h in data.hosts if h.hostname == "web-1")
        assert web.previous_inspection_id == str(first_id)
        assert web.previous_step_outputs == {
            "system summary": "os: Debian 12\n",
            "filesystems": "/var 97%\n",
        }
        assert data.period_start_ms == FIRST  # since the previous run

    def spy(data: InspectionInput) -> dict[str, Any]:
        if data.inspection_id != "1":
            seen.append(data)
        return fake_analyse(data)

    world = World(tmp_path)
    world.service.runner.analyse = spy
    try:
        asyncio.run(body(world))
    finally:
        world.db.close()


def test_an_analysis_that_fails_leaves_the_inspection_failed_and_runnable(
    tmp_path: Path,
) -> None:
    async def body(w: World) -> None:
        def broken(data: InspectionInput) -> dict[str, Any]:
            raise KeyError("facts")

        w.service.runner.analyse = broken
        inspection_id = await w.consented_and_run()
        view = await w.service.get(ERIN, inspection_id)
        assert view.inspection.state == "failed"
        [failure] = [e for e in view.events if e.kind == "analysis_failed"]
        assert "KeyError" in failure.details["error"]
        w.service.runner.analyse = fake_analyse
        w.sent_runs.clear()
        await w.service.run(ERIN, inspection_id)
        [request] = w.sent_runs
        await w.answer(WEB, request.run_id)
        await w.service.wait_idle()
        assert (await w.service.get(ERIN, inspection_id)).inspection.state == "awaiting_report"

    scenario(tmp_path, body)


def test_a_run_interrupted_by_a_restart_is_picked_up_by_the_next_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "POLL_SECONDS", 0.01)

    async def body(w: World) -> None:
        inspection_id = await w.plan()
        await w.service.consent(ALICE, inspection_id)
        w.now = FIRST
        await w.service.tick(w.now)
        await w.service.stop()  # the collector stops while the host still runs
        assert (await w.service.get(ERIN, inspection_id)).inspection.state == "running"
        restarted = InspectionService(
            w.db,
            w.runs,
            w.tickets,
            w.service.config,
            w.outbox,
            CollectorMetrics(CollectorRegistry()),
            w.clock,
            fake_analyse,
            fake_render,
        )
        [request] = w.sent_runs
        await w.answer(WEB, request.run_id)
        await restarted.tick(w.now)
        await restarted.wait_idle()
        inspection = (await restarted.get(ERIN, inspection_id)).inspection
        assert inspection.state == "awaiting_report"
        assert {h.hostname: h.outcome for h in inspection.host_results} == {
            "web-1": "collected",
            "db-1": "offline",
        }
        assert len(w.sent_runs) == 1  # resumed, not run again

    scenario(tmp_path, body)


def test_a_host_whose_run_was_never_started_fails_instead_of_waiting_forever(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from collector.inspections.model import HostResult

    async def body(w: World) -> None:
        inspection_id = await w.plan()
        stored = w.db.store.get_inspection(inspection_id)
        assert stored is not None
        # as left by a collector that stopped between recording the run and starting it
        crashed = replace(
            stored,
            state="running",
            run_started_ms=NOW,
            host_results=(HostResult("ag-web", "web-1", "pending"),),
        )
        w.db.store.update_inspection(crashed, [])
        await w.service.tick(w.now)
        await w.service.wait_idle()
        inspection = (await w.service.get(ERIN, inspection_id)).inspection
        [web] = inspection.host_results
        assert (web.outcome, web.detail) == ("failed", "the run was never started; run again")
        assert inspection.state == "awaiting_report"

    scenario(tmp_path, body)


def test_the_application_links_to_the_portal_page_of_the_inspection(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.plan(notice_ms=7 * DAY)
        w.now = FIRST - 7 * DAY
        await w.service.tick(w.now)
        [sent] = w.outbox.sent
        link = f"https://portal.example/inspections/{inspection_id}"
        assert sent.payload["link"] == link and f"Link: {link}" in sent.text

    scenario(tmp_path, body, link_base="https://portal.example/")


def test_publishing_tells_the_customer_the_report_awaits_sign_off_with_the_link(
    tmp_path: Path,
) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.consented_and_run()
        before = len(w.outbox.sent)
        published = await w.service.publish(ERIN, inspection_id, "All good but /var.")
        await w.service.wait_idle()
        [notice] = w.outbox.sent[before:]
        assert notice.recipient == HOOK  # the customer's announce recipients only
        assert notice.payload["event"] == "inspection_report_published"
        assert notice.payload["inspection"]["report_sha256"] == published.report_sha256
        assert notice.payload["link"] == f"https://portal.example/inspections/{inspection_id}"
        audit = w.db.store.audit_entries()
        [entry] = [a for a in audit if a.action == "inspection.report_notice"]
        assert entry.target == f"inspection:{inspection_id}"
        assert entry.details["deliveries"][0]["delivered"] is True

    scenario(tmp_path, body, link_base="https://portal.example")


def test_a_report_notice_to_another_customer_is_never_sent(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        inspection_id = await w.consented_and_run()
        before = len(w.outbox.sent)
        await w.service.publish(ERIN, inspection_id, "ok")
        await w.service.wait_idle()
        assert w.outbox.sent[before:] == []  # acme has no recipients; globex's never get it

    config = InspectionsConfig(announce={"globex": (HOOK,)}, late_report=(LEAD,))
    scenario(tmp_path, body, config=config)


def test_inspection_notices_follow_the_customers_language(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        w.db.store.set_customer_language("acme", "en", "admin", w.now)
        inspection_id = await w.plan(notice_ms=7 * DAY)
        w.now = FIRST - 7 * DAY
        await w.service.tick(w.now)
        [application] = w.outbox.sent
        assert application.subject.startswith(
            f"[aftercare] Inspection application #{inspection_id}"
        )
        assert application.payload["language"] == "en" and "巡检" not in application.text

    scenario(tmp_path, body, link_base="https://portal.example")
