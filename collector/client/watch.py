"""``aftercare session watch ID``: follow a session's terminal live, read-only.

Writes the terminal output of every part to stdout as it arrives (what was shown so
far first), without the sequences that act beyond the screen
(``common.safe_text.terminal_display``); never sends input. A session nobody has
logged in to yet is said to be waiting (for approval, or for the engineer) on stderr.
Ends with the session ("session … ended" on stderr, exit 0), when the collector
closes the stream (exit 0; an error status exits 1), or on Ctrl-C (exit 0). ``--json``
prints one JSON object per event instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from collector.client.connection import Api
from collector.client.output import raw_stdout, safe
from common.safe_text import terminal_display
from proto import api_pb2

_WAITING = {
    "pending": "is waiting for a customer to approve it",
    "approved": "is approved; nobody has logged in yet",
}


def add_actions(sub: Any) -> None:
    """Register ``watch`` on the ``session`` parser's actions."""
    p = sub.add_parser(
        "watch",
        help="watch a session's terminal live (read-only)",
        description="Stream the live terminal of a session, read-only: what was shown so far, "
        "then every new output until the session ends. Ctrl-C stops watching (the session "
        "goes on; end it with `aftercare session terminate ID`).",
    )
    p.add_argument("session_id", help="e.g. ses-0123456789ab")
    p.add_argument("--json", action="store_true", help="print one JSON object per event")
    p.set_defaults(handler=_watch)


def _watch(client: Api, args: argparse.Namespace) -> int:
    sid = args.session_id
    detail = client.call("GetSession", api_pb2.GetSessionRequest(session_id=sid))
    waiting = _WAITING.get(detail.session.state)
    if waiting:
        print(
            f"{safe(sid)} {waiting}: watching from when the engineer logs in "
            "(Ctrl-C stops watching)",
            file=sys.stderr,
            flush=True,
        )
    stream = client.stream("WatchSession", api_pb2.GetSessionRequest(session_id=sid))
    try:
        for event in stream:
            if args.json:
                print(json.dumps(event_dict(event), ensure_ascii=False), flush=True)
            elif event.type == "o":
                out = raw_stdout()
                out.write(terminal_display(event.data))
                out.flush()
            if event.type == "end":
                if not args.json:
                    why = f": {safe(event.data)}" if event.data else ""
                    print(f"{_fresh_line()}session {safe(sid)} ended{why}", file=sys.stderr)
                stream.cancel()
                return 0
    except KeyboardInterrupt:
        stream.cancel()
        return 0
    if not args.json:
        print(f"{_fresh_line()}the collector closed the watch of {safe(sid)}", file=sys.stderr)
    return 0


def _fresh_line() -> str:
    """Start stderr's message on a new line when it shares the terminal with the output."""
    return "\r\n" if sys.stdout.isatty() else ""


def event_dict(event: api_pb2.WatchEvent) -> dict[str, Any]:
    """One watch event as JSON."""
    return {"part": event.part, "time": event.time, "type": event.type, "data": event.data}
