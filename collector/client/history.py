"""``aftercare host HOST --metric NAME`` (metric history) and ``aftercare archive HOST``.

History: a table of bucket start, count, min, avg and max per series
(docs/metric-history.md). Archive: the host's timeline, newest first (docs/archive.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from collector.client import arguments
from collector.client.connection import ApiClient
from collector.client.output import duration_text, iso, safe
from collector.client.paging import fetch_all
from proto import api_pb2

DEFAULT_SINCE = "1d"
STEPS = {"5m": 300_000, "15m": 900_000, "1h": 3_600_000, "6h": 21_600_000, "1d": 86_400_000}


def add_host_options(parser: argparse.ArgumentParser) -> None:
    """The history options of ``aftercare host``: with ``--metric`` it shows history."""
    parser.add_argument(
        "--metric", default="", help="show this metric's downsampled history instead"
    )
    parser.add_argument(
        "--since",
        type=arguments.duration_ms,
        help=f"with --metric: how far back (90d, 12h; default {DEFAULT_SINCE})",
    )
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        type=_label,
        metavar="K=V",
        help="with --metric: only series with this label (repeat)",
    )
    parser.add_argument(
        "--step",
        choices=tuple(STEPS),
        help="with --metric: bucket size (default: the finest giving at most 1000 rows)",
    )


def wants_history(args: argparse.Namespace) -> bool:
    """True when ``aftercare host`` was asked for history; exits 2 for history options
    without ``--metric``."""
    if args.metric:
        return True
    if args.since is not None or args.label or args.step:
        print("error: --since, --label and --step need --metric NAME", file=sys.stderr)
        raise SystemExit(2)
    return False


def show_history(client: ApiClient, args: argparse.Namespace) -> int:
    """Print the metric history of ``args.host``."""
    until = int(time.time() * 1000)
    since_ms = args.since if args.since is not None else arguments.duration_ms(DEFAULT_SINCE)
    reply = client.call(
        "GetMetricHistory",
        api_pb2.MetricHistoryRequest(
            host=args.host,
            metric=args.metric,
            labels=dict(args.label),
            since_unix_ms=max(1, until - since_ms),
            until_unix_ms=until,
            step_ms=STEPS[args.step] if args.step else 0,
        ),
    )
    if args.json:
        _print_json(history_dict(reply))
        return 0
    print(
        f"{safe(reply.hostname)} ({safe(reply.agent_id)}) {safe(args.metric)} from "
        f"{iso(reply.since_unix_ms)} to {iso(reply.until_unix_ms)}, "
        f"{duration_text(reply.step_ms)} buckets"
    )
    if not reply.series:
        print("no history for this metric in the period (check the name with `aftercare host`)")
        return 0
    for series in reply.series:
        print(f"\n{safe(series.name)}{_labels(series.labels)}")
        print(f"  {'START (UTC)':<25} {'COUNT':>6} {'MIN':>12} {'AVG':>12} {'MAX':>12}")
        for b in series.buckets:
            print(
                f"  {iso(b.start_unix_ms) or '':<25} {b.count:>6} "
                f"{b.min:>12.6g} {b.avg:>12.6g} {b.max:>12.6g}"
            )
    return 0


def history_dict(reply: api_pb2.MetricHistoryResponse) -> dict[str, Any]:
    """The ``--json`` form of a history reply."""
    return {
        "agent_id": reply.agent_id,
        "hostname": reply.hostname,
        "since": iso(reply.since_unix_ms),
        "until": iso(reply.until_unix_ms),
        "step_ms": reply.step_ms,
        "series": [
            {
                "name": s.name,
                "labels": dict(s.labels),
                "buckets": [
                    {
                        "start": iso(b.start_unix_ms),
                        "start_unix_ms": b.start_unix_ms,
                        "resolution_ms": b.resolution_ms,
                        "count": b.count,
                        "min": b.min,
                        "avg": b.avg,
                        "max": b.max,
                    }
                    for b in s.buckets
                ],
            }
            for s in reply.series
        ],
    }


def add_commands(commands: Any) -> None:
    """Register ``archive`` on the client's sub-command parser."""
    p = commands.add_parser(
        "archive",
        help="a host's archive: its whole history in one timeline",
        description="Show a host's archive (设备档案), newest first: enrolment, "
        "certificate renewals, tickets, remote sessions, playbook runs, data gaps and "
        "audit entries about the host.",
    )
    p.add_argument("host", help="hostname or agent id")
    p.add_argument("--since", type=arguments.duration_ms, help="only the last DURATION (90d, 12h)")
    p.add_argument("--limit", type=arguments.count, help="at most this many entries")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_archive)


def _archive(client: ApiClient, args: argparse.Namespace) -> int:
    since = max(1, int(time.time() * 1000) - args.since) if args.since is not None else 0
    reply = fetch_all(
        client,
        "GetArchive",
        api_pb2.ArchiveRequest(host=args.host, since_unix_ms=since),
        "entries",
        limit=args.limit,
    )
    entries = [
        {"at": iso(e.at_unix_ms), "kind": e.kind, "summary": e.summary, "ref": e.ref}
        for e in reply.entries
    ]
    if args.json:
        _print_json(
            {
                "agent_id": reply.agent_id,
                "hostname": reply.hostname,
                "customer": reply.customer,
                "entries": entries,
            }
        )
        return 0
    print(
        f"archive of {safe(reply.hostname)} ({safe(reply.agent_id)}), "
        f"customer {safe(reply.customer)}"
    )
    if not entries:
        print("no entries in the period")
    for e in entries:
        ref = f" [{safe(e['ref'])}]" if e["ref"] else ""
        print(f"  {e['at'] or '-':<25} {safe(e['kind']):<12} {safe(e['summary'])}{ref}")
    return 0


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key, value


def _labels(labels: Any) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f"{safe(k)}={safe(v)}" for k, v in sorted(labels.items())) + "}"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))
