"""``aftercare-collector outbox``: the notification outbox, to see what is pending,
failing (with the last error and the next attempt) or sent (docs/notifications-outbox.md).

Reads the store of ``--data-dir`` directly (like ``audit list``); the targets are shown
in their safe form (the label, never a webhook URL that may hold a secret).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from collector.datadir import DataDir
from collector.outbox import OutboxEntry
from common.safe_text import safe

STATE_CHOICES = ("pending", "sent", "cancelled", "all")


def add_command(commands: Any) -> None:
    """Register ``outbox`` on the collector's command parser."""
    p = commands.add_parser(
        "outbox",
        help="list stored notifications: pending, failing, sent or cancelled",
        description="List the notification outbox, oldest first: each notice's kind, "
        "recipient, delivery id, attempts, last error and next attempt. A notice that "
        "keeps failing stays pending (never dropped) and is retried with backoff. "
        "docs/notifications-outbox.md",
    )
    p.add_argument("--data-dir", type=Path, required=True, help="the collector's data directory")
    p.add_argument(
        "--state",
        choices=STATE_CHOICES,
        default="pending",
        help="which notices to list (default: pending)",
    )
    p.add_argument(
        "--failing", action="store_true", help="only pending notices that failed at least once"
    )
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_outbox)


def _outbox(args: argparse.Namespace) -> int:
    data_dir = DataDir(args.data_dir)
    states = None if args.state == "all" else (args.state,)
    store = data_dir.open_store()
    try:
        entries = store.list_outbox(states, args.limit, args.failing)
        counts = store.outbox_counts()
    finally:
        store.close()
    if args.json:
        report = {"counts": counts, "notices": [_as_json(e) for e in entries]}
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    print(
        f"{counts['pending']} pending ({counts['failing']} failing), {counts['sent']} sent, "
        f"{counts['cancelled']} cancelled"
    )
    for entry in entries:
        print(_line(entry))
    return 0


def _as_json(entry: OutboxEntry) -> dict[str, Any]:
    notice = entry.notice
    return {
        "id": entry.id,
        "delivery_id": entry.delivery_id,
        "kind": notice.kind,
        "dedup": notice.dedup,
        "channel": notice.channel,
        "target": notice.target_label,
        "subject": notice.subject,
        "ticket_id": notice.ticket_id,
        "state": entry.state,
        "attempts": entry.attempts,
        "created_ms": entry.created_ms,
        "next_attempt_ms": entry.next_attempt_ms,
        "sent_ms": entry.sent_ms,
        "last_error": entry.last_error,
    }


def _line(entry: OutboxEntry) -> str:
    notice = entry.notice
    if entry.state == "sent":
        status = f"sent {_iso(entry.sent_ms or 0)}"
    elif entry.state == "cancelled":
        status = f"cancelled {_iso(entry.sent_ms or 0)}: {safe(entry.last_error)}"
    elif entry.attempts:
        status = (
            f"FAILING x{entry.attempts}, next {_iso(entry.next_attempt_ms)}: "
            f"{safe(entry.last_error)}"
        )
    else:
        status = f"pending since {_iso(entry.created_ms)}"
    ticket = f" ticket #{notice.ticket_id}" if notice.ticket_id is not None else ""
    return (
        f"{entry.id:>6} {notice.kind}{ticket} {notice.channel} "
        f"{safe(notice.target_label or '-')} [{entry.delivery_id}] {status}"
    )


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")
