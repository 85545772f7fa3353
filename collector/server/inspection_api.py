"""The inspection RPCs of the Api service (a mixin of ``ApiServicer``) and their messages.

Input is bounded here (collector.limits) before the service sees it; dates are read
in the collector's calendar zone. Errors become gRPC status in ``status.ErrorStatusInterceptor``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import grpc

from collector import limits
from collector.auth import Principal
from collector.errors import FailedPrecondition, InvalidRequest
from collector.inspections.model import (
    Every,
    Inspection,
    InspectionEvent,
    Plan,
    PlanChange,
)
from collector.inspections.schedule import parse_every, parse_local_time, parse_notice
from collector.inspections.service import InspectionService, InspectionView, PlanRequest
from collector.server.paging import page
from proto import api_pb2

__all__ = ["InspectionApi", "inspection_info", "plan_message"]

Context = grpc.aio.ServicerContext[Any, Any]
TEXT = limits.TICKET_TEXT
CONFIG_FILES = 100
ACTIONS = ("consent", "decline", "reschedule", "run", "publish", "sign", "reject")


class InspectionApi:
    """Inspection plans, inspections, reports and customer settings."""

    _inspection_service: InspectionService | None

    async def _who(self, context: Context) -> Principal:
        raise NotImplementedError  # provided by ApiServicer

    @property
    def _inspection(self) -> InspectionService:
        if self._inspection_service is None:
            raise FailedPrecondition("inspections are not served by this collector")
        return self._inspection_service

    async def CreateInspectionPlan(
        self, request: api_pb2.InspectionPlanRequest, context: Context
    ) -> api_pb2.InspectionPlan:
        who = await self._who(context)
        service = self._inspection
        zone = service.config.calendar
        for name in ("customer", "every", "first", "hosts", "engineer", "notice"):
            limits.text(name, getattr(request, name), limits.NAME * 4)
        plan = await service.create_plan(
            who,
            PlanRequest(
                customer=request.customer,
                every=request.every or "quarter",
                first_ms=parse_local_time(request.first, zone),
                hosts=request.hosts,
                engineer=request.engineer,
                notice_ms=parse_notice(request.notice or "7d"),
                config_files=_config_files(request.config_files),
            ),
        )
        return plan_message(plan)

    async def ChangeInspectionPlan(
        self, request: api_pb2.ChangeInspectionPlanRequest, context: Context
    ) -> api_pb2.InspectionPlan:
        who = await self._who(context)
        service = self._inspection
        limits.text("reason", request.reason, TEXT)
        if request.cancel:
            return plan_message(await service.cancel_plan(who, request.id, request.reason))
        for name in ("every", "first", "engineer", "notice"):
            limits.text(name, getattr(request, name), limits.NAME * 4)
        zone = service.config.calendar
        change = PlanChange(
            every=_every(request.every),
            first_ms=parse_local_time(request.first, zone) if request.first else None,
            hosts=limits.text("hosts", request.hosts, limits.NAME * 4)
            if request.HasField("hosts")
            else None,
            engineer=request.engineer or None,
            notice_ms=parse_notice(request.notice) if request.notice else None,
            config_files=_config_files(request.config_files) if request.set_config_files else None,
        )
        return plan_message(await service.modify_plan(who, request.id, change))

    async def ListInspectionPlans(
        self, request: api_pb2.ListInspectionPlansRequest, context: Context
    ) -> api_pb2.ListInspectionPlansResponse:
        who = await self._who(context)
        limits.text("customer", request.customer, limits.NAME)
        plans = await self._inspection.list_plans(who, request.customer or None)
        return api_pb2.ListInspectionPlansResponse(plans=[plan_message(p) for p in plans])

    async def ListInspections(
        self, request: api_pb2.ListInspectionsRequest, context: Context
    ) -> api_pb2.ListInspectionsResponse:
        who = await self._who(context)
        states = limits.items("states", request.states, limits.LIST_FILTER_ITEMS, limits.NAME)
        limits.text("customer", request.customer, limits.NAME)
        size = limits.page_size(request.page_size)
        offset = limits.page_token(request.page_token)
        views = await self._inspection.list_inspections(
            who, request.customer or None, states, offset + size + 1
        )
        listed, token = page(views, offset, size, inspection_info)
        return api_pb2.ListInspectionsResponse(inspections=listed, next_page_token=token)

    async def GetInspection(
        self, request: api_pb2.GetInspectionRequest, context: Context
    ) -> api_pb2.InspectionDetail:
        who = await self._who(context)
        return inspection_detail(await self._inspection.get(who, request.id))

    async def ActOnInspection(
        self, request: api_pb2.InspectionAction, context: Context
    ) -> api_pb2.InspectionDetail:
        who = await self._who(context)
        service = self._inspection
        action = limits.text("action", request.action, limits.NAME)
        for name in ("reason", "summary", "comment"):
            limits.text(name, getattr(request, name), TEXT)
        for name in ("at", "name", "title", "report_sha256"):
            limits.text(name, getattr(request, name), limits.NAME)
        zone = service.config.calendar
        if action == "consent":
            await service.consent(who, request.id)
        elif action == "decline":
            proposed = parse_local_time(request.at, zone, "--propose") if request.at else None
            await service.decline(who, request.id, request.reason, proposed)
        elif action == "reschedule":
            if not request.at:
                raise InvalidRequest("give the new date (--at 2027-01-20T09:00)")
            await service.reschedule(who, request.id, parse_local_time(request.at, zone, "--at"))
        elif action == "run":
            await service.run(who, request.id)
        elif action == "publish":
            await service.publish(who, request.id, request.summary)
        elif action == "sign":
            await service.sign(
                who, request.id, request.name, request.title, request.comment, request.report_sha256
            )
        elif action == "reject":
            await service.reject(who, request.id, request.reason)
        else:
            raise InvalidRequest(f"unknown inspection action {action!r}: use {', '.join(ACTIONS)}")
        return inspection_detail(await service.get(who, request.id))

    async def GetInspectionReport(
        self, request: api_pb2.InspectionReportRequest, context: Context
    ) -> api_pb2.InspectionReport:
        who = await self._who(context)
        fmt = limits.text("format", request.format, limits.NAME) or "html"
        lang = limits.text("lang", request.lang, limits.NAME)
        content, sha256 = await self._inspection.report(who, request.id, fmt, lang)
        return api_pb2.InspectionReport(
            content=content, report_sha256=sha256, format=fmt, lang=lang
        )

    async def SetCustomerSettings(
        self, request: api_pb2.CustomerSettings, context: Context
    ) -> api_pb2.CustomerSettings:
        who = await self._who(context)
        customer = limits.text("customer", request.customer, limits.NAME)
        if not customer:
            raise InvalidRequest("name the customer")
        language = limits.text("language", request.language, limits.NAME)
        await self._inspection.set_language(who, customer, language)
        return api_pb2.CustomerSettings(customer=customer, language=language)

    async def GetCustomerSettings(
        self, request: api_pb2.GetCustomerSettingsRequest, context: Context
    ) -> api_pb2.CustomerSettings:
        who = await self._who(context)
        customer = limits.text("customer", request.customer, limits.NAME) or who.customer or ""
        if not customer:
            raise InvalidRequest("name the customer")
        language = await self._inspection.language(who, customer)
        return api_pb2.CustomerSettings(customer=customer, language=language)


def _every(value: str) -> Every | None:
    """A plan change's period: None (unchanged) for "", else quarter or month."""
    return parse_every(value) if value else None


def _config_files(paths: Sequence[str]) -> tuple[str, ...]:
    return tuple(limits.items("config_files", paths, CONFIG_FILES, 4096))


def plan_message(plan: Plan) -> api_pb2.InspectionPlan:
    """The plan as sent to clients."""
    return api_pb2.InspectionPlan(
        id=plan.id,
        customer=plan.customer,
        every=plan.every,
        first_unix_ms=plan.first_ms,
        hosts=plan.hosts,
        engineer=plan.engineer,
        notice_ms=plan.notice_ms,
        config_files=list(plan.config_files),
        state=plan.state,
        created_unix_ms=plan.created_ms,
        created_by=plan.created_by,
        updated_unix_ms=plan.updated_ms,
    )


def inspection_info(view: InspectionView) -> api_pb2.InspectionInfo:
    """The list entry of an inspection."""
    inspection = view.inspection
    return api_pb2.InspectionInfo(
        id=inspection.id,
        plan_id=inspection.plan_id,
        customer=inspection.customer,
        scheduled_unix_ms=inspection.scheduled_ms,
        state=inspection.state,
        status=view.status,
        overdue=view.overdue,
        engineer=inspection.engineer,
        hosts=inspection.hosts,
        report_due_unix_ms=inspection.report_due_ms or 0,
        report_sha256=inspection.report_sha256,
        ticket_ids=list(inspection.ticket_ids),
        occurrence=inspection.occurrence,
    )


def inspection_detail(view: InspectionView) -> api_pb2.InspectionDetail:
    """An inspection with its hosts, timeline and every stored field (but the draft)."""
    inspection = view.inspection
    return api_pb2.InspectionDetail(
        inspection=inspection_info(view),
        hosts=[
            api_pb2.InspectionHost(
                agent_id=h.agent_id,
                hostname=h.hostname,
                outcome=h.outcome,
                detail=h.detail,
                run_id=h.run_id or "",
            )
            for h in inspection.host_results
        ],
        events=[_event(e) for e in view.events],
        detail_json=json.dumps(_fields(inspection), ensure_ascii=False, sort_keys=True),
    )


def _fields(inspection: Inspection) -> dict[str, Any]:
    values = dataclasses.asdict(inspection)
    values.pop("draft")
    return values


def _event(event: InspectionEvent) -> api_pb2.InspectionEvent:
    return api_pb2.InspectionEvent(
        id=event.id,
        at_unix_ms=event.at_ms,
        actor=event.actor,
        kind=event.kind,
        details_json=json.dumps(dict(event.details), ensure_ascii=False, sort_keys=True),
    )
