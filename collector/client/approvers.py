"""``aftercare approvers init|key|add|list|revoke``: the customer's approval keys.

A customer's admin creates the approval root on their own machine (``init``) and pins
its fingerprint on each host; each person who approves makes a key (``key``) and hands
the admin its public key; the admin certifies it (``add``: a certificate signed by
the root, uploaded to the collector) and can withdraw it (``revoke``: a revocation
signed by the root, sent on to the hosts). ``init`` and ``key`` work offline. See
docs/approvers-cli.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from collector.client.approval_keys import (
    CERT_FILE,
    KEY_FILE,
    ROOT_KEY_FILE,
    ApprovalKeyError,
    config_dir,
    create_key,
    encode_key,
    parse_public_key,
    raw_public_key,
    read_private_key,
    verify_certificate,
)
from collector.client.connection import Api
from collector.client.output import iso, safe
from collector.client.paging import fetch_all
from common.approval_format import (
    ApproverCertificate,
    FormatError,
    Revocation,
    fingerprint,
    parse_fingerprint,
    seal,
)
from common.durations import parse_duration
from proto import api_pb2


def add_commands(commands: Any) -> None:
    """Register ``approvers`` on the client's sub-command parser."""
    approvers = commands.add_parser(
        "approvers",
        help="customer approval keys: the root, approvers' keys and certificates",
        description="Customers sign what they approve. The admin creates the approval root "
        "(init) and certifies each approver's key (add); approvers create their key (key).",
    )
    sub = approvers.add_subparsers(dest="approvers_command", required=True, metavar="ACTION")

    p = sub.add_parser(
        "init",
        help="create the customer's approval root key (admins, offline)",
        description="Write a new Ed25519 approval root key (mode 0600, never overwritten) "
        "and print the fingerprint to pin on every host. Keep the key offline and safe.",
    )
    p.add_argument("--out", default="", help=f"key file (~/.config/aftercare/{ROOT_KEY_FILE})")
    _json_arg(p)
    p.set_defaults(handler=_init, local=True)

    p = sub.add_parser(
        "key",
        help="create your own approval key (approvers, offline)",
        description="Write a new Ed25519 approval key (mode 0600) and print its public key "
        "for your admin to certify with `aftercare approvers add`.",
    )
    p.add_argument("--out", default="", help=f"key file (~/.config/aftercare/{KEY_FILE})")
    _json_arg(p)
    p.set_defaults(handler=_key, local=True)

    p = sub.add_parser(
        "add",
        help="certify an approver's public key with the root (admins)",
        description="Sign a certificate for NAME's public key with the approval root, print "
        "it (or write it to --out) and upload it to the collector (unless --no-upload or no "
        "collector is configured). The approver keeps it as ~/.config/aftercare/"
        f"{CERT_FILE}, or the CLI fetches it from the collector.",
    )
    p.add_argument("name", help="the approver's name, e.g. alice@acme")
    p.add_argument("--key", required=True, help="their public key (base64, from `approvers key`)")
    p.add_argument("--customer", required=True, help="your customer name")
    p.add_argument(
        "--root-key", default="", help=f"root key file (~/.config/aftercare/{ROOT_KEY_FILE})"
    )
    p.add_argument("--valid", default="365d", help="how long the certificate is valid (365d)")
    p.add_argument("--out", default="", help="also write the certificate to this file")
    p.add_argument("--no-upload", dest="local", action="store_true", help="only print it")
    _json_arg(p)
    p.set_defaults(handler=_add, client_optional=True)

    p = sub.add_parser(
        "list",
        help="list approver certificates on the collector",
        description="Approvers, their key and root fingerprints, validity and revocation.",
    )
    p.add_argument("--customer", default="", help="only this customer (engineers/admins)")
    _json_arg(p)
    p.set_defaults(handler=_list)

    p = sub.add_parser(
        "revoke",
        help="withdraw an approver's key with the root (admins)",
        description="Sign a revocation of the approver's key (by name or key fingerprint) "
        "with the approval root and upload it; the collector sends it to every host.",
    )
    p.add_argument("approver", help="approver name or key fingerprint (sha256:...)")
    p.add_argument("--customer", required=True, help="your customer name")
    p.add_argument(
        "--root-key", default="", help=f"root key file (~/.config/aftercare/{ROOT_KEY_FILE})"
    )
    p.add_argument("--reason", default="", help="why (kept in the signed revocation)")
    _json_arg(p)
    p.set_defaults(handler=_revoke)


def _json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _init(client: Api | None, args: argparse.Namespace) -> int:
    path = Path(args.out).expanduser() if args.out else config_dir() / ROOT_KEY_FILE
    try:
        key = create_key(path)
    except ApprovalKeyError as exc:
        return _fail(exc)
    root = fingerprint(raw_public_key(key))
    if args.json:
        _print_json({"key_file": str(path), "root_fingerprint": root})
        return 0
    print(f"approval root key written to {path} (mode 0600); keep it offline and safe")
    print(f"root fingerprint: {root}")
    print("pin it on each of your hosts:")
    print(f"  aftercare-agent enroll ... --approver-root {root}")
    print("or in the agent config:")
    print("  [approvals]")
    print(f'  root = "{root}"')
    return 0


def _key(client: Api | None, args: argparse.Namespace) -> int:
    path = Path(args.out).expanduser() if args.out else config_dir() / KEY_FILE
    try:
        key = create_key(path)
    except ApprovalKeyError as exc:
        return _fail(exc)
    public = raw_public_key(key)
    if args.json:
        _print_json(
            {
                "key_file": str(path),
                "public_key": encode_key(public),
                "key_fingerprint": fingerprint(public),
            }
        )
        return 0
    print(f"approval key written to {path} (mode 0600)")
    print(f"public key: {encode_key(public)}")
    print(f"fingerprint: {fingerprint(public)}")
    print("hand the public key to your admin, who certifies it with:")
    print(f"  aftercare approvers add NAME --key {encode_key(public)} --customer CUSTOMER")
    return 0


def _add(client: Api | None, args: argparse.Namespace) -> int:
    try:
        public = parse_public_key(args.key)
        root_key = read_private_key(_root_path(args.root_key))
        valid_ms = int(parse_duration(args.valid) * 1000)
        if valid_ms <= 0:
            raise ValueError(f"--valid {args.valid!r} must be positive")
        now = int(time.time() * 1000)
        certificate = ApproverCertificate(
            customer=args.customer,
            approver=args.name,
            key=public,
            root=raw_public_key(root_key),
            issued_ms=now,
            expires_ms=now + valid_ms,
        )
        document = seal(_checked(certificate.body, ApproverCertificate.from_body), root_key.sign)
    except (ApprovalKeyError, ValueError) as exc:
        return _fail(exc)
    data = document.encode()
    if args.out:
        try:
            Path(args.out).expanduser().write_bytes(data + b"\n")
        except OSError as exc:
            return _fail(f"cannot write {args.out}: {exc.strerror or exc}")
    reply: api_pb2.ApproverInfo | None = None
    note = ""
    if client is not None and not args.local:
        reply = client.call("AddApprover", api_pb2.AddApproverRequest(certificate=data))
    elif not args.local:
        note = "not uploaded: no collector configured (AFTERCARE_COLLECTOR, AFTERCARE_TOKEN)"
    if args.json:
        _print_json(
            {
                "certificate": data.decode(),
                "uploaded": reply is not None,
                "approver": _info_dict(reply) if reply is not None else None,
                "key_fingerprint": fingerprint(public),
                "root_fingerprint": fingerprint(certificate.root),
            }
        )
        return 0
    print(data.decode())
    where = f", written to {args.out}" if args.out else ""
    status = "uploaded to the collector" if reply is not None else (note or "not uploaded")
    print(
        f"certified {safe(args.name)} ({fingerprint(public)}) of {safe(args.customer)} until "
        f"{iso(certificate.expires_ms)}: {status}{where}",
        file=sys.stderr,
    )
    return 0


def _list(client: Api, args: argparse.Namespace) -> int:
    reply = fetch_all(
        client, "ListApprovers", api_pb2.ListApproversRequest(customer=args.customer), "approvers"
    )
    if args.json:
        _print_json([_info_dict(a) for a in reply.approvers])
        return 0
    if not reply.approvers:
        print("no approvers yet; an admin certifies one with `aftercare approvers add`")
        return 0
    print(f"{'CUSTOMER':<14} {'NAME':<20} {'KEY':<24} {'EXPIRES':<26} STATE")
    for a in reply.approvers:
        state = f"revoked {iso(a.revoked_unix_ms)}" if a.revoked_unix_ms else "valid"
        if not a.revoked_unix_ms and a.expires_unix_ms <= time.time() * 1000:
            state = "expired"
        print(
            f"{safe(a.customer):<14} {safe(a.name):<20} {safe(a.key_fingerprint[:23]):<24} "
            f"{iso(a.expires_unix_ms) or '-':<26} {state}"
        )
    return 0


def _revoke(client: Api, args: argparse.Namespace) -> int:
    try:
        root_key = read_private_key(_root_path(args.root_key))
    except ApprovalKeyError as exc:
        return _fail(exc)
    listed = fetch_all(
        client, "ListApprovers", api_pb2.ListApproversRequest(customer=args.customer), "approvers"
    )
    target = _fingerprint_or_none(args.approver)
    matches = [
        a
        for a in listed.approvers
        if a.customer == args.customer
        and (a.key_fingerprint == target if target else a.name == args.approver)
    ]
    if not matches:
        return _fail(
            f"no approver {args.approver!r} of {args.customer!r}; "
            "`aftercare approvers list` shows them"
        )
    keys = {a.key_fingerprint for a in matches}
    if len(keys) > 1:
        return _fail(
            f"{args.approver!r} has {len(keys)} keys ({', '.join(sorted(keys))}); "
            "revoke one by its fingerprint"
        )
    try:
        certificate = verify_certificate(matches[0].certificate, "the collector's copy")
        revocation = Revocation(
            customer=args.customer,
            key=certificate.key,
            root=raw_public_key(root_key),
            revoked_ms=int(time.time() * 1000),
            reason=args.reason,
        )
        document = seal(_checked(revocation.body, Revocation.from_body), root_key.sign)
    except (ApprovalKeyError, ValueError) as exc:
        return _fail(exc)
    reply = client.call(
        "RevokeApprover", api_pb2.RevokeApproverRequest(revocation=document.encode())
    )
    if args.json:
        _print_json(_info_dict(reply))
    else:
        print(
            f"revoked {safe(reply.name)} ({safe(reply.key_fingerprint)}) of {safe(reply.customer)}"
        )
    return 0


def _checked(body: Any, parse: Any) -> dict[str, Any]:
    """``body()`` after checking it parses back (names, sizes), so nothing unusable is signed."""
    value: dict[str, Any] = body()
    try:
        parse(value)
    except FormatError as exc:
        raise ValueError(str(exc)) from exc
    return value


def _root_path(arg: str) -> Path:
    return Path(arg).expanduser() if arg else config_dir() / ROOT_KEY_FILE


def _fingerprint_or_none(text: str) -> str | None:
    if not text.lower().startswith("sha256:"):
        return None
    try:
        return parse_fingerprint(text)
    except FormatError:
        return None


def _info_dict(info: api_pb2.ApproverInfo) -> dict[str, Any]:
    return {
        "customer": info.customer,
        "name": info.name,
        "key_fingerprint": info.key_fingerprint,
        "root_fingerprint": info.root_fingerprint,
        "issued": iso(info.issued_unix_ms),
        "expires": iso(info.expires_unix_ms),
        "revoked": iso(info.revoked_unix_ms),
        "added": iso(info.added_unix_ms),
        "certificate": info.certificate.decode("utf-8", "replace"),
    }


def _fail(exc: Exception | str) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))
