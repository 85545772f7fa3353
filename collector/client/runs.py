"""``aftercare playbooks ...``, ``aftercare run ...`` and ``aftercare runs``: signed diagnostics.

Engineers list playbooks and start runs (optionally on a ticket, optionally
following the output live); customers approve runs their policy holds for approval.
Vendor-side commands (``keygen``, ``sign``, ``lint``) work on files and need no collector.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from google.protobuf.json_format import MessageToDict

from collector.client import arguments
from collector.client.connection import Api, ApiClient
from collector.client.consent import ConsentError, add_approval_key_args, load_approver
from collector.client.output import iso, raw_stdout, safe, safe_block
from collector.client.paging import fetch_all
from common.approval_format import RunSubject
from proto import api_pb2

RUN_ACTIONS = ("show", "approve", "deny")
RUN_APPROVAL_MS = 3600 * 1000  # a signed run approval expires after an hour


def add_commands(commands: Any) -> None:
    """Register ``playbooks``, ``run`` and ``runs`` on the client's sub-command parser."""
    p = commands.add_parser(
        "run",
        help="run a signed playbook on a host, or show/approve/deny a run",
        description="`aftercare run PLAYBOOK --host H [--param k=v ...] [--ticket N] "
        "[--reason TEXT] [--follow]` starts a run; `aftercare run show RUN_ID` shows one; "
        "`aftercare run approve RUN_ID [--yes]` shows exactly what is approved, asks, signs "
        "and approves it; `aftercare run deny RUN_ID --reason TEXT` denies it (customer users).",
    )
    p.add_argument("target", help="playbook name, or show / approve / deny")
    p.add_argument("run_id", nargs="?", help="run id (for show / approve / deny)")
    p.add_argument("--host", default="", help="hostname or agent id")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument(
        "--ticket",
        type=arguments.optional_ticket_id,
        default=0,
        help="attach the output to this ticket",
    )
    p.add_argument(
        "--reason",
        default="",
        help="starting: why you run it (audited); deny: why you deny it (required)",
    )
    p.add_argument("--follow", action="store_true", help="stream the output until it finishes")
    p.add_argument("--yes", action="store_true", help="approve: do not ask for confirmation")
    p.add_argument(
        "--raw",
        action="store_true",
        help="show / --follow: write the output as the host produced it, control characters "
        "included (default: escaped as \\x1b etc., so it cannot drive your terminal)",
    )
    add_approval_key_args(p)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_run)

    p = commands.add_parser(
        "runs", help="list playbook runs", description="List runs, newest first."
    )
    p.add_argument("--host", default="", help="only this host")
    p.add_argument("--limit", type=arguments.count, default=50)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_runs)


def _run(client: ApiClient, args: argparse.Namespace) -> int:
    if args.target in RUN_ACTIONS:
        if not args.run_id:
            print(f"error: `aftercare run {args.target}` needs a RUN_ID", file=sys.stderr)
            return 2
        if args.target == "show":
            return _show(client, args.run_id, args.json, args.raw)
        if args.target == "deny":
            return _deny(client, args)
        return _approve(client, args)
    if not args.host:
        print("error: name the host with --host", file=sys.stderr)
        return 2
    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"error: --param {item!r}: use NAME=VALUE", file=sys.stderr)
            return 2
        params[name] = value
    info = client.call(
        "StartRun",
        api_pb2.StartRunRequest(
            playbook=args.target,
            host=args.host,
            params=params,
            ticket_id=args.ticket,
            reason=args.reason,
        ),
    )
    if not args.follow:
        _print_info(info, args.json)
        return 0 if info.state != "undeliverable" else 1
    return _follow(client, info.run_id, args.json, args.raw)


def _approve(client: Api, args: argparse.Namespace) -> int:
    """Show what is approved, confirm, sign (where a key or the host asks for it), send."""
    run = client.call("GetRun", api_pb2.GetRunRequest(run_id=args.run_id)).run
    host = client.call("GetHost", api_pb2.GetHostRequest(host=run.agent_id)).agent
    out = sys.stderr if args.json else sys.stdout
    _describe_approval(run, host.approval_root, out)
    if not args.yes:
        if not sys.stdin.isatty():
            print(
                "error: not approved: confirmation needs a terminal; check the above and "
                "pass --yes",
                file=sys.stderr,
            )
            return 1
        answer = input(f"approve run {safe(run.run_id)}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not approved", file=sys.stderr)
            return 1
    now = int(time.time() * 1000)
    try:
        approver = load_approver(
            client, args.approval_key, args.approval_cert, host.approval_root, run.customer, now
        )
    except ConsentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    signed = b""
    if approver is not None:
        subject = RunSubject(
            run_id=run.run_id,
            playbook=run.playbook,
            version=run.version,
            digest=run.playbook_digest,
            params=dict(run.bound_params),
        )
        signed = approver.sign(
            agent_id=run.agent_id, subject=subject, issued_ms=now, expires_ms=now + RUN_APPROVAL_MS
        )
    info = client.call(
        "ApproveRun", api_pb2.ApproveRunRequest(run_id=run.run_id, signed_approval=signed)
    )
    _print_info(info, args.json)
    return 0


def _deny(client: Api, args: argparse.Namespace) -> int:
    """Deny a run waiting for approval, with the reason given."""
    if not args.reason.strip():
        print("error: `aftercare run deny` needs --reason TEXT (why)", file=sys.stderr)
        return 2
    info = client.call("DenyRun", api_pb2.DenyRunRequest(run_id=args.run_id, reason=args.reason))
    _print_info(info, args.json)
    return 0


def _describe_approval(run: api_pb2.RunInfo, root: str, out: TextIO) -> None:
    print(
        f"run {safe(run.run_id)} on {safe(run.hostname)} ({safe(run.agent_id)}, "
        f"customer {safe(run.customer)})",
        file=out,
    )
    print(f"  playbook   {safe(run.playbook)} {safe(run.version)} ({safe(run.mode)})", file=out)
    print(f"  digest     {safe(run.playbook_digest or '-')}", file=out)
    print(f"  requested  by {safe(run.requested_by)} at {iso(run.requested_unix_ms)}", file=out)
    print(f"  reason     {safe(run.reason or '-')}", file=out)
    if not run.bound_params and not run.params:
        print("  parameters none", file=out)
    for name in sorted(set(run.bound_params) | set(run.params)):
        shown = run.params.get(name, "")
        bound = run.bound_params.get(name, "")
        extra = f"  (secret, bound as {safe(bound)})" if bound and bound != shown else ""
        print(f"  param      {safe(name)} = {safe(shown)}{extra}", file=out)
    how = (
        f"signed for the host's approval root {safe(root)}"
        if root
        else "host pins no approval root"
    )
    print(f"  approval   {how}", file=out)


def _follow(client: ApiClient, run_id: str, as_json: bool, raw: bool = False) -> int:
    final = "pending"
    stream = client.stub.FollowRun(api_pb2.GetRunRequest(run_id=run_id), metadata=client.metadata)
    for event in stream:
        if event.WhichOneof("kind") == "output":
            if as_json:
                print(
                    json.dumps(
                        {
                            "step": event.output.step,
                            "stream": event.output.stream,
                            "data": event.output.data.decode("utf-8", "replace"),
                        }
                    )
                )
            else:
                _write_output(event.output.data, raw)
        else:
            final = event.info.state
            if as_json:
                print(json.dumps(_info_dict(event.info)))
            else:
                print(
                    f"[{safe(event.info.run_id)}: {safe(event.info.state)}"
                    f"{' - ' + safe(event.info.message) if event.info.message else ''}]",
                    file=sys.stderr,
                )
    return 0 if final == "ok" else 1


def _show(client: ApiClient, run_id: str, as_json: bool, raw: bool = False) -> int:
    detail = client.call("GetRun", api_pb2.GetRunRequest(run_id=run_id))
    result = json.loads(detail.result_json or "{}")
    if as_json:
        print(
            json.dumps(
                {
                    "run": _info_dict(detail.run),
                    "result": result,
                    "output": detail.output.decode("utf-8", "replace"),
                    "output_truncated": detail.output_truncated,
                },
                indent=2,
            )
        )
        return 0
    _print_info(detail.run, False)
    print(f"  reason {safe(detail.run.reason or '-')}")
    for step in result.get("steps", []):
        print(
            f"  step {safe(step['name']):<24} {safe(step['status']):<10} "
            f"exit {safe(step['exit_code'])} {safe(step['duration_ms'])} ms"
            f"{' (truncated)' if step['truncated'] else ''}"
            f"{' ' + safe(step['error']) if step['error'] else ''}"
        )
    if result.get("redactions"):
        print(f"  {safe(result['redactions'])} secrets redacted on the host")
    _write_output(detail.output, raw)
    return 0


def _write_output(data: bytes, raw: bool) -> None:
    """Playbook output: escaped (``safe_block``: newlines and tabs kept) unless ``raw``,
    then the bytes exactly as the host sent them."""
    if raw:
        out = raw_stdout()
        out.flush()
        out.buffer.write(data)
        out.buffer.flush()
        return
    sys.stdout.write(safe_block(data.decode("utf-8", "replace")))
    sys.stdout.flush()


def _runs(client: ApiClient, args: argparse.Namespace) -> int:
    reply = fetch_all(
        client,
        "ListRuns",
        api_pb2.ListRunsRequest(host=args.host, limit=min(max(args.limit, 1), 500)),
        "runs",
        limit=max(args.limit, 1),
    )
    if args.json:
        print(json.dumps([_info_dict(r) for r in reply.runs], indent=2))
        return 0
    for run in reply.runs:
        print(
            f"{safe(run.run_id):<22} {safe(run.playbook):<20} {safe(run.hostname):<16} "
            f"{safe(run.state):<16} {iso(run.requested_unix_ms)}  {safe(run.requested_by)}"
            f"{'  ' + safe(run.reason) if run.reason else ''}"
        )
    return 0


def _print_info(info: api_pb2.RunInfo, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_info_dict(info), indent=2))
    else:
        print(
            f"{safe(info.run_id)}: {safe(info.playbook)} {safe(info.version)} on "
            f"{safe(info.hostname)} - {safe(info.state)}"
            f"{' (' + safe(info.message) + ')' if info.message else ''}"
        )


def _info_dict(info: api_pb2.RunInfo) -> dict[str, Any]:
    data = MessageToDict(info, preserving_proto_field_name=True)
    data["requested"] = iso(info.requested_unix_ms)
    data["finished"] = iso(info.finished_unix_ms)
    data.pop("requested_unix_ms", None)
    data.pop("finished_unix_ms", None)
    data["ticket_id"] = info.ticket_id
    data["reason"] = info.reason
    return data
