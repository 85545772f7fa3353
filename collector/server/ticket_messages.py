"""Ticket views to API messages (the only place tickets meet protobuf)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from collector import limits
from collector.server.paging import page
from collector.tickets.knowhow import Match
from collector.tickets.model import TicketEvent
from collector.tickets.service import TicketView
from proto import api_pb2


def ticket_message(view: TicketView) -> api_pb2.Ticket:
    """The API form of a ticket and its SLA clocks."""
    t = view.ticket
    return api_pb2.Ticket(
        id=t.id,
        customer=t.customer,
        title=t.title,
        level=t.level,
        state=t.state,
        source=t.source,
        created_unix_ms=t.created_ms,
        updated_unix_ms=t.updated_ms,
        description=_capped(t.description, limits.TICKET_DESCRIPTION),
        agent_id=t.agent_id or "",
        hostname=t.hostname,
        rule=t.rule or "",
        labels=dict(t.labels),
        assignee=t.assignee or "",
        acknowledged_unix_ms=t.acknowledged_ms or 0,
        resolved_unix_ms=t.resolved_ms or 0,
        closed_unix_ms=t.closed_ms or 0,
        close_reason=t.close_reason or "",
        waiting_on_customer=t.waiting_on_customer,
        reopen_count=t.reopen_count,
        resolution=dict(t.resolution),
        kind=t.kind,
        urgency=t.urgency,
        sla=[
            api_pb2.SlaClock(
                name=c.name,
                state=c.state,
                target_ms=c.target_ms or 0,
                started_unix_ms=c.started_ms or 0,
                due_unix_ms=c.due_ms or 0,
                stopped_unix_ms=c.stopped_ms or 0,
                elapsed_ms=c.elapsed_ms,
            )
            for c in view.sla.clocks
        ],
    )


def ticket_detail(
    view: TicketView, events_offset: int = 0, similar: Sequence[Match] = ()
) -> api_pb2.TicketDetail:
    """A ticket with its timeline from ``events_offset`` on, as much as fits in a page
    (``collector.server.paging``); ``next_events_page_token`` continues it. ``similar``
    (know-how) goes with the first page."""
    ticket = ticket_message(view)
    known = [_similar(m) for m in similar] if events_offset == 0 else []
    budget = max(
        limits.PAGE_BYTES - ticket.ByteSize() - sum(k.ByteSize() for k in known), 64 * 1024
    )
    events, token = page(view.events, events_offset, limits.MAX_INT64, _event, budget)
    return api_pb2.TicketDetail(
        ticket=ticket, events=events, next_events_page_token=token, similar=known
    )


def _similar(match: Match) -> api_pb2.SimilarTicket:
    t = match.ticket
    return api_pb2.SimilarTicket(
        id=t.id,
        customer=t.customer,
        title=t.title,
        hostname=t.hostname,
        rule=t.rule or t.labels.get("alertname", ""),
        resolved_unix_ms=t.resolved_ms or 0,
        cause=_capped(t.resolution.get("cause", ""), limits.TICKET_TEXT),
        actions=_capped(t.resolution.get("actions", ""), limits.TICKET_TEXT),
        score=match.score,
        reasons=list(match.reasons),
    )


MAX_EVENT_JSON = 256 * 1024


def _event(e: TicketEvent) -> api_pb2.TicketEvent:
    details = json.dumps(dict(e.details), ensure_ascii=False, sort_keys=True)
    if len(details.encode()) > MAX_EVENT_JSON:  # stored before the write limits existed
        details = json.dumps(
            {"truncated": True, "text": _capped(details, limits.TICKET_TEXT)}, ensure_ascii=False
        )
    return api_pb2.TicketEvent(
        id=e.id, at_unix_ms=e.at_ms, actor=e.actor, kind=e.kind, details_json=details
    )


def _capped(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes with a marker saying how much was left out
    (only text stored before the API's write limits, or by a source without them)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    cut = data[:limit].decode("utf-8", "ignore")
    left = len(data) - len(cut.encode())
    return f"{cut}\n[... {left} more bytes not shown: the text exceeds {limit} bytes]"
