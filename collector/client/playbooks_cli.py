"""``aftercare playbooks list|lint|keygen|sign``.

``list`` asks the collector; ``lint``, ``keygen`` and ``sign`` are the vendor's
release tools, deprecated here: they moved to `aftercare-vendor` (playbooks.vendor_cli)
and still work, with a note on stderr. They read local files only (the collector never
holds the key).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from collector.client.connection import ApiClient
from collector.client.output import safe
from collector.client.paging import fetch_all
from playbooks import vendor_cli
from proto import api_pb2


def add_commands(commands: Any) -> None:
    p = commands.add_parser("playbooks", help="signed diagnostic playbooks")
    sub = p.add_subparsers(dest="playbooks_command", required=True, metavar="COMMAND")

    listing = sub.add_parser(
        "list", help="playbooks the collector serves", description="List the signed catalogue."
    )
    listing.add_argument("--json", action="store_true", help="print machine-readable JSON")
    listing.set_defaults(handler=_list)

    # Deprecated here: the vendor's release tools are `aftercare-vendor` now.
    vendor_cli.add_commands(sub, wrap=_deprecated)


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


def _deprecated(handler: vendor_cli.Handler) -> Any:
    """Run a vendor tool from its old place, after saying where it moved."""

    def run(_: None, args: argparse.Namespace) -> int:
        print(
            f"note: `aftercare playbooks {args.playbooks_command}` is deprecated and will be "
            f"removed: use `aftercare-vendor {args.playbooks_command}` "
            "(pip install 'aftercare[vendor]'); customers do not need it.",
            file=sys.stderr,
        )
        try:
            return handler(args)
        except ModuleNotFoundError as exc:
            print(
                f"error: the vendor tools need {exc.name}: pip install 'aftercare[vendor]'",
                file=sys.stderr,
            )
            return 1

    return run
