"""``aftercare session watch ID``: follow a session's terminal live, read-only.

Writes the terminal output of every part to stdout as it arrives (what was shown so
far first); never sends input. Ends with the session ("session … ended" on stderr,
exit 0), when the collector closes the stream (exit 0; an error status exits 1), or
on Ctrl-C (exit 0). ``--json`` prints one JSON object per event instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from collector.client.connection import Api
from proto import api_pb2


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
    stream = client.stream("WatchSession", api_pb2.GetSessionRequest(session_id=sid))
    try:
        for event in stream:
            if args.json:
                print(json.dumps(event_dict(event), ensure_ascii=False), flush=True)
            elif event.type == "o":
                sys.stdout.write(event.data)
                sys.stdout.flush()
            if event.type == "end":
                if not args.json:
                    why = f": {event.data}" if event.data else ""
                    print(f"{_fresh_line()}session {sid} ended{why}", file=sys.stderr)
                stream.cancel()
                return 0
    except KeyboardInterrupt:
        stream.cancel()
        return 0
    if not args.json:
        print(f"{_fresh_line()}the collector closed the watch of {sid}", file=sys.stderr)
    return 0


def _fresh_line() -> str:
    """Start stderr's message on a new line when it shares the terminal with the output."""
    return "\r\n" if sys.stdout.isatty() else ""


def event_dict(event: api_pb2.WatchEvent) -> dict[str, Any]:
    """One watch event as JSON."""
    return {"part": event.part, "time": event.time, "type": event.type, "data": event.data}
