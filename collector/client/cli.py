"""``aftercare``: hosts and their health.

Engineers and admins see all customers; customer users see their own.

Connection: ``--collector``/``--token`` (or ``--token-file``)/``--ca-file`` or
AFTERCARE_COLLECTOR, AFTERCARE_TOKEN (or AFTERCARE_TOKEN_FILE), AFTERCARE_CA_FILE.
Every command has ``--json``. Exit codes: 0 ok, 1 refused or failed, 2 usage error,
141 the reader of the output went away (``| head``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from collector import __version__
from collector.client import (
    approvers,
    desk,
    history,
    inspections,
    keys,
    playbooks_cli,
    recordings,
    runs,
    session_show,
    sessions,
    ssh,
    tickets,
    watch,
)
from collector.client.connection import ApiClient, ClientSettings, ClientSetupError
from collector.client.output import iso, safe
from collector.client.paging import fetch_all
from common.safe_text import guarded_main
from proto import api_pb2

STALE_AFTER_SECONDS = 120


def main(argv: list[str] | None = None) -> int:
    """Run one command. What others wrote (hostnames, titles, reasons, ...) reaches the
    terminal escaped (``common.safe_text``); ``--json`` output keeps the original. A
    reader that goes away (``| head``) ends the command quietly with 141; Ctrl-C 130."""
    return guarded_main(lambda: parse_args(build_parser(), argv), _dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    if getattr(args, "local", False):  # vendor tools: no collector needed
        local_result: int = args.handler(None, args)
        return local_result
    try:
        settings = ClientSettings.resolve(args.collector, args.token, args.ca_file, args.token_file)
        client = ApiClient(settings)
    except ClientSetupError as exc:
        if getattr(args, "client_optional", False):  # works without a collector too
            optional_result: int = args.handler(None, args)
            return optional_result
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result: int = args.handler(client, args)
        return result
    except grpc.RpcError as exc:
        print(f"error: {_describe_rpc_error(exc, args.collector)}", file=sys.stderr)
        return 1
    except UnicodeEncodeError as exc:  # undecodable bytes in an argument, for the API
        print(
            f"error: {safe(exc.object[exc.start : exc.end])} in an argument is not valid "
            "UTF-8 text; the collector takes UTF-8 only",
            file=sys.stderr,
        )
        return 2
    finally:
        client.close()


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line. Commands marked ``passthrough`` (``ssh``) get the words
    they do not define (a remote command, or anything after ``--``) as ``extra_args``;
    any other command refuses them, as ``parse_args`` does."""
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if rest[:1] == ["--"]:
        rest = rest[1:]
    args.extra_args = rest
    return args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aftercare",
        description="Query the aftercare collector: hosts, health, gaps.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--collector", help="collector API address HOST:PORT (AFTERCARE_COLLECTOR)")
    parser.add_argument("--token", help="your API token (AFTERCARE_TOKEN)")
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="read your API token from FILE (AFTERCARE_TOKEN_FILE)",
    )
    parser.add_argument("--ca-file", help="the collector's CA certificate (AFTERCARE_CA_FILE)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser(
        "agents",
        help="list hosts with connectivity and a health summary",
        description="List the hosts you may see: customer, connected or last seen, agent "
        "version, CPU, memory and the fullest filesystem.",
    )
    p.add_argument("--customer", default="", help="only this customer's hosts")
    _json_arg(p)
    p.set_defaults(handler=_agents)

    p = commands.add_parser(
        "host",
        help="latest metrics of one host and any gaps in its data, or a metric's history",
        description="Show a host's latest metrics, failed checks and the gaps list "
        "(empty when nothing was lost); with --metric NAME, that metric's downsampled "
        "history (5-minute min/avg/max; docs/metric-history.md).",
    )
    p.add_argument("host", help="hostname or agent id")
    history.add_host_options(p)
    _json_arg(p)
    p.set_defaults(handler=_host)

    tickets.add_commands(commands)
    desk.add_commands(commands)
    inspections.add_commands(commands)
    runs.add_commands(commands)
    session_actions = sessions.add_commands(commands)
    session_show.add_actions(session_actions)
    recordings.add_actions(session_actions)
    watch.add_actions(session_actions)
    ssh.add_commands(commands)
    keys.add_commands(commands)
    approvers.add_commands(commands)
    playbooks_cli.add_commands(commands)
    history.add_commands(commands)

    p = commands.add_parser("whoami", help="show the user behind the token")
    _json_arg(p)
    p.set_defaults(handler=_whoami)
    return parser


def _json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _agents(client: ApiClient, args: argparse.Namespace) -> int:
    reply = fetch_all(
        client, "ListAgents", api_pb2.ListAgentsRequest(customer=args.customer), "agents"
    )
    if args.json:
        _print_json([_agent_dict(a) for a in reply.agents])
        return 0
    if not reply.agents:
        print(
            "no hosts enrolled yet (create a join command with `aftercare-collector token create`)"
        )
        return 0
    print(
        f"{'CUSTOMER':<14} {'HOST':<20} {'AGENT':<20} {'STATE':<16} {'VERSION':<8} "
        f"{'CPU':>5} {'MEM':>5}  WORST FS"
    )
    for agent in reply.agents:
        health = agent.health
        cpu = f"{health.cpu_usage_ratio:.0%}" if health.has_data else "-"
        mem = f"{health.memory_used_ratio:.0%}" if health.has_data else "-"
        worst = (
            f"{health.worst_filesystem} {health.worst_filesystem_used_ratio:.0%}"
            if health.worst_filesystem
            else "-"
        )
        print(
            f"{safe(agent.customer):<14} {safe(agent.hostname):<20} {safe(agent.agent_id):<20} "
            f"{_state(agent):<16} {safe(agent.agent_version):<8} {cpu:>5} {mem:>5}  "
            f"{safe(worst)}"
        )
    return 0


def _host(client: ApiClient, args: argparse.Namespace) -> int:
    if history.wants_history(args):
        return history.show_history(client, args)
    detail = client.call("GetHost", api_pb2.GetHostRequest(host=args.host))
    if args.json:
        _print_json(
            {
                "agent": _agent_dict(detail.agent),
                "collected": iso(detail.collected_unix_ms),
                "batches_stored": detail.batches_stored,
                "samples": [
                    {"name": s.name, "labels": dict(s.labels), "value": s.value}
                    for s in detail.samples
                ],
                "failures": [{"check": f.check, "error": f.error} for f in detail.failures],
                "gaps": [_gap_dict(g) for g in detail.gaps],
            }
        )
        return 0
    agent = detail.agent
    print(
        f"{safe(agent.hostname)} ({safe(agent.agent_id)}) customer {safe(agent.customer)}: "
        f"{_state(agent)}, agent {safe(agent.agent_version or '?')}, "
        f"{detail.batches_stored} batches stored"
    )
    print(f"latest batch collected {iso(detail.collected_unix_ms) or 'never'}")
    for sample in sorted(detail.samples, key=lambda s: (s.name, sorted(s.labels.items()))):
        labels = ",".join(f"{safe(k)}={safe(v)}" for k, v in sorted(sample.labels.items()))
        print(f"  {safe(sample.name)}{'{' + labels + '}' if labels else ''} {sample.value:g}")
    for failure in detail.failures:
        print(f"  check failed: {safe(failure.check)}: {safe(failure.error)}")
    if detail.gaps:
        print("gaps (data the agent could not keep):")
        for gap in detail.gaps:
            g = _gap_dict(gap)
            print(f"  {g['lost_batches']} batches {g['start']} .. {g['end']} ({safe(g['reason'])})")
    else:
        print("gaps: none")
    return 0


def _whoami(client: ApiClient, args: argparse.Namespace) -> int:
    reply = client.call("WhoAmI", api_pb2.WhoAmIRequest())
    if args.json:
        _print_json({"user": reply.user, "role": reply.role, "customer": reply.customer or None})
    else:
        customer = f", {safe(reply.customer)}" if reply.customer else ""
        print(f"{safe(reply.user)} ({safe(reply.role)}{customer})")
    return 0


def _state(agent: api_pb2.AgentInfo) -> str:
    if agent.revoked:
        return "revoked"
    if agent.connected:
        return "connected"
    if not agent.last_seen_unix_ms:
        return "never seen"
    ago = max(0, int(time.time() - agent.last_seen_unix_ms / 1000))
    return f"seen {_ago(ago)} ago"


def _ago(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _agent_dict(agent: api_pb2.AgentInfo) -> dict[str, Any]:
    info = MessageToDict(
        agent, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    info["last_seen"] = iso(agent.last_seen_unix_ms)
    info["enrolled"] = iso(agent.enrolled_unix_ms)
    for key in ("last_seen_unix_ms", "enrolled_unix_ms"):
        info.pop(key, None)
    return info


def _gap_dict(gap: api_pb2.StoredGap) -> dict[str, Any]:
    return {
        "first_lost_sequence": gap.first_lost_sequence,
        "last_lost_sequence": gap.last_lost_sequence,
        "lost_batches": gap.lost_batches,
        "start": iso(gap.start_unix_ms),
        "end": iso(gap.end_unix_ms),
        "reason": gap.reason,
        "reported": iso(gap.reported_unix_ms),
    }


def _describe_rpc_error(exc: grpc.RpcError, collector: str | None) -> str:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach the collector ({details}); check --collector / AFTERCARE_COLLECTOR"
    return f"{details} ({code.name if code else 'error'})"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
