"""``aftercare-agent``: enrol this host, run the agent, show its state, approve on the host.

Exit codes: 0 ok, 1 refused or failed (message on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from agent import __version__, audit_witness
from agent.config import load_config
from agent.durations import parse_duration
from agent.enroll import enroll
from agent.errors import AgentError
from agent.identity import load_identity
from agent.runner import SPOOL_FILE, run_agent
from agent.spool import SpoolStats, read_stats
from common.audit_checkpoint import CheckpointError, SignedCheckpoint

DEFAULT_STATE_DIR = Path("/var/lib/aftercare-agent")
EMPTY_SPOOL = SpoolStats(
    entries=0, bytes=0, oldest_unix_ms=None, next_sequence=1, dropped_batches_total=0
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result: int = args.handler(args)
        return result
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aftercare-agent",
        description="The aftercare agent: streams this host's health to the vendor's collector.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser(
        "enroll",
        help="join a collector with a one-time token",
        description="Join a collector: verify its CA against --ca-hash, generate a key "
        "locally and obtain a client certificate. Paste the join command your collector "
        "admin gave you (`aftercare-collector token create`).",
    )
    _state_dir_arg(p)
    p.add_argument("--collector", required=True, help="collector API address HOST:PORT")
    p.add_argument("--token", required=True, help="single-use join token")
    p.add_argument("--ca-hash", required=True, help="sha256:HEX of the collector's CA")
    p.add_argument("--hostname", default=socket.gethostname(), help="name shown to engineers")
    p.add_argument("--force", action="store_true", help="replace an existing enrolment")
    _json_arg(p)
    p.set_defaults(handler=_enroll)

    p = commands.add_parser(
        "run",
        help="collect and stream health metrics",
        description="Run the agent in the foreground until SIGTERM/SIGINT.",
    )
    _state_dir_arg(p)
    p.add_argument("--config", type=Path, default=None, help="agent TOML config file")
    p.set_defaults(handler=_run)

    p = commands.add_parser(
        "approve",
        help="approve one playbook run on this host",
        description="Approve a waiting playbook run by id (shown by `aftercare runs` or in the "
        "agent log). Counts where the host's policy accepts local approvals.",
    )
    _state_dir_arg(p)
    p.add_argument("run_id", help="the run to approve, e.g. run-0123456789abcdef")
    p.add_argument("--for", dest="valid_for", default="1h", help="approval validity (1h)")
    p.set_defaults(handler=_approve)

    p = commands.add_parser(
        "approve-session",
        help="approve a remote session on this host",
        description="Approve an engineer's pending remote-session request on this host "
        "(`aftercare-agent sessions` lists them). Counts where the host's policy says "
        '[sessions] approval = "local" or "either"; the running agent reports it to the '
        "collector. The access window starts now and lasts the requested duration, or "
        "until --until.",
    )
    _state_dir_arg(p)
    p.add_argument("session_id", help="the session to approve, e.g. ses-0123456789ab")
    p.add_argument(
        "--until",
        default="",
        help="end of the access window: a duration from now (45m, 2h) or an ISO time "
        "(2030-01-31T18:00); default: the requested duration",
    )
    _json_arg(p)
    p.set_defaults(handler=_approve_session)

    p = commands.add_parser(
        "sessions",
        help="list remote-session requests waiting for a decision",
        description="List the remote-session requests the collector told this host about "
        "that still wait for a decision: id, engineer, reason, requested duration, when the "
        "request expires, and whether it was approved on this host.",
    )
    _state_dir_arg(p)
    _json_arg(p)
    p.set_defaults(handler=_sessions)

    p = commands.add_parser(
        "status",
        help="show identity and spool state",
        description="Print this agent's identity and how much is waiting in its spool.",
    )
    _state_dir_arg(p)
    _json_arg(p)
    p.set_defaults(handler=_status)
    return parser


def _state_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"where identity and spool live ({DEFAULT_STATE_DIR})",
    )


def _json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _enroll(args: argparse.Namespace) -> int:
    identity = enroll(
        args.state_dir, args.collector, args.token, args.ca_hash, args.hostname, args.force
    )
    if args.json:
        _print_json(
            {
                "agent_id": identity.agent_id,
                "customer": identity.customer,
                "agent_endpoint": identity.agent_endpoint,
                "state_dir": str(args.state_dir),
            }
        )
    else:
        print(
            f"enrolled as {identity.agent_id} for customer {identity.customer}; "
            f"start it with: aftercare-agent run --state-dir {args.state_dir}"
        )
    return 0


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    logging.getLogger().setLevel(config.log.level.upper())
    load_identity(args.state_dir)  # fail fast with a clear message

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_agent(args.state_dir, config, stop)

    asyncio.run(run())
    return 0


def _approve(args: argparse.Namespace) -> int:
    from agent.playbook.approvals import APPROVALS_DIR, ApprovalBook

    until = time.time() + parse_duration(args.valid_for)
    by = f"os-user:{getpass.getuser()}"
    ApprovalBook(args.state_dir / APPROVALS_DIR).approve(args.run_id, until, by=by)
    print(
        f"approved {args.run_id} until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(until))}"
    )
    return 0


def _approve_session(args: argparse.Namespace) -> int:
    from agent.session.requests import SessionRequests, parse_until

    now = time.time()
    until = parse_until(args.until, now) if args.until else None
    by = os.environ.get("SUDO_USER") or getpass.getuser()
    approval = SessionRequests(args.state_dir).approve(args.session_id, until, by, now)
    if args.json:
        _print_json(
            {
                "session_id": args.session_id,
                "approved_by": by,
                "until": _iso(approval.until),
                "until_unix_ms": int(approval.until * 1000),
            }
        )
    else:
        print(
            f"approved {args.session_id} until {_iso(approval.until)}; the agent reports it to "
            "the collector within seconds"
        )
    return 0


def _sessions(args: argparse.Namespace) -> int:
    from agent.session.requests import SessionRequests

    now = time.time()
    book = SessionRequests(args.state_dir)
    rows: list[dict[str, Any]] = []
    for request in book.pending(now):
        approval = book.approvals.approval(request.session_id, now)
        rows.append(
            {
                "session_id": request.session_id,
                "engineer": request.engineer,
                "reason": request.reason,
                "duration_ms": request.duration_ms,
                "ticket_id": request.ticket_id,
                "pending_expires": _iso(request.pending_expires_ms / 1000),
                "approved_locally": approval is not None,
                "approved_until": _iso(approval.until) if approval else None,
            }
        )
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no remote-session requests are waiting for a decision on this host")
        return 0
    for row in rows:
        approved = f"approved until {row['approved_until']}" if row["approved_locally"] else ""
        ticket = f" ticket {row['ticket_id']}" if row["ticket_id"] else ""
        print(
            f"{row['session_id']}  {row['engineer']}  for {_duration(row['duration_ms'])}"
            f"{ticket}  expires {row['pending_expires']}  {approved}".rstrip()
        )
        print(f"    {row['reason']}")
    return 0


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


def _duration(milliseconds: int) -> str:
    minutes = milliseconds // 60_000
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def _status(args: argparse.Namespace) -> int:
    identity = load_identity(args.state_dir)
    _, not_after = identity.cert_validity()
    spool_path = args.state_dir / SPOOL_FILE
    stats = read_stats(spool_path) if spool_path.exists() else EMPTY_SPOOL
    info: dict[str, Any] = {
        "agent_id": identity.agent_id,
        "customer": identity.customer,
        "collector": identity.agent_endpoint,
        "certificate_not_after": not_after.isoformat(),
        "spool": {
            "entries": stats.entries,
            "bytes": stats.bytes,
            "oldest_unix_ms": stats.oldest_unix_ms,
            "next_sequence": stats.next_sequence,
            "dropped_batches_total": stats.dropped_batches_total,
        },
        "audit_checkpoint": audit_witness.describe(_held_checkpoint(args.state_dir)),
    }
    if args.json:
        _print_json(info)
    else:
        print(f"agent {identity.agent_id}  customer {identity.customer}")
        print(
            f"collector {identity.agent_endpoint}  "
            f"certificate valid until {not_after:%Y-%m-%d %H:%M}Z"
        )
        print(
            f"spool: {stats.entries} waiting ({stats.bytes} bytes), "
            f"{stats.dropped_batches_total} dropped, next sequence {stats.next_sequence}"
        )
        held = info["audit_checkpoint"]
        if held is None:
            print("audit checkpoint: none witnessed yet")
        else:
            print(
                f"audit checkpoint: {held['count']} entries, head {held['head'][:16]}..., "
                f"signed {held['at']} by {held['key']}"
            )
    return 0


def _held_checkpoint(state_dir: Path) -> SignedCheckpoint | None:
    try:
        return audit_witness.load_held(state_dir)
    except CheckpointError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        return None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
