"""``aftercare-collector``: run the collector and administer its data directory.

Admin commands open the store in ``--data-dir`` directly (safe while ``serve`` runs)
and write every action to the audit log. Exit codes: 0 ok, 1 refused or failed,
2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import prometheus_client

from collector import __version__, admin, dump_cli, outbox_cli
from collector.audit import verify_chain
from collector.audit_checkpoint import ed25519_verify, log_problem
from collector.audit_ledger import AuditLedger
from collector.config import (
    DEFAULT_API_LISTEN,
    DEFAULT_LISTEN,
    DEFAULT_METRICS_LISTEN,
    DEFAULT_SSH_LISTEN,
    DEFAULT_WEB_LISTEN,
    ServeConfig,
)
from collector.datadir import DataDir
from collector.errors import CollectorError, ConfigError
from collector.portal.cli import add_passwd_command
from collector.rules import check_rules, load_rules
from collector.server.app import CollectorServer
from collector.server.gc_tuning import tune_for_serving
from collector.store import PostgresStore, open_store_url
from collector.store.migrate import load_migrations
from collector.store.postgres import redact_url
from common.audit_checkpoint import CheckpointError, SignedCheckpoint
from common.clock import wall_ms
from common.durations import parse_duration, parse_size
from common.safe_text import guarded_main, safe

ENDPOINTS_FILE = "endpoints.json"


def main(argv: list[str] | None = None) -> int:
    """Run one command. Output of the admin commands shows what agents and people wrote
    (hostnames, audit details) escaped (``common.safe_text``); ``--json`` keeps the
    original, and ``serve`` writes its log as before."""
    return guarded_main(
        lambda: build_parser().parse_args(argv),
        _run_handler,
        lambda args: args.handler is _serve or bool(getattr(args, "json", False)),
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
    except CollectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OverflowError) as exc:  # bad durations/sizes in options
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aftercare-collector",
        description="The aftercare collector: enrols agents, ingests their health stream, "
        "serves the API and /metrics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(commands)
    _add_migrate(commands)
    dump_cli.add_commands(commands)
    outbox_cli.add_command(commands)
    _add_token(commands)
    _add_user(commands)
    _add_agent(commands)
    _add_audit(commands)
    _add_rules(commands)
    return parser


def _data_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="the collector's data directory"
    )


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="the store: postgresql://USER@HOST/DB (default: SQLite in --data-dir); the first "
        "start binds --data-dir to it (DATA_DIR/store-url), later commands follow",
    )


def _add_migrate(commands: Any) -> None:
    p = commands.add_parser(
        "migrate",
        help="bring a store's schema up to date",
        description="Apply the store's pending schema migrations and print its schema "
        "version. serve migrates on start too; run this ahead of an upgrade window.",
    )
    p.add_argument(
        "--store",
        required=True,
        metavar="URL",
        help="postgresql://USER@HOST/DB or sqlite:///PATH (docs/store-postgresql.md)",
    )
    _json_arg(p)
    p.set_defaults(handler=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    store = open_store_url(args.store)  # opening migrates (or refuses a newer schema)
    store.close()
    dialect = "postgresql" if isinstance(store, PostgresStore) else "sqlite"
    version = load_migrations(dialect)[-1].version
    if args.json:
        _print_json({"store": redact_url(args.store), "schema_version": version})
    else:
        print(f"{redact_url(args.store)}: schema version {version}")
    return 0


def _json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _add_serve(commands: Any) -> None:
    p = commands.add_parser(
        "serve",
        help="run the collector",
        description="Run the collector. The first start initialises --data-dir (CA, store, "
        "admin token shown once and kept in DATA_DIR/admin-token, mode 0600).",
    )
    _data_dir_arg(p)
    _store_arg(p)
    p.add_argument("--listen", default=DEFAULT_LISTEN, help="agent port, mutual TLS (%(default)s)")
    p.add_argument(
        "--api-listen",
        default=DEFAULT_API_LISTEN,
        help="API and enrolment port, TLS; the address in join commands (%(default)s)",
    )
    p.add_argument(
        "--metrics-listen", default=DEFAULT_METRICS_LISTEN, help="/metrics HTTP (%(default)s)"
    )
    p.add_argument(
        "--host-samples",
        choices=("metrics", "separate"),
        default="metrics",
        help="where the per-host aftercare_host_* gauges are served: on /metrics and "
        "/metrics/hosts (metrics, the default), or only on /metrics/hosts, which Prometheus "
        "can scrape in shards (separate: for fleets of thousands of hosts, docs/metrics.md)",
    )
    p.add_argument("--advertise", default="", help="HOST:PORT agents dial (default: --listen)")
    p.add_argument(
        "--tls-name",
        action="append",
        default=[],
        metavar="NAME",
        help="extra DNS name or IP for the collector's certificate (repeatable)",
    )
    p.add_argument("--agent-cert-ttl", default="30d", help="agent certificate lifetime (30d)")
    p.add_argument("--max-message-size", default="4MiB", help="largest agent message (4MiB)")
    p.add_argument("--batch-retention", default="30d", help="keep batch records this long (30d)")
    p.add_argument(
        "--rules",
        type=Path,
        default=None,
        help="alert rule file or directory (default: the shipped rules); SIGHUP reloads",
    )
    p.add_argument(
        "--tickets-config", type=Path, default=None, help="SLA, escalation, reopen settings (YAML)"
    )
    p.add_argument(
        "--inspections-config",
        type=Path,
        default=None,
        help="inspection calendar (holidays), recipients, run timeout (YAML; docs/inspections.md)",
    )
    p.add_argument(
        "--evaluation-interval", default="5s", help="how often rules and SLA clocks run (5s)"
    )
    p.add_argument(
        "--playbooks",
        type=Path,
        default=None,
        help="signed playbook catalogue directory (default: the shipped catalogue)",
    )
    p.add_argument(
        "--inspection-catalogue",
        type=Path,
        default=None,
        help="YAML file extending the inspection recommendation catalogue (none)",
    )
    p.add_argument(
        "--recovery-delay",
        default="30s",
        help="a rule alert must stay clear this long before its ticket is marked recovered (30s)",
    )
    p.add_argument(
        "--alertmanager-token-file",
        type=Path,
        default=None,
        help="bearer tokens (one per line) accepted on POST /alertmanager; none: webhook refused",
    )
    p.add_argument(
        "--ssh-listen",
        default=DEFAULT_SSH_LISTEN,
        help="SSH gateway for remote sessions (%(default)s); 'off' serves none",
    )
    p.add_argument(
        "--record-input",
        action="store_true",
        help="session recordings also keep what engineers type (default: output only)",
    )
    p.add_argument(
        "--session-warning",
        default="5m",
        help="warn the engineer this long before a session's window ends (5m)",
    )
    p.add_argument(
        "--web-listen",
        default=DEFAULT_WEB_LISTEN,
        help="the web portal, HTTPS with the collector's certificate (%(default)s); "
        "'off' serves none (docs/portal.md)",
    )
    p.add_argument(
        "--public-url",
        default="",
        help="the portal's address as people reach it, for links in notifications "
        "(default: https://WEB_LISTEN)",
    )
    p.add_argument(
        "--relay-listen",
        default="off",
        help="the replica relay, mutual TLS between replicas on one PostgreSQL store, so "
        "an engineer's session through this replica reaches an agent on another "
        "(default off; docs/replicas.md)",
    )
    p.add_argument(
        "--relay-advertise",
        default="",
        help="HOST:PORT other replicas dial for this replica's relay (default: the "
        "--relay-listen address, this host's name for 0.0.0.0)",
    )
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    config = ServeConfig(
        data_dir=args.data_dir,
        listen=args.listen,
        api_listen=args.api_listen,
        metrics_listen=args.metrics_listen,
        host_samples_on_metrics=args.host_samples == "metrics",
        advertise=args.advertise,
        tls_names=tuple(args.tls_name),
        agent_cert_ttl=dt.timedelta(seconds=parse_duration(args.agent_cert_ttl)),
        max_message_bytes=parse_size(args.max_message_size),
        batch_retention=dt.timedelta(seconds=parse_duration(args.batch_retention)),
        rules_path=args.rules,
        playbooks_dir=args.playbooks,
        inspection_catalogue=args.inspection_catalogue,
        tickets_config=args.tickets_config,
        inspections_config=args.inspections_config,
        evaluation_interval=dt.timedelta(seconds=parse_duration(args.evaluation_interval)),
        recovery_delay=dt.timedelta(seconds=parse_duration(args.recovery_delay)),
        alertmanager_tokens=_read_tokens(args.alertmanager_token_file),
        ssh_listen="" if args.ssh_listen == "off" else args.ssh_listen,
        record_input=args.record_input,
        session_warning=dt.timedelta(seconds=parse_duration(args.session_warning)),
        web_listen="" if args.web_listen == "off" else args.web_listen,
        public_url=args.public_url,
        store_url=args.store,
        relay_listen="" if args.relay_listen == "off" else args.relay_listen,
        relay_advertise=args.relay_advertise,
    )
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # noise
    os.umask(0o077)  # data dir, store, run outputs, recordings: owner only, however started
    asyncio.run(_run_server(config))
    return 0


async def _run_server(config: ServeConfig) -> None:
    server = CollectorServer(config)
    addresses = await server.start()
    tune_for_serving()
    (config.data_dir / ENDPOINTS_FILE).write_text(
        json.dumps(
            {
                "api": addresses.api,
                "agent": addresses.advertise,
                "ssh": addresses.ssh,
                "relay": addresses.relay,
            }
        )
        + "\n"
    )
    if server.admin_token:
        print(
            f"initialised {config.data_dir}\nadmin API token (shown once; also in "
            f"{config.data_dir / 'admin-token'}):\n  {server.admin_token}",
            flush=True,
        )
    print(
        f"collector ready: agents {addresses.agent}, API {addresses.api}, "
        f"metrics http://{addresses.metrics}/metrics"
        + (f", SSH gateway {addresses.ssh}" if addresses.ssh else "")
        + (f", portal {addresses.web_url}" if addresses.web_url else ""),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_rules)
    await stop.wait()
    await server.stop()


def _read_tokens(path: Path | None) -> tuple[str, ...]:
    if path is None:
        return ()
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"--alertmanager-token-file {path}: {exc.strerror or exc}") from exc
    tokens = tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    if not tokens:
        raise ConfigError(f"--alertmanager-token-file {path} holds no token")
    return tokens


def _add_rules(commands: Any) -> None:
    p = commands.add_parser("rules", help="alert rule files")
    sub = p.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    check = sub.add_parser(
        "check",
        help="validate rule files",
        description="Validate a rule file or directory; prints FILE:LINE: problem lines and "
        "exits 1 if there are problems.",
    )
    check.add_argument("path", type=Path, help="rule file or directory")
    _json_arg(check)
    check.set_defaults(handler=_rules_check)


def _rules_check(args: argparse.Namespace) -> int:
    problems = check_rules(args.path)
    warnings: list[str] = [] if problems else list(load_rules(args.path).warnings)
    if args.json:
        _print_json({"ok": not problems, "problems": problems, "warnings": warnings})
    else:
        for line in problems:
            print(line)
        for line in warnings:
            print(f"warning: {line}")
        if not problems:
            print(f"{args.path}: {len(load_rules(args.path).rules)} rules OK")
    return 1 if problems else 0


def _add_token(commands: Any) -> None:
    p = commands.add_parser("token", help="join tokens for enrolling agents")
    sub = p.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    create = sub.add_parser(
        "create",
        help="create a single-use join token and print the join command",
        description="Print one line: the command to run on the customer's server.",
    )
    _data_dir_arg(create)
    create.add_argument("--customer", required=True, help="customer the agent will belong to")
    create.add_argument("--ttl", default="24h", help="how long the token is valid (24h)")
    create.add_argument(
        "--collector",
        default="",
        help="HOST:PORT agents use to reach the API port (default: what serve last bound)",
    )
    _json_arg(create)
    create.set_defaults(handler=_token_create)


def _token_create(args: argparse.Namespace) -> int:
    data_dir = DataDir(args.data_dir)
    ca = data_dir.load_ca()
    ttl_ms = int(parse_duration(args.ttl) * 1000)
    now = wall_ms()
    token = _with_store(
        data_dir, lambda s: admin.create_join_token(s, args.customer, ttl_ms, _actor(), now)
    )
    collector = args.collector or _api_endpoint(args.data_dir)
    command = f"aftercare-agent enroll --collector {collector} --token {token} --ca-hash {ca.hash}"
    if args.json:
        expires = dt.datetime.fromtimestamp((now + ttl_ms) / 1000, dt.UTC).isoformat()
        _print_json(
            {
                "command": command,
                "token": token,
                "ca_hash": ca.hash,
                "collector": collector,
                "customer": args.customer,
                "expires": expires,
            }
        )
    else:
        print(command)
    return 0


def _api_endpoint(data_dir: Path) -> str:
    try:
        return str(json.loads((data_dir / ENDPOINTS_FILE).read_text())["api"])
    except (OSError, ValueError, KeyError):
        return DEFAULT_API_LISTEN


def _add_user(commands: Any) -> None:
    p = commands.add_parser(
        "user",
        help="API users (admins, engineers, customers)",
        description="Manage API users. Every change is written to the audit log; a "
        "disabled, removed or rotated user's old token is refused from its next call. "
        "docs/users.md",
    )
    sub = p.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    add = sub.add_parser(
        "add",
        help="add a user and print its API token",
        description="Add a user. Prints only the new user's API token on stdout (shown once).",
    )
    _data_dir_arg(add)
    add.add_argument("name", help="user name")
    add.add_argument("--role", required=True, choices=("admin", "engineer", "customer"))
    add.add_argument("--customer", default=None, help="the customer a customer user belongs to")
    _ttl_arg(add)
    _json_arg(add)
    add.set_defaults(handler=_user_add)
    listing = sub.add_parser(
        "list",
        help="list users: role, customer, state, token expiry",
        description="List every user (tokens are stored hashed and never shown).",
    )
    _data_dir_arg(listing)
    _json_arg(listing)
    listing.set_defaults(handler=_user_list)
    for name, text, handler in (
        ("disable", "refuse the user's token from its next call on", _user_disable),
        ("enable", "accept a disabled user's token again", _user_enable),
        ("remove", "delete the user and its SSH keys; its token stops working", _user_remove),
    ):
        command = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        _data_dir_arg(command)
        command.add_argument("name", help="user name")
        _json_arg(command)
        command.set_defaults(handler=handler)
    rotate = sub.add_parser(
        "rotate-token",
        help="issue a new API token (printed once); the old one stops working",
        description="Replace the user's API token. Prints the new token on stdout.",
    )
    _data_dir_arg(rotate)
    rotate.add_argument("name", help="user name")
    _ttl_arg(rotate)
    _json_arg(rotate)
    rotate.set_defaults(handler=_user_rotate)
    add_passwd_command(sub, _data_dir_arg, _json_arg)


def _ttl_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ttl",
        default=None,
        help="the token expires after this long, e.g. 90d (default: never; max 5 years)",
    )


def _ttl_ms(text: str | None) -> int | None:
    return None if text is None else int(parse_duration(text) * 1000)


def _user_add(args: argparse.Namespace) -> int:
    data_dir = DataDir(args.data_dir)
    ttl_ms = _ttl_ms(args.ttl)
    now = wall_ms()
    token = _with_store(
        data_dir,
        lambda s: admin.add_user(s, args.name, args.role, args.customer, _actor(), now, ttl_ms),
    )
    if args.json:
        user = _with_store(data_dir, lambda s: s.get_user(args.name))
        _print_json({**_user_json(user, now), "token": token})
    else:
        print(token)
    return 0


def _user_list(args: argparse.Namespace) -> int:
    users = _with_store(DataDir(args.data_dir), admin.list_users)
    now = wall_ms()
    rows = [_user_json(u, now) for u in users]
    if args.json:
        _print_json(rows)
        return 0
    print(f"{'NAME':<24} {'ROLE':<9} {'CUSTOMER':<16} {'STATE':<9} TOKEN EXPIRES")
    for row in rows:
        print(
            f"{row['name']:<24} {row['role']:<9} {row['customer'] or '-':<16} "
            f"{row['state']:<9} {row['token_expires'] or 'never'}"
        )
    return 0


def _user_disable(args: argparse.Namespace) -> int:
    return _user_change(args, admin.disable_user, "disabled")


def _user_enable(args: argparse.Namespace) -> int:
    return _user_change(args, admin.enable_user, "enabled")


def _user_remove(args: argparse.Namespace) -> int:
    return _user_change(args, admin.remove_user, "removed")


def _user_change(args: argparse.Namespace, action: Callable[..., Any], done: str) -> int:
    now = wall_ms()
    user = _with_store(DataDir(args.data_dir), lambda s: action(s, args.name, _actor(), now))
    if args.json:
        row = _user_json(user, now)
        if done == "removed":
            row["state"] = "removed"
        _print_json(row)
    else:
        print(f"user {user.name} {done}")
    return 0


def _user_rotate(args: argparse.Namespace) -> int:
    ttl_ms = _ttl_ms(args.ttl)
    now = wall_ms()
    user, token = _with_store(
        DataDir(args.data_dir),
        lambda s: admin.rotate_token(s, args.name, _actor(), now, ttl_ms),
    )
    if args.json:
        _print_json({**_user_json(user, now), "token": token})
    else:
        print(token)
    return 0


def _user_json(user: Any, now: int) -> dict[str, Any]:
    expires = user.token_expires_ms
    if user.disabled_ms is not None:
        state = "disabled"
    elif expires is not None and now >= expires:
        state = "expired"
    else:
        state = "active"
    return {
        "name": user.name,
        "role": user.role,
        "customer": user.customer,
        "state": state,
        "created": _iso(user.created_ms),
        "disabled": _iso(user.disabled_ms) if user.disabled_ms is not None else None,
        "token_created": _iso(user.token_created_ms or user.created_ms),
        "token_expires": _iso(expires) if expires is not None else None,
    }


def _add_agent(commands: Any) -> None:
    p = commands.add_parser("agent", help="enrolled agents")
    sub = p.add_subparsers(dest="agent_command", required=True, metavar="COMMAND")
    revoke = sub.add_parser(
        "revoke",
        help="refuse an agent from its next connection on",
        description="Revoke an agent by id (see `aftercare agents`).",
    )
    _data_dir_arg(revoke)
    revoke.add_argument("agent", help="agent id, e.g. ag-0123456789abcdef")
    _json_arg(revoke)
    revoke.set_defaults(handler=_agent_revoke)


def _agent_revoke(args: argparse.Namespace) -> int:
    data_dir = DataDir(args.data_dir)
    record = _with_store(data_dir, lambda s: admin.revoke_agent(s, args.agent, _actor(), wall_ms()))
    if args.json:
        _print_json({"agent_id": record.agent_id, "revoked": True, "customer": record.customer})
    else:
        print(f"revoked {record.agent_id} ({safe(record.customer)}/{safe(record.hostname)})")
    return 0


def _add_audit(commands: Any) -> None:
    p = commands.add_parser("audit", help="the append-only, hash-chained audit log")
    sub = p.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = sub.add_parser(
        "verify",
        help="check the hash chain (and that it contains a kept checkpoint)",
        description="Exit 0 if the audit log chain is intact, 1 naming the first bad entry. "
        "With --checkpoint, also 1 unless the log still contains that signed checkpoint "
        "(a tail cut, a rewritten suffix or entries forged in place of witnessed ones "
        "fail). docs/audit.md",
    )
    _data_dir_arg(verify)
    verify.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="a checkpoint kept outside the collector: the output of `audit checkpoint "
        "--json`, or of `aftercare-agent status --json` on a host",
    )
    _json_arg(verify)
    verify.set_defaults(handler=_audit_verify)
    checkpoint = sub.add_parser(
        "checkpoint",
        help="print the current signed checkpoint (entry count, head hash, accumulator)",
        description="Print the audit log's current checkpoint, signed with the collector's "
        "audit key, as a JSON document that `audit verify --checkpoint` accepts. "
        "Without --json a summary goes to stderr too.",
    )
    _data_dir_arg(checkpoint)
    _json_arg(checkpoint)
    checkpoint.set_defaults(handler=_audit_checkpoint)
    show = sub.add_parser("list", help="print the audit log", description="Print audit entries.")
    _data_dir_arg(show)
    _json_arg(show)
    show.set_defaults(handler=_audit_list)


def _audit_verify(args: argparse.Namespace) -> int:
    data_dir = DataDir(args.data_dir)
    kept = _read_checkpoint(args.checkpoint) if args.checkpoint else None
    entries = _with_store(data_dir, lambda s: s.audit_entries())
    verdict = verify_chain(entries)
    problem = ""
    if kept is not None:
        audit_key = data_dir.load_audit_key().public
        problem = log_problem(kept.checkpoint, [e.hash for e in entries], audit_key)
    ok = verdict.ok and not problem
    if args.json:
        report: dict[str, Any] = {
            "ok": ok,
            "checked": verdict.checked,
            "first_bad_id": verdict.first_bad_id,
            "reason": verdict.reason,
        }
        if kept is not None:
            report["checkpoint"] = {
                "contained": not problem,
                "count": kept.checkpoint.count,
                "head": kept.checkpoint.head,
                "at": _iso(kept.checkpoint.at_ms),
                "reason": problem or "the log contains the checkpoint",
            }
        _print_json(report)
        return 0 if ok else 1
    if verdict.ok:
        print(f"audit log intact: {verdict.checked} entries verified")
    else:
        print(
            f"audit log TAMPERED at entry {verdict.first_bad_id}: {verdict.reason} "
            f"({verdict.checked} entries checked)"
        )
    if kept is not None:
        what = f"checkpoint of {kept.checkpoint.count} entries signed {_iso(kept.checkpoint.at_ms)}"
        if problem:
            print(f"audit log does NOT contain the {what}: {problem}")
        else:
            print(f"audit log contains the {what}")
    return 0 if ok else 1


def _read_checkpoint(path: Path) -> SignedCheckpoint:
    """A kept checkpoint document, or one inside an agent's ``status --json`` output."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--checkpoint {path}: cannot read JSON ({exc})") from exc
    if isinstance(value, dict) and "audit_checkpoint" in value:  # agent status --json
        value = (value["audit_checkpoint"] or {}).get("document")
    try:
        return SignedCheckpoint.from_document(value, ed25519_verify)
    except CheckpointError as exc:
        raise ConfigError(f"--checkpoint {path}: {exc}") from exc


def _audit_checkpoint(args: argparse.Namespace) -> int:
    data_dir = DataDir(args.data_dir)
    key = data_dir.load_audit_key()
    rows = _with_store(data_dir, lambda s: s.audit_hashes(0, 2**62))
    ledger = AuditLedger()
    ledger.extend(rows)
    signed = key.sign(ledger.count, ledger.head, ledger.accumulator, wall_ms())
    _print_json(signed.document())
    if not args.json:
        print(
            f"checkpoint of {ledger.count} audit entries, head {ledger.head[:16]}..., "
            f"signed by {signed.checkpoint.key_fingerprint}",
            file=sys.stderr,
        )
    return 0


def _audit_list(args: argparse.Namespace) -> int:
    entries = _with_store(DataDir(args.data_dir), lambda s: s.audit_entries())
    rows = [
        {
            "id": e.id,
            "at": _iso(e.at_ms),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "details": dict(e.details),
        }
        for e in entries
    ]
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            print(
                f"{row['id']:>5}  {row['at']}  {safe(row['actor']):<20} "
                f"{safe(row['action']):<26} {safe(row['target'])}"
            )
    return 0


def _with_store(data_dir: DataDir, action: Callable[[Any], Any]) -> Any:
    store = data_dir.open_store()
    try:
        return action(store)
    finally:
        store.close()


def _actor() -> str:
    return f"os-user:{getpass.getuser()}"


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
