"""``aftercare tickets`` and ``aftercare ticket ...``: the closed-loop ticket commands.

Engineers: list, show, ack, contact, comment, assign, resolve, reopen, wait, resume, report.
Customers: list and show their own, create, comment, confirm, reject.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict

from collector.client import arguments, desk
from collector.client.connection import ApiClient
from collector.client.output import iso, raw_stdout, safe, safe_block, with_times
from collector.client.paging import fetch_all
from proto import api_pb2

STATES = ("open", "acknowledged", "recovered", "resolved", "closed", "reopened")
LEVELS = ("1", "2", "3", "4", "consult", "other")
CONTACT_CHANNELS = ("phone", "email", "portal", "remote")


def add_commands(commands: Any) -> None:
    """Register ``tickets`` and ``ticket`` on the client's sub-command parser."""
    p = commands.add_parser(
        "tickets",
        help="list tickets",
        description="List tickets, newest first, with their SLA state.",
    )
    p.add_argument("--state", action="append", choices=STATES, help="only these states (repeat)")
    p.add_argument("--level", choices=LEVELS, help="only this fault level")
    p.add_argument("--customer", default="", help="only this customer (engineers)")
    p.add_argument(
        "--limit",
        type=arguments.count,
        help="show at most N tickets (default: all, every page fetched); "
        "says on stderr when more were left out",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_list)

    ticket = commands.add_parser(
        "ticket", help="show or act on one ticket", description="Show or act on one ticket."
    )
    sub = ticket.add_subparsers(dest="ticket_command", required=True, metavar="ACTION")
    _simple(sub, "show", "timeline, SLA clocks and details", _show)
    _action(
        sub,
        "ack",
        "take the ticket in hand (internal; the response clock runs until `contact`)",
        "acknowledge",
    )
    contact = _action(
        sub,
        "contact",
        "record contacting the customer (engineers): stops the response clock",
        "contact",
        text="who was reached and what was said",
        text_flag="--note",
    )
    contact.add_argument("--via", required=True, choices=CONTACT_CHANNELS, help="how")
    _action(sub, "comment", "add a comment", "comment", text="the comment")
    assign = _action(sub, "assign", "assign to an engineer", "assign")
    assign.add_argument("assignee", help="user name")
    resolve = _action(sub, "resolve", "resolve with a fault analysis", "resolve")
    resolve.add_argument("--cause", required=True, help="root cause")
    resolve.add_argument("--actions", required=True, help="what was done")
    resolve.add_argument(
        "--prevention",
        default="",
        help="how to avoid it in future (required for level 1 and 2 faults)",
    )
    resolve.add_argument("--impact", default="", help="the effect on the customer's service")
    resolve.add_argument("--losses", default="", help="what was lost (data, hours of service)")
    _action(sub, "reopen", "reopen (engineers)", "reopen", text="why", text_flag="--reason")
    _action(sub, "confirm", "confirm the fix (customers): closes the ticket", "confirm")
    _action(
        sub,
        "reject",
        "reject the fix (customers): reopens",
        "reject",
        text="why",
        text_flag="--reason",
    )
    _action(
        sub,
        "wait",
        "mark waiting on the customer (pauses SLA)",
        "wait",
        text="why",
        text_flag="--reason",
    )
    _action(sub, "resume", "end waiting on the customer", "resume")
    desk.add_ticket_actions(sub)
    report = _simple(sub, "report", "fault analysis report", _report)
    report.add_argument("--format", choices=("md", "html", "json"), default="md")
    report.add_argument(
        "--language",
        choices=("en", "zh-CN"),
        default="en",
        help="language of the md/html report (default en)",
    )
    create = sub.add_parser("create", help="open a ticket by hand", description="Open a ticket.")
    create.add_argument("title", help="one-line summary")
    create.add_argument("--description", default="")
    create.add_argument("--level", choices=LEVELS, default="other")
    create.add_argument(
        "--kind",
        choices=("fault", "complaint", "inquiry"),
        default="fault",
        help="kind of request: fault (default), complaint (投诉: answer 2h, conclude 15 days, "
        "never auto-closed), inquiry (询检问题: answer by urgency)",
    )
    create.add_argument(
        "--urgency",
        choices=("urgent", "pressing", "general"),
        default="",
        help="inquiries: urgent 3h, pressing 6h, general 3 working days (default general)",
    )
    create.add_argument("--host", default="", help="hostname or agent id")
    create.add_argument(
        "--customer", default="", help="customer (engineers; implied for customers)"
    )
    create.add_argument("--json", action="store_true", help="print machine-readable JSON")
    create.set_defaults(handler=_create)


def _simple(sub: Any, name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("id", type=arguments.ticket_id, help="ticket number")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=handler)
    return p


def _action(
    sub: Any, name: str, help_text: str, action: str, text: str = "", text_flag: str = ""
) -> argparse.ArgumentParser:
    p = _simple(sub, name, help_text, _act)
    p.set_defaults(action=action)
    if text and text_flag:
        p.add_argument(text_flag, dest="text", required=True, help=text)
    elif text:
        p.add_argument("text", help=text)
    return p


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    reply = fetch_all(
        client,
        "ListTickets",
        api_pb2.ListTicketsRequest(
            states=args.state or [], level=args.level or "", customer=args.customer
        ),
        "tickets",
        limit=None if args.limit is None else args.limit + 1,  # one more: are there more?
    )
    if args.limit is not None and len(reply.tickets) > args.limit:
        del reply.tickets[args.limit :]
        print(
            f"showing the newest {args.limit} tickets; more were left out "
            "(raise --limit, or filter with --state/--level/--customer)",
            file=sys.stderr,
        )
    if args.json:
        _print_json([_ticket_dict(t) for t in reply.tickets])
        return 0
    if not reply.tickets:
        print("no tickets")
        return 0
    print(f"{'#':>5} {'LVL':<7} {'STATE':<13} {'CUSTOMER':<12} {'HOST':<16} {'SLA':<22} TITLE")
    for t in reply.tickets:
        print(
            f"{t.id:>5} {safe(t.level):<7} {safe(t.state):<13} {safe(t.customer):<12} "
            f"{safe(t.hostname or '-'):<16} {safe(_sla_summary(t)):<22} {safe(t.title)}"
        )
    return 0


def _show(client: ApiClient, args: argparse.Namespace) -> int:
    detail = fetch_all(
        client,
        "GetTicket",
        api_pb2.GetTicketRequest(id=args.id),
        "events",
        "events_page_token",
        "next_events_page_token",
    )
    _print_detail(detail, args.json)
    return 0


def _act(client: ApiClient, args: argparse.Namespace) -> int:
    request = api_pb2.TicketAction(
        id=args.id,
        action=args.action,
        text=getattr(args, "text", "") or "",
        assignee=getattr(args, "assignee", "") or "",
        cause=getattr(args, "cause", "") or "",
        actions=getattr(args, "actions", "") or "",
        prevention=getattr(args, "prevention", "") or "",
        via=getattr(args, "via", "") or "",
        impact=getattr(args, "impact", "") or "",
        losses=getattr(args, "losses", "") or "",
    )
    detail = client.call("ActOnTicket", request)
    if args.json:
        _print_detail(detail, True)
    else:
        t = detail.ticket
        print(f"ticket {t.id}: {safe(t.state)}")
    return 0


def _create(client: ApiClient, args: argparse.Namespace) -> int:
    detail = client.call(
        "CreateTicket",
        api_pb2.CreateTicketRequest(
            title=args.title,
            description=args.description,
            level=args.level,
            host=args.host,
            customer=args.customer,
            kind=args.kind,
            urgency=args.urgency,
        ),
    )
    if args.json:
        _print_detail(detail, True)
    else:
        print(f"ticket {detail.ticket.id} opened (level {safe(detail.ticket.level)})")
    return 0


def _report(client: ApiClient, args: argparse.Namespace) -> int:
    reply = client.call(
        "GetTicketReport",
        api_pb2.TicketReportRequest(id=args.id, format=args.format, language=args.language),
    )
    if args.format == "json":  # a document: the original, like --json
        print(reply.content, file=raw_stdout())
    else:
        print(safe_block(reply.content))
    return 0


def _print_detail(detail: api_pb2.TicketDetail, as_json: bool) -> None:
    if as_json:
        _print_json(
            {
                "ticket": _ticket_dict(detail.ticket),
                "events": [
                    {
                        "id": e.id,
                        "at": iso(e.at_unix_ms),
                        "actor": e.actor,
                        "kind": e.kind,
                        "details": json.loads(e.details_json or "{}"),
                    }
                    for e in detail.events
                ],
                "similar": [_similar_dict(k) for k in detail.similar],
            }
        )
        return
    t = detail.ticket
    kind = "" if t.kind in ("", "fault") else f" {t.kind} {t.urgency}".rstrip()
    print(f"ticket {t.id} [{safe(t.state)}] level {safe(t.level)}{safe(kind)} - {safe(t.title)}")
    print(
        f"customer {safe(t.customer)}  host {safe(t.hostname or '-')}  source {safe(t.source)}"
        f"{'  rule ' + safe(t.rule) if t.rule else ''}  assignee {safe(t.assignee or '-')}"
    )
    if t.description:
        print(safe_block(t.description))
    for clock in t.sla:
        due = iso(clock.due_unix_ms) or "-"
        print(f"  SLA {safe(clock.name):<16} {safe(clock.state):<14} due {due}")
    print("timeline:")
    for e in detail.events:
        summary = _event_summary(e.kind, json.loads(e.details_json or "{}"))
        print(f"  {iso(e.at_unix_ms)}  {safe(e.kind):<13} {safe(e.actor):<28} {safe(summary)}")
    _print_similar(detail.similar)


def _similar_dict(k: api_pb2.SimilarTicket) -> dict[str, Any]:
    return {
        "id": k.id,
        "customer": k.customer,
        "title": k.title,
        "hostname": k.hostname,
        "rule": k.rule,
        "resolved": iso(k.resolved_unix_ms),
        "cause": k.cause,
        "actions": k.actions,
        "score": k.score,
        "reasons": list(k.reasons),
    }


def _print_similar(similar: Sequence[api_pb2.SimilarTicket]) -> None:
    """Know-how: how tickets like this one were fixed before, best match first."""
    if not similar:
        return
    print("fixed before (similar resolved tickets):")
    for k in similar:
        why = ", ".join(k.reasons)
        print(f"  ticket {k.id} {safe(k.hostname or '-')} - {safe(k.title)} ({safe(why)})")
        if k.cause:
            print(f"      cause: {safe(k.cause)}")
        if k.actions:
            print(f"      actions: {safe(k.actions)}")


def _event_summary(kind: str, details: dict[str, Any]) -> str:
    """One line telling what a timeline event did (never blank for the common kinds)."""
    if kind == "acknowledged":
        return "taken in hand"
    if kind == "regraded":
        return f"level {details.get('previous')} -> {details.get('level')}: {details.get('reason')}"
    if kind == "notification":
        to = "customer" if details.get("audience") == "customer" else "escalation"
        where = f" {details['target']}" if details.get("target") else ""
        ok = "" if details.get("delivered", True) else " (delivery failed)"
        return f"{to} {details.get('channel', '?')}{where}: {details.get('subject', '')}{ok}"
    if kind == "rated":
        comment = f": {details['comment']}" if details.get("comment") else ""
        return f"satisfaction {details.get('score', '?')}/5{comment}"
    if kind == "contacted":
        return f"customer contacted by {details.get('via', '?')}: {details.get('note', '')}"
    if kind == "resolved":
        given = [(key, details.get(key)) for key in ("cause", "actions", "prevention")]
        return "; ".join(f"{key}: {value}" for key, value in given if value)
    if kind == "diagnostics":
        playbook = details.get("playbook", "?")
        status = details.get("status", "")
        line = " ".join(str(x) for x in (f"playbook {playbook}", status) if x)
        return f"{line}: {details['error']}" if details.get("error") else line
    text = details.get("text") or details.get("summary") or details.get("reason") or ""
    return str(text)


_SLA_LABELS = {"response": "resp", "resolution": "resol", "remote_response": "remote"}


def _sla_summary(t: api_pb2.Ticket) -> str:
    """Up to two clocks as ``resp:met resol:running`` (distinct labels per clock)."""
    states = [
        f"{_SLA_LABELS.get(c.name, c.name)}:{c.state}"
        for c in t.sla
        if c.state not in ("not_applicable",)
    ]
    return " ".join(states[:2]) or "-"


def _ticket_dict(t: api_pb2.Ticket) -> dict[str, Any]:
    info = with_times(MessageToDict(t, preserving_proto_field_name=True))
    info["id"] = t.id
    info["reopen_count"] = t.reopen_count
    info["sla"] = [
        {
            "name": c.name,
            "state": c.state,
            "target_ms": c.target_ms,
            "elapsed_ms": c.elapsed_ms,
            "started": iso(c.started_unix_ms),
            "due": iso(c.due_unix_ms),
            "stopped": iso(c.stopped_unix_ms),
        }
        for c in t.sla
    ]
    return info


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))
