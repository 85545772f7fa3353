"""``aftercare playbooks list|lint|keygen|sign``.

``list`` asks the collector; ``lint``, ``keygen`` and ``sign`` are the vendor's
release tools and work on local files only (the collector never holds the key).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from collector.client import arguments
from collector.client.connection import ApiClient
from collector.client.output import safe
from collector.client.paging import fetch_all
from proto import api_pb2


def add_commands(commands: Any) -> None:
    p = commands.add_parser("playbooks", help="signed diagnostic playbooks")
    sub = p.add_subparsers(dest="playbooks_command", required=True, metavar="COMMAND")

    listing = sub.add_parser(
        "list", help="playbooks the collector serves", description="List the signed catalogue."
    )
    listing.add_argument("--json", action="store_true", help="print machine-readable JSON")
    listing.set_defaults(handler=_list)

    lint = sub.add_parser(
        "lint",
        help="check playbook files",
        description="Validate playbook YAML files; prints FILE:LINE: problem, exits 1 on problems.",
    )
    lint.add_argument("path", type=Path, help="a playbook file or a directory of them")
    lint.set_defaults(handler=_lint, local=True)

    keygen = sub.add_parser(
        "keygen",
        help="create a vendor signing key pair",
        description="Write vendor.key (private, 0600: keep it with the release process, never "
        "on the collector) and vendor.pub (pin it in the agents' config).",
    )
    keygen.add_argument("--out", type=Path, default=Path("."), help="directory (.)")
    keygen.set_defaults(handler=_keygen, local=True)

    sign = sub.add_parser(
        "sign",
        help="sign a catalogue directory",
        description="Lint every playbook in DIR and write DIR/MANIFEST.json and MANIFEST.sig.",
    )
    sign.add_argument("directory", type=Path)
    sign.add_argument("--key", type=Path, required=True, help="vendor private key (vendor.key)")
    sign.add_argument(
        "--catalogue-version",
        type=int,
        default=0,
        help="monotonic catalogue version (default: previous + 1)",
    )
    sign.add_argument(
        "--valid-for", type=arguments.duration_ms, default="365d", help="manifest validity (365d)"
    )
    sign.set_defaults(handler=_sign, local=True)


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    reply = fetch_all(client, "ListPlaybooks", api_pb2.ListPlaybooksRequest(), "playbooks")
    if args.json:
        rows = [
            {
                "name": p.name,
                "version": p.version,
                "mode": p.mode,
                "description": p.description,
                "parameters": [
                    {
                        "name": q.name,
                        "type": q.type,
                        "required": q.required,
                        "default": q.default,
                        "choices": list(q.choices),
                        "pattern": q.pattern,
                        "secret": q.secret,
                        "description": q.description,
                    }
                    for q in p.parameters
                ],
            }
            for p in reply.playbooks
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for p in reply.playbooks:
        params = " ".join(
            f"{safe(q.name)}={safe(q.default or '<' + q.type + '>')}" for q in p.parameters
        )
        print(
            f"{safe(p.name):<22} {safe(p.version):<8} {safe(p.mode):<10} {safe(p.description)}"
            f"{'  [' + params + ']' if params else ''}"
        )
    return 0


def _lint(_: None, args: argparse.Namespace) -> int:
    from playbooks.loader import lint

    problems = lint(args.path)
    for line in problems:
        print(line)
    if not problems:
        print(f"{args.path}: OK")
    return 1 if problems else 0


def _keygen(_: None, args: argparse.Namespace) -> int:
    from playbooks.errors import PlaybookError
    from playbooks.signing import write_keypair

    try:
        private, public = write_keypair(args.out)
    except PlaybookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write the keys to {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {private} (keep it secret) and {public} (pin it on agents)")
    return 0


def _sign(_: None, args: argparse.Namespace) -> int:
    from playbooks.errors import PlaybookError
    from playbooks.signing import read_private_key, write_signed_catalogue

    try:
        manifest = write_signed_catalogue(
            args.directory,
            read_private_key(args.key),
            catalogue_version=args.catalogue_version or None,
            valid_for=dt.timedelta(milliseconds=args.valid_for),
        )
    except PlaybookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"signed {len(manifest.playbooks)} playbooks, catalogue version "
        f"{manifest.catalogue_version}, expires {manifest.expires_at}"
    )
    return 0
