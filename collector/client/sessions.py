"""``aftercare sessions`` and ``aftercare session request|approve|deny|terminate``.

Engineers request access to a host; customer users of that host's customer approve
(optionally ending the window earlier), deny or terminate. The other session commands
live beside this module and register on the same ``session`` parser: ``show``
(``session_show``), ``replay`` and ``log`` (``recordings``), ``watch`` (``watch``);
logging in is ``aftercare ssh`` (``ssh``) with keys from ``aftercare keys`` (``keys``).
See docs/sessions.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from google.protobuf.json_format import MessageToDict

from collector.client import arguments
from collector.client.connection import Api
from collector.client.consent import ConsentError, add_approval_key_args, load_approver
from collector.client.output import iso, safe, with_times
from collector.client.paging import fetch_all
from common.approval_format import SessionSubject
from proto import api_pb2


def add_commands(commands: Any) -> Any:
    """Register ``session`` and ``sessions`` on the client's sub-command parser; return
    the ``session`` parser's actions, for the modules that add more."""
    p = commands.add_parser(
        "sessions", help="list remote sessions", description="Remote sessions, newest first."
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_list)

    session = commands.add_parser(
        "session",
        help="request, decide, inspect, replay or watch a remote session",
        description="Remote sessions (see also `aftercare ssh` and `aftercare keys`).",
    )
    sub = session.add_subparsers(dest="session_command", required=True, metavar="ACTION")
    request = sub.add_parser(
        "request",
        help="ask the customer for remote access (engineers)",
        description="Ask for remote access to a host; the window starts when a customer "
        "user approves.",
    )
    request.add_argument("--host", required=True, help="hostname or agent id")
    request.add_argument("--reason", required=True, help="why access is needed")
    request.add_argument(
        "--duration",
        type=arguments.duration_ms,
        default="1h",
        help="access window once approved (1h)",
    )
    request.add_argument(
        "--ticket", type=arguments.optional_ticket_id, default=0, help="the ticket it belongs to"
    )
    request.add_argument("--json", action="store_true", help="print machine-readable JSON")
    request.set_defaults(handler=_request)

    approve = _decision(sub, "approve", "approve a pending request (customer users)")
    approve.add_argument(
        "--until",
        type=arguments.until_ms,
        default="",
        help="end the window earlier: a duration from now (45m) or ISO time",
    )
    add_approval_key_args(approve)
    deny = _decision(sub, "deny", "deny a pending request (customer users)")
    deny.add_argument("--reason", required=True, help="why")
    _decision(sub, "terminate", "end an approved or active session now")
    return sub


def _decision(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("session_id", help="e.g. ses-0123456789ab")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_decide, decision=name)
    return p


def _request(client: Api, args: argparse.Namespace) -> int:
    info = client.call(
        "RequestSession",
        api_pb2.RequestSessionRequest(
            host=args.host,
            reason=args.reason,
            duration_ms=args.duration,
            ticket_id=args.ticket,
        ),
    )
    _print(info, args.json)
    return 0


def _decide(client: Api, args: argparse.Namespace) -> int:
    until: int = getattr(args, "until", 0)
    signed = b""
    if args.decision == "approve":
        try:
            signed = _sign_session(client, args, until)
        except ConsentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    info = client.call(
        "DecideSession",
        api_pb2.DecideSessionRequest(
            session_id=args.session_id,
            decision=args.decision,
            reason=getattr(args, "reason", "") or "",
            until_unix_ms=until,
            signed_approval=signed,
        ),
    )
    _print(info, args.json)
    return 0


def _sign_session(client: Api, args: argparse.Namespace, until_ms: int) -> bytes:
    """The signed approval of the session (b"": unsigned, where the host allows it).

    The window ends after the requested duration from now, or at ``--until`` if earlier.
    """
    session = client.call("GetSession", api_pb2.GetSessionRequest(session_id=args.session_id))
    info = session.session
    host = client.call("GetHost", api_pb2.GetHostRequest(host=info.agent_id))
    now = int(time.time() * 1000)
    approver = load_approver(
        client,
        args.approval_key,
        args.approval_cert,
        host.agent.approval_root,
        info.customer,
        now,
    )
    if approver is None:
        return b""
    end = now + info.requested_duration_ms
    if until_ms:
        end = min(end, until_ms)
    subject = SessionSubject(info.session_id, info.engineer, end)
    return approver.sign(agent_id=info.agent_id, subject=subject, issued_ms=now, expires_ms=end)


def _list(client: Api, args: argparse.Namespace) -> int:
    reply = fetch_all(client, "ListSessions", api_pb2.ListSessionsRequest(), "sessions")
    if args.json:
        print(json.dumps([session_dict(s) for s in reply.sessions], indent=2, ensure_ascii=False))
        return 0
    if not reply.sessions:
        print("no sessions (engineers ask for one with `aftercare session request`)")
        return 0
    print(
        f"{'SESSION':<17} {'STATE':<11} {'CUSTOMER':<12} {'HOST':<16} {'ENGINEER':<10} "
        f"{'WINDOW':<34} REASON"
    )
    for s in reply.sessions:
        window = f"until {iso(s.window_end_unix_ms)}" if s.window_end_unix_ms else ""
        print(
            f"{safe(s.session_id):<17} {safe(s.state):<11} {safe(s.customer):<12} "
            f"{safe(s.hostname):<16} {safe(s.engineer):<10} {window:<34} {safe(s.reason)}"
        )
    return 0


def _print(info: api_pb2.SessionInfo, as_json: bool) -> None:
    if as_json:
        print(json.dumps(session_dict(info), indent=2, ensure_ascii=False))
        return
    window = f", window until {iso(info.window_end_unix_ms)}" if info.window_end_unix_ms else ""
    print(
        f"{safe(info.session_id)}: {safe(info.state)} ({safe(info.hostname)}, "
        f"{safe(info.customer)}{window})"
    )


def session_dict(info: api_pb2.SessionInfo) -> dict[str, Any]:
    """A session as JSON: times as ISO 8601, every field present."""
    data = MessageToDict(
        info, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    with_times(data)
    data["ticket_id"] = info.ticket_id
    data["requested_duration_ms"] = info.requested_duration_ms
    return data
