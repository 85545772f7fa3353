"""``aftercare keys add|list|remove``: the caller's SSH public keys for the gateway.

The gateway authenticates ``ssh``/``scp``/``sftp`` logins by these keys. A key file is
checked here first (``ssh_pubkey``), so a private key never leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from collector.client.connection import Api
from collector.client.output import iso, safe
from collector.client.paging import fetch_all
from collector.sessions.pubkey import normalize_fingerprint, parse_public_key
from proto import api_pb2

MAX_KEY_FILE_BYTES = 64 * 1024


def add_commands(commands: Any) -> None:
    """Register ``keys`` on the client's sub-command parser."""
    keys = commands.add_parser(
        "keys",
        help="your SSH public keys for remote sessions",
        description="Register, list and remove the SSH public keys the gateway accepts "
        "for your logins (`aftercare ssh`, ssh, scp, sftp).",
    )
    sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "add",
        help="register a public key",
        description="Register an OpenSSH public key, e.g. ~/.ssh/id_ed25519.pub ('-': stdin). "
        "Private keys are refused before anything is sent.",
    )
    p.add_argument("file", help="public key file (.pub), or - for standard input")
    _json_arg(p)
    p.set_defaults(handler=_add)

    p = sub.add_parser("list", help="list your keys", description="List your registered keys.")
    _json_arg(p)
    p.set_defaults(handler=_list)

    p = sub.add_parser(
        "remove",
        help="remove a key",
        description="Remove a key by its fingerprint (SHA256:..., as `aftercare keys list` "
        "shows it) or by its public key file.",
    )
    p.add_argument("fingerprint", help="SHA256:... or a .pub file")
    _json_arg(p)
    p.set_defaults(handler=_remove)


def _json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _add(client: Api, args: argparse.Namespace) -> int:
    try:
        data, source = _read_key(args.file)
        key = parse_public_key(data, source)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    reply = client.call("AddSshKey", api_pb2.AddSshKeyRequest(public_key=key.line()))
    if args.json:
        _print_json(key_dict(reply))
    else:
        print(f"added {_describe(reply)}")
    return 0


def _list(client: Api, args: argparse.Namespace) -> int:
    reply = fetch_all(client, "ListSshKeys", api_pb2.ListSshKeysRequest(), "keys")
    if args.json:
        _print_json([key_dict(k) for k in reply.keys])
        return 0
    if not reply.keys:
        print("no SSH keys registered; add one with `aftercare keys add ~/.ssh/id_ed25519.pub`")
        return 0
    print(f"{'FINGERPRINT':<51} {'TYPE':<20} {'ADDED':<25} COMMENT")
    for key in reply.keys:
        print(
            f"{safe(key.fingerprint):<51} {safe(key.key_type):<20} "
            f"{iso(key.added_unix_ms) or '-':<25} {safe(key.comment)}"
        )
    return 0


def _remove(client: Api, args: argparse.Namespace) -> int:
    try:
        fingerprint = _fingerprint_arg(args.fingerprint)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    reply = client.call("RemoveSshKey", api_pb2.RemoveSshKeyRequest(fingerprint=fingerprint))
    if args.json:
        _print_json(key_dict(reply))
    else:
        print(f"removed {_describe(reply)}")
    return 0


def _read_key(name: str) -> tuple[bytes, str]:
    source = "stdin" if name == "-" else name
    try:
        if name == "-":
            data = sys.stdin.buffer.read(MAX_KEY_FILE_BYTES + 1)
        else:
            with Path(name).expanduser().open("rb") as handle:
                data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {source}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise ValueError(f"{source} is too large to be an OpenSSH public key")
    return data, source


def _fingerprint_arg(text: str) -> str:
    path = Path(text).expanduser()
    if not text.startswith("SHA256:") and path.is_file():
        data, source = _read_key(text)
        return parse_public_key(data, source).fingerprint
    return normalize_fingerprint(text)


def _describe(key: api_pb2.SshKey) -> str:
    comment = f", {safe(key.comment)}" if key.comment else ""
    owner = f" for {safe(key.user)}" if key.user else ""
    return f"{safe(key.fingerprint)} ({safe(key.key_type)}{comment}){owner}"


def key_dict(key: api_pb2.SshKey) -> dict[str, Any]:
    """A key as JSON: times as ISO 8601."""
    return {
        "fingerprint": key.fingerprint,
        "key_type": key.key_type,
        "comment": key.comment,
        "user": key.user,
        "added": iso(key.added_unix_ms),
    }


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))
