"""``aftercare-agent``: enrol this host, run the agent, show its state, approve on the host.

Exit codes: 0 ok, 1 refused or failed (message on stderr), 2 usage error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from agent import __version__, audit_witness
from agent.config import load_config
from agent.consent.root import check_root, pin_root
from agent.errors import AgentError
from agent.identity import load_identity
from agent.main_loop import SPOOL_FILE, run_agent
from agent.spool import SpoolStats, read_stats
from common.audit_checkpoint import CheckpointError, SignedCheckpoint
from common.durations import parse_duration
from common.safe_text import guarded_main, safe

if TYPE_CHECKING:
    import argparse

    from agent.playbook.waiting import WaitingRun

DEFAULT_STATE_DIR = Path("/var/lib/aftercare-agent")
EMPTY_SPOOL = SpoolStats(
    entries=0, bytes=0, oldest_unix_ms=None, next_sequence=1, dropped_batches_total=0
)


def main(argv: list[str] | None = None) -> int:
    """Run one command. What came from the collector (engineers' names, reasons, run
    descriptions) is shown escaped (``common.safe_text``); ``--json`` keeps the
    original, and ``run`` writes its log as before."""
    return guarded_main(
        lambda: parse_args(argv),
        _run_handler,
        lambda args: args.handler is _run or bool(getattr(args, "json", False)),
        _configure_logging,
    )


def _configure_logging(args: argparse.Namespace) -> None:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _run_handler(args: argparse.Namespace) -> int:
    try:
        result: int = args.handler(args)
        return result
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # malformed option values (addresses, durations)
        print(f"error: {exc}", file=sys.stderr)
        return 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``sys.argv[1:]`` by default), as ``build_parser()`` reads it.

    ``run`` with nothing but its own options, spelled out in full, is read here
    without argparse: the module and the parser for every command would otherwise
    stay in the running agent's memory (about 0.8 MiB, issue 17). Anything else -
    ``--help``, an abbreviation, a mistake - goes to argparse, which explains it.
    """
    args = _plain_run_args(sys.argv[1:] if argv is None else argv)
    return args if args is not None else build_parser().parse_args(argv)


_RUN_OPTIONS = {"--state-dir": "state_dir", "--config": "config"}


def _plain_run_args(argv: list[str]) -> argparse.Namespace | None:
    """``[--log-level L] run [--state-dir D] [--config C]`` (each option as ``--opt V`` or
    ``--opt=V``, repeatable, the last one counting) as argparse would read it, or None
    for any other command line."""
    values: dict[str, Any] = {
        "log_level": "info",
        "command": "run",
        "state_dir": DEFAULT_STATE_DIR,
        "config": None,
        "handler": _run,
    }
    words = list(argv)
    options = {"--log-level": "log_level"}
    while words and words[0] != "run":
        if not _take_option(words, options, values):
            return None
    if not words:
        return None
    words.pop(0)
    while words:
        if not _take_option(words, _RUN_OPTIONS, values):
            return None
    for key in _RUN_OPTIONS.values():
        if isinstance(values[key], str):
            values[key] = Path(values[key])
    return cast("argparse.Namespace", SimpleNamespace(**values))


def _take_option(words: list[str], options: dict[str, str], values: dict[str, Any]) -> bool:
    """Move the option at ``words[0]`` (one of ``options``) and its value into ``values``."""
    name, equals, value = words[0].partition("=")
    if name not in options:
        return False
    if not equals:
        if len(words) < 2 or words[1].startswith("-"):
            return False
        value = words[1]
        del words[1]
    del words[0]
    values[options[name]] = value
    return True


def build_parser() -> argparse.ArgumentParser:
    import argparse  # not for a plain `run` (parse_args): it would stay resident

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
    p.add_argument(
        "--proxy",
        default="",
        metavar="URL",
        help="reach the collector through this HTTP proxy, http://[USER:PASSWORD@]HOST:PORT "
        "(default: the https_proxy/grpc_proxy environment variables, honouring no_proxy)",
    )
    p.add_argument(
        "--approver-root",
        default="",
        metavar="sha256:HEX",
        help="pin the customer's approval root (printed by `aftercare approvers init`): "
        "sessions and approval-needing playbooks then need approvals signed under it",
    )
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
        description="Show a playbook run waiting for approval on this host (playbook, "
        "version, mode, file digest, every parameter) and approve exactly that. Counts "
        'where the host\'s policy accepts local approvals (approval = "local" or "either"); '
        "a run with another playbook, version or parameters under the same id does not "
        "count.",
    )
    _state_dir_arg(p)
    p.add_argument("run_id", help="the run to approve, e.g. run-0123456789abcdef")
    p.add_argument("--for", dest="valid_for", default="1h", help="approval validity (1h)")
    p.add_argument("--yes", action="store_true", help="approve without asking")
    _json_arg(p)
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
        help="show identity, spool and approval state",
        description="Print this agent's identity, how much is waiting in its spool, and "
        "the customer approval root it pins.",
    )
    _state_dir_arg(p)
    p.add_argument("--config", type=Path, default=None, help="agent TOML config file")
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
    from agent.enroll import enroll

    if args.approver_root:  # malformed: refuse before the token is spent
        check_root(args.approver_root)
    identity = enroll(
        args.state_dir,
        args.collector,
        args.token,
        args.ca_hash,
        args.hostname,
        args.force,
        proxy=args.proxy,
    )
    root = pin_root(args.state_dir, args.approver_root) if args.approver_root else ""
    if args.json:
        _print_json(
            {
                "agent_id": identity.agent_id,
                "customer": identity.customer,
                "agent_endpoint": identity.agent_endpoint,
                "state_dir": str(args.state_dir),
                "approval_root": root,
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
    from agent.playbook.waiting import WaitingRuns

    run = WaitingRuns(args.state_dir).get(args.run_id)
    if run is None:
        raise AgentError(
            f"no run {args.run_id} waits for approval on this host; is the agent running? "
            "(`aftercare runs` lists runs and their state)"
        )
    if not args.json:
        _show_waiting_run(run)
    if not args.yes and not _confirm(f"approve run {safe(run.run_id)} of {safe(run.playbook)}?"):
        print("not approved", file=sys.stderr)
        return 1
    until = time.time() + parse_duration(args.valid_for)
    by = f"os-user:{os.environ.get('SUDO_USER') or _os_user()}"
    book = ApprovalBook(args.state_dir / APPROVALS_DIR)
    book.approve(run.run_id, until, by=by, binding=run.binding)
    if args.json:
        _print_json({**asdict(run), "approved_by": by, "until": _iso(until)})
    else:
        print(f"approved {run.run_id} until {_iso(until)}")
    return 0


def _show_waiting_run(run: WaitingRun) -> None:
    print(f"run        {safe(run.run_id)}  (requested by {safe(run.requested_by or '?')})")
    print(f"playbook   {safe(run.playbook)} {safe(run.version)}  [{safe(run.mode)}]")
    print(f"           {safe(run.description.strip())}")
    print(f"digest     {safe(run.digest)}")
    for name, value in sorted(run.params.items()):
        print(f"param      {safe(name)} = {safe(value)}")
    if run.ticket_id:
        print(f"ticket     {safe(run.ticket_id)}")


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise AgentError("not approved: no terminal to ask on; pass --yes to approve")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _approve_session(args: argparse.Namespace) -> int:
    from agent.session.requests import SessionRequests, parse_until

    now = time.time()
    until = parse_until(args.until, now) if args.until else None
    by = os.environ.get("SUDO_USER") or _os_user()
    approval = SessionRequests(args.state_dir).approve(args.session_id, until, by, now)
    if args.json:
        _print_json(
            {
                "session_id": args.session_id,
                "engineer": approval.binding,
                "approved_by": by,
                "until": _iso(approval.until),
                "until_unix_ms": int(approval.until * 1000),
            }
        )
    else:
        engineer = safe(approval.binding)
        print(
            f"approved {safe(args.session_id)} for engineer {engineer} until "
            f"{_iso(approval.until)}; only {engineer} may log in with it. The agent "
            "reports it to the collector within seconds"
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
            f"{safe(row['session_id'])}  {safe(row['engineer'])}  for "
            f"{_duration(row['duration_ms'])}{ticket}  expires {row['pending_expires']}  "
            f"{approved}".rstrip()
        )
        print(f"    {safe(row['reason'])}")
    return 0


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


def _duration(milliseconds: int) -> str:
    minutes = milliseconds // 60_000
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def _status(args: argparse.Namespace) -> int:
    from agent.consent.memory import ConsentMemory
    from agent.consent.root import pinned_root

    identity = load_identity(args.state_dir)
    config = load_config(args.config)
    root = pinned_root(args.state_dir, config.approvals)
    revoked = sorted(ConsentMemory(args.state_dir).revoked_keys())
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
        "approval_root": root,
        "revoked_approver_keys": revoked,
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
        print(
            f"approval root: {root} ({len(revoked)} approver keys revoked)"
            if root
            else "approval root: none pinned (sessions and approval-needing runs are refused "
            'unless the policy says approval = "local" or "collector")'
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


def _os_user() -> str:
    """The login name (``getpass`` is imported here: the running agent never needs it)."""
    import getpass

    return getpass.getuser()


if __name__ == "__main__":
    sys.exit(main())
