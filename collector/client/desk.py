"""``aftercare ticket level``, ``aftercare ticket rate`` and ``aftercare stats``: regrading
a ticket, a customer's satisfaction rating and a customer's service-desk statistics for
a period (docs/statistics.md)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from collector.client import arguments
from collector.client.connection import ApiClient
from collector.client.output import duration_text, safe
from proto import api_pb2

LEVELS = ("1", "2", "3", "4", "consult", "other")


def add_ticket_actions(sub: Any) -> None:
    """Register ``ticket level`` and ``ticket rate`` on the ``ticket`` command's sub-parser."""
    p = sub.add_parser(
        "level",
        help="change the fault level (engineers): the SLA clocks restart",
        description="Regrade a ticket (engineers and admins). The reason is recorded on "
        "the timeline and in the audit log; running SLA clocks restart now against the "
        "new level's targets.",
    )
    p.add_argument("id", type=arguments.ticket_id, help="ticket number")
    p.add_argument("level", choices=LEVELS, help="the new fault level")
    p.add_argument("--reason", required=True, help="why the level changes")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_level)
    p = sub.add_parser(
        "rate",
        help="rate the service of a closed ticket, 1 (poor) to 5 (excellent) (customers)",
        description="Satisfaction rating (服务质量测评) of a closed ticket, by a customer "
        "user of the ticket's customer. Rating again replaces the earlier rating (the "
        "latest counts in `aftercare stats`); every rating stays on the timeline and in "
        "the audit log.",
    )
    p.add_argument("id", type=arguments.ticket_id, help="ticket number")
    p.add_argument("score", type=_score, help="1 (poor) .. 5 (excellent)")
    p.add_argument("--comment", default="", help="what went well or badly")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_rate)


def add_commands(commands: Any) -> None:
    """Register ``stats`` on the client's sub-command parser."""
    p = commands.add_parser(
        "stats",
        help="service-desk statistics of a customer and period",
        description="Tickets opened in a period: by level, kind, category and source; SLA "
        "met/breached per clock; time to respond/resolve (median, p90); re-opens; "
        "complaints. Customers see their own customer only.",
    )
    p.add_argument("--customer", default="", help="customer (engineers; implied for customers)")
    p.add_argument(
        "--period", required=True, help="a year, quarter or month: 2026, 2026Q4, 2026-11"
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_stats)


def _level(client: ApiClient, args: argparse.Namespace) -> int:
    request = api_pb2.RegradeTicketRequest(id=args.id, level=args.level, reason=args.reason)
    detail = client.call("RegradeTicket", request)
    t = detail.ticket
    if args.json:
        clocks = {c.name: {"state": c.state, "target_ms": c.target_ms} for c in t.sla}
        print(json.dumps({"id": t.id, "level": t.level, "state": t.state, "sla": clocks}))
    else:
        print(f"ticket {t.id}: level {safe(t.level)} ({safe(t.state)})")
    return 0


def _score(text: str) -> int:
    try:
        score = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a score: give 1 to 5") from None
    if not 1 <= score <= 5:
        raise argparse.ArgumentTypeError(f"score {score} is out of range: give 1 to 5")
    return score


def _rate(client: ApiClient, args: argparse.Namespace) -> int:
    request = api_pb2.RateTicketRequest(id=args.id, score=args.score, comment=args.comment)
    t = client.call("RateTicket", request).ticket
    if args.json:
        print(json.dumps({"id": t.id, "state": t.state, "score": args.score}))
    else:
        print(f"ticket {t.id}: rated {args.score}/5, thank you")
    return 0


def _stats(client: ApiClient, args: argparse.Namespace) -> int:
    reply = client.call(
        "GetTicketStats", api_pb2.TicketStatsRequest(customer=args.customer, period=args.period)
    )
    stats = json.loads(reply.stats_json)
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True, ensure_ascii=False))
        return 0
    for line in _stats_lines(stats):
        print(safe(line))
    return 0


def _stats_lines(stats: dict[str, Any]) -> list[str]:
    lines = [
        f"customer {stats['customer']}  period {stats['period']}: "
        f"{stats['tickets']} tickets, {stats['complaints']} complaints, "
        f"{stats['reopens']} re-openings ({stats['reopened_tickets']} tickets)"
    ]
    for name in ("by_level", "by_kind", "by_category", "by_source"):
        counts = ", ".join(f"{k}: {v}" for k, v in stats[name].items()) or "-"
        lines.append(f"  {name.replace('_', ' ')}: {counts}")
    ratings = stats.get("ratings") or {"count": 0, "mean": None, "distribution": {}}
    spread = ", ".join(f"{k}: {v}" for k, v in ratings["distribution"].items())
    mean = "-" if ratings["mean"] is None else f"{ratings['mean']:.2f}"
    lines.append(f"  satisfaction: mean {mean} (n={ratings['count']}; {spread})")
    for clock, counts in stats["sla"].items():
        lines.append(
            f"  SLA {clock}: met {counts['met']}, breached {counts['breached']}, "
            f"open {counts['open']}, n/a {counts['not_applicable']}"
        )
    for name in ("time_to_respond_ms", "time_to_resolve_ms"):
        value = stats[name]
        lines.append(
            f"  {name[:-3].replace('_', ' ')}: median {_duration(value['median'])}, "
            f"p90 {_duration(value['p90'])} (n={value['count']})"
        )
    return lines


def _duration(ms: int | None) -> str:
    return "-" if ms is None else duration_text(ms)
