"""The service-desk RPCs of the Api service (a mixin of ``ApiServicer``): regrading a
ticket and a customer's statistics. Input is bounded here (collector.limits) before
the ticket service sees it; errors become gRPC status in ``status.ErrorStatusInterceptor``."""

from __future__ import annotations

import json
from typing import Any

import grpc

from collector import limits
from collector.auth import Principal
from collector.server.ticket_messages import ticket_detail
from collector.tickets.service import TicketService
from proto import api_pb2

__all__ = ["DeskApi"]

Context = grpc.aio.ServicerContext[Any, Any]


class DeskApi:
    """``RegradeTicket``, ``GetTicketStats`` and ``RateTicket``."""

    _tickets: TicketService

    async def _who(self, context: Context) -> Principal:
        raise NotImplementedError  # provided by ApiServicer

    async def RegradeTicket(
        self, request: api_pb2.RegradeTicketRequest, context: Context
    ) -> api_pb2.TicketDetail:
        who = await self._who(context)
        limits.text("level", request.level, limits.NAME)
        limits.text("reason", request.reason, limits.TICKET_TEXT)
        await self._tickets.regrade(who, request.id, request.level, request.reason)
        return ticket_detail(await self._tickets.get(who, request.id))

    async def GetTicketStats(
        self, request: api_pb2.TicketStatsRequest, context: Context
    ) -> api_pb2.TicketStats:
        who = await self._who(context)
        limits.text("customer", request.customer, limits.NAME)
        limits.text("period", request.period, limits.NAME)
        stats = await self._tickets.stats(who, request.customer, request.period)
        return api_pb2.TicketStats(
            customer=stats.customer,
            period=stats.period.label,
            from_unix_ms=stats.period.start_ms,
            to_unix_ms=stats.period.end_ms,
            stats_json=json.dumps(stats.as_dict(), ensure_ascii=False, sort_keys=True),
        )

    async def RateTicket(
        self, request: api_pb2.RateTicketRequest, context: Context
    ) -> api_pb2.TicketDetail:
        who = await self._who(context)
        limits.text("comment", request.comment, limits.TICKET_TEXT)
        await self._tickets.rate(who, request.id, request.score, request.comment)
        return ticket_detail(await self._tickets.get(who, request.id))
