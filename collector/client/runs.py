"""``aftercare playbooks ...``, ``aftercare run ...`` and ``aftercare runs``: signed diagnostics.

Engineers list playbooks and start runs (optionally on a ticket, optionally
following the output live); customers approve runs their policy holds for approval.
Vendor-side commands (``keygen``, ``sign``, ``lint``) work on files and need no collector.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from google.protobuf.json_format import MessageToDict

from collector.client.connection import ApiClient
from collector.client.output import iso
from proto import api_pb2

RUN_ACTIONS = ("show", "approve")


def add_commands(commands: Any) -> None:
    """Register ``playbooks``, ``run`` and ``runs`` on the client's sub-command parser."""
    p = commands.add_parser(
        "run",
        help="run a signed playbook on a host, or show/approve a run",
        description="`aftercare run PLAYBOOK --host H [--param k=v ...] [--ticket N] [--follow]` "
        "starts a run; `aftercare run show RUN_ID` shows one; `aftercare run approve RUN_ID` "
        "approves it (customer users).",
    )
    p.add_argument("target", help="playbook name, or show / approve")
    p.add_argument("run_id", nargs="?", help="run id (for show / approve)")
    p.add_argument("--host", default="", help="hostname or agent id")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--ticket", type=int, default=0, help="attach the output to this ticket")
    p.add_argument("--follow", action="store_true", help="stream the output until it finishes")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_run)

    p = commands.add_parser(
        "runs", help="list playbook runs", description="List runs, newest first."
    )
    p.add_argument("--host", default="", help="only this host")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_runs)


def _run(client: ApiClient, args: argparse.Namespace) -> int:
    if args.target in RUN_ACTIONS:
        if not args.run_id:
            print(f"error: `aftercare run {args.target}` needs a RUN_ID", file=sys.stderr)
            return 2
        if args.target == "show":
            return _show(client, args.run_id, args.json)
        info = client.call("ApproveRun", api_pb2.ApproveRunRequest(run_id=args.run_id))
        _print_info(info, args.json)
        return 0
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
            playbook=args.target, host=args.host, params=params, ticket_id=args.ticket
        ),
    )
    if not args.follow:
        _print_info(info, args.json)
        return 0 if info.state != "undeliverable" else 1
    return _follow(client, info.run_id, args.json)


def _follow(client: ApiClient, run_id: str, as_json: bool) -> int:
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
                sys.stdout.write(event.output.data.decode("utf-8", "replace"))
                sys.stdout.flush()
        else:
            final = event.info.state
            if as_json:
                print(json.dumps(_info_dict(event.info)))
            else:
                print(
                    f"[{event.info.run_id}: {event.info.state}"
                    f"{' - ' + event.info.message if event.info.message else ''}]",
                    file=sys.stderr,
                )
    return 0 if final == "ok" else 1


def _show(client: ApiClient, run_id: str, as_json: bool) -> int:
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
    for step in result.get("steps", []):
        print(
            f"  step {step['name']:<24} {step['status']:<10} exit {step['exit_code']} "
            f"{step['duration_ms']} ms{' (truncated)' if step['truncated'] else ''}"
            f"{' ' + step['error'] if step['error'] else ''}"
        )
    if result.get("redactions"):
        print(f"  {result['redactions']} secrets redacted on the host")
    print(detail.output.decode("utf-8", "replace"), end="")
    return 0


def _runs(client: ApiClient, args: argparse.Namespace) -> int:
    reply = client.call("ListRuns", api_pb2.ListRunsRequest(host=args.host, limit=args.limit))
    if args.json:
        print(json.dumps([_info_dict(r) for r in reply.runs], indent=2))
        return 0
    for run in reply.runs:
        print(
            f"{run.run_id:<22} {run.playbook:<20} {run.hostname:<16} {run.state:<16} "
            f"{iso(run.requested_unix_ms)}  {run.requested_by}"
        )
    return 0


def _print_info(info: api_pb2.RunInfo, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_info_dict(info), indent=2))
    else:
        print(
            f"{info.run_id}: {info.playbook} {info.version} on {info.hostname} - {info.state}"
            f"{' (' + info.message + ')' if info.message else ''}"
        )


def _info_dict(info: api_pb2.RunInfo) -> dict[str, Any]:
    data = MessageToDict(info, preserving_proto_field_name=True)
    data["requested"] = iso(info.requested_unix_ms)
    data["finished"] = iso(info.finished_unix_ms)
    data.pop("requested_unix_ms", None)
    data.pop("finished_unix_ms", None)
    data["ticket_id"] = info.ticket_id
    return data
