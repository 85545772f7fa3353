"""``aftercare ssh SESSION_ID``: log in through the collector's SSH gateway with OpenSSH.

Looks the session up, says plainly why it cannot be used now (and what to do), and
otherwise hands the terminal to the stock ``ssh`` client (``os.execvp``) with the
gateway's port and the session id as the user name::

    ssh -p PORT [-i FILE] SESSION_ID@HOST [SSH_ARGS/COMMAND...]

The gateway decides in the end; the checks here only turn a refusal into advice.
The gateway's host key comes from the API (authenticated by TLS), is written to
``$XDG_CONFIG_HOME/aftercare/known_hosts`` (default ``~/.config/...``) and ssh is
told to accept only it — no trust-on-first-use prompt, no man in the middle.
scp and sftp need no wrapper: ``scp -P PORT FILE SESSION_ID@HOST:PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from collector.client import ssh_keys_check
from collector.client.connection import Api
from collector.client.output import iso, safe
from proto import api_pb2

__all__ = ["add_commands", "gateway_address", "ssh_argv", "unusable_reason"]

_REQUEST_AGAIN = "request a new session with `aftercare session request`"
_UNSPECIFIED_HOSTS = ("", "0.0.0.0", "::", "[::]")


def add_commands(commands: Any) -> None:
    """Register ``ssh`` on the client's sub-command parser."""
    p = commands.add_parser(
        "ssh",
        usage="%(prog)s [-h] [--identity FILE] [--print] SESSION_ID [-- SSH_ARGS/COMMAND ...]",
        help="log in to an approved session's host (runs OpenSSH)",
        description="Log in through the collector's SSH gateway with the stock OpenSSH client: "
        "`ssh -p PORT [-i FILE] SESSION_ID@HOST [ARGS...]`. Put ssh options and a remote "
        "command after `--`, e.g. `aftercare ssh ses-0123456789ab -- -L 8080:localhost:80` or "
        "`aftercare ssh ses-0123456789ab -- uptime`. For files: `scp -P PORT FILE "
        "SESSION_ID@HOST:PATH` (`--print` shows HOST and PORT).",
    )
    p.add_argument("session_id", help="e.g. ses-0123456789ab (must be approved and yours)")
    p.add_argument("--identity", "-i", metavar="FILE", help="private key for ssh -i")
    p.add_argument(
        "--print", action="store_true", help="print the ssh command instead of running it"
    )
    p.set_defaults(handler=_ssh, passthrough=True)


def _ssh(client: Api, args: argparse.Namespace) -> int:
    return login(
        client,
        args.session_id,
        identity=args.identity,
        extra=getattr(args, "extra_args", []),
        print_only=args.print,
    )


def login(
    client: Api,
    session_id: str,
    *,
    identity: str | None = None,
    extra: Sequence[str] = (),
    print_only: bool = False,
    execvp: Callable[[str, list[str]], object] | None = None,
    find_keys: Callable[[str | None], dict[str, str]] = ssh_keys_check.local_keys,
) -> int:
    """Check the session (state, window, that it is the caller's, that a registered key
    will be offered: ``ssh_keys_check``) and run (or with ``print_only`` print) the ssh
    command; ``execvp`` (default ``os.execvp``) replaces this process with ssh."""
    detail = client.call("GetSession", api_pb2.GetSessionRequest(session_id=session_id))
    reason = unusable_reason(detail, int(time.time() * 1000))
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    verdict = ssh_keys_check.check(client, detail, identity, find_keys)
    if verdict.error:
        print(f"error: {verdict.error}", file=sys.stderr)
        return 1
    if verdict.warning:
        print(f"warning: {verdict.warning}", file=sys.stderr)
    try:
        host, port = gateway_address(detail.gateway, client.address)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if identity is not None and not Path(identity).is_file():
        print(f"error: --identity {identity}: no such file", file=sys.stderr)
        return 1
    pinned = pin_host_key(known_hosts_path(), host, port, detail.gateway_host_key)
    argv = ssh_argv(detail.session.session_id or session_id, host, port, identity, extra, pinned)
    if print_only:
        print(shlex.join(argv))
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        (execvp or os.execvp)(argv[0], argv)
    except FileNotFoundError:
        print(
            "error: the OpenSSH client `ssh` is not installed (e.g. apt install openssh-client)",
            file=sys.stderr,
        )
        return 1
    return 0  # only reached when execvp does not replace the process (tests)


def ssh_argv(
    session_id: str,
    host: str,
    port: int,
    identity: str | None,
    extra: Sequence[str],
    known_hosts: Path | None = None,
) -> list[str]:
    """The OpenSSH command line for a session (accepting only the pinned host key
    when ``known_hosts`` is given)."""
    argv = ["ssh", "-p", str(port)]
    if known_hosts is not None:
        argv += [
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
        ]  # fmt: skip
    if identity:
        argv += ["-i", identity]
    return [*argv, f"{session_id}@{host}", *extra]


def known_hosts_path() -> Path:
    """Where the client keeps the gateways' host keys."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "aftercare" / "known_hosts"


def pin_host_key(path: Path, host: str, port: int, key_line: str) -> Path | None:
    """Record ``key_line`` as the only key of ``[host]:port`` in ``path``; returns the
    file, or None when there is no key to pin or the file cannot be written (ssh
    then uses the user's own known_hosts)."""
    if not key_line:
        return None
    name = f"[{host}]:{port}"
    try:
        lines = path.read_text().splitlines() if path.exists() else []
        kept = [line for line in lines if line.split(" ", 1)[0] != name]
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text("\n".join([*kept, f"{name} {key_line}"]) + "\n")
        temporary.replace(path)
    except OSError as exc:
        print(f"warning: cannot pin the gateway's host key in {path}: {exc}", file=sys.stderr)
        return None
    return path


def gateway_address(gateway: str, collector_address: str) -> tuple[str, int]:
    """HOST and PORT of the SSH gateway from ``SessionDetail.gateway``. A wildcard
    listen address (0.0.0.0, ::) means the collector's own host. Raises ValueError."""
    if not gateway:
        raise ValueError(
            "the collector does not serve the SSH gateway (start it with --ssh-listen)"
        )
    host, port = _split(gateway)
    if ":" not in gateway or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"the collector reported a bad gateway address {gateway!r}")
    if host in _UNSPECIFIED_HOSTS:
        host = _split(collector_address)[0] or "localhost"
    return host, int(port)


def _split(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1] or "::"
    return host, port


def unusable_reason(detail: api_pb2.SessionDetail, now_ms: int) -> str | None:
    """Why the session cannot be used for a login at ``now_ms`` and what to do, or None."""
    s = detail.session
    sid = safe(s.session_id)
    if s.state == "pending":
        if s.pending_expires_unix_ms and now_ms >= s.pending_expires_unix_ms:
            return f"{sid} expired at {iso(s.pending_expires_unix_ms)} unapproved; {_REQUEST_AGAIN}"
        return _pending_text(detail)
    if s.state == "denied":
        by = _actor_of(detail, "denied")
        why = f": {safe(s.deny_reason)}" if s.deny_reason else ""
        return f"{sid} was denied{' by ' + safe(by) if by else ''}{why}; it cannot be used"
    if s.state == "expired":
        return (
            f"{sid} expired at {iso(s.pending_expires_unix_ms)} before anyone approved it; "
            f"{_REQUEST_AGAIN}"
        )
    if s.state in ("ended", "terminated"):
        why = f" ({safe(s.end_reason)})" if s.end_reason else ""
        when = _ended_at(detail)
        return f"{sid} is {safe(s.state)}{why}{when}; a session is used once: {_REQUEST_AGAIN}"
    if s.state not in ("approved", "active"):
        return f"{sid} is {safe(s.state or 'in an unknown state')}; it cannot be used for a login"
    if not s.window_start_unix_ms or now_ms < s.window_start_unix_ms:
        return f"{sid}'s access window has not started yet; it starts at approval"
    if s.window_end_unix_ms and now_ms >= s.window_end_unix_ms:
        return f"{sid}'s access window ended at {iso(s.window_end_unix_ms)}; {_REQUEST_AGAIN}"
    return None


def _pending_text(detail: api_pb2.SessionDetail) -> str:
    s = detail.session
    sid, customer, hostname = safe(s.session_id), safe(s.customer), safe(s.hostname)
    text = (
        f"{sid} is pending: ask a user of customer {customer} to run "
        f"`aftercare session approve {sid}`"
    )
    if _requested_details(detail).get("local_approval_required"):
        text = (
            f"{sid} is pending and {hostname}'s policy wants approval on the host: "
            f"ask someone at customer {customer} to run "
            f"`aftercare-agent approve-session {sid}` on {hostname}"
        )
    if s.pending_expires_unix_ms:
        text += f" (the request lapses at {iso(s.pending_expires_unix_ms)})"
    return text


def _requested_details(detail: api_pb2.SessionDetail) -> dict[str, Any]:
    for event in detail.events:
        if event.kind == "requested" and event.details_json:
            try:
                details = json.loads(event.details_json)
            except ValueError:
                return {}
            return details if isinstance(details, dict) else {}
    return {}


def _actor_of(detail: api_pb2.SessionDetail, kind: str) -> str:
    actors = [e.actor for e in detail.events if e.kind == kind]
    return actors[-1].removeprefix("user:") if actors else ""


def _ended_at(detail: api_pb2.SessionDetail) -> str:
    times = [e.at_unix_ms for e in detail.events if e.kind in ("ended", "terminated")]
    return f" at {iso(times[-1])}" if times else ""
