"""``aftercare-vendor``: the vendor's release tools — ``keygen``, ``sign``, ``lint``.

They run in the vendor's release process, need no collector, and are installed with
``pip install 'aftercare[vendor]'``; customers never need them. The agent's verification
path does not import this module (tests/test_roles.py checks it). The signing and lint
code is imported only when a command runs, so registering these commands elsewhere
(the deprecated ``aftercare playbooks keygen|sign|lint``) costs no dependency.

Exit codes: 0 ok, 1 problems found or refused (message on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.safe_text import guarded_main

PROG = "aftercare-vendor"
Handler = Callable[[argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run one command; output guarded like the other programs'
    (``common.safe_text``: file names and lint messages escaped, 130 on Ctrl-C)."""
    return guarded_main(lambda: build_parser().parse_args(argv), _run)


def build_parser() -> argparse.ArgumentParser:
    """The ``aftercare-vendor`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The vendor's playbook release tools: create the signing key, lint "
        "and sign the catalogue. No collector is needed; keep the private key here.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_commands(commands, wrap=lambda handler: handler)
    return parser


def _run(args: argparse.Namespace) -> int:
    result: int = args.vendor_handler(args)
    return result


def add_commands(commands: Any, wrap: Callable[[Handler], Any]) -> None:
    """Register ``lint``, ``keygen`` and ``sign`` on ``commands`` (an argparse
    subparsers object); ``wrap`` turns each handler into what the caller dispatches."""
    lint = commands.add_parser(
        "lint",
        help="check playbook files",
        description="Validate playbook YAML files; prints FILE:LINE: problem, exits 1 on problems.",
    )
    lint.add_argument("path", type=Path, help="a playbook file or a directory of them")
    _json_arg(lint)
    lint.set_defaults(vendor_handler=lint_command, handler=wrap(lint_command), local=True)

    keygen = commands.add_parser(
        "keygen",
        help="create a vendor signing key pair",
        description="Write vendor.key (private, 0600: keep it with the release process, never "
        "on the collector) and vendor.pub (pin it in the agents' config).",
    )
    keygen.add_argument("--out", type=Path, default=Path("."), help="directory (.)")
    _json_arg(keygen)
    keygen.set_defaults(vendor_handler=keygen_command, handler=wrap(keygen_command), local=True)

    sign = commands.add_parser(
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
        "--valid-for",
        type=_duration,
        default=_duration("365d"),
        help='manifest validity, a duration such as "365d" or "90d" (365d)',
    )
    _json_arg(sign)
    sign.set_defaults(vendor_handler=sign_command, handler=wrap(sign_command), local=True)


def lint_command(args: argparse.Namespace) -> int:
    """Print every problem as FILE:LINE: message; 1 if there is any."""
    from playbooks.loader import lint

    problems = lint(args.path)
    if _wants_json(args):
        print(json.dumps({"path": str(args.path), "problems": problems}, indent=2))
        return 1 if problems else 0
    for line in problems:
        print(line)
    if not problems:
        print(f"{args.path}: OK")
    return 1 if problems else 0


def keygen_command(args: argparse.Namespace) -> int:
    """Write vendor.key (0600) and vendor.pub into ``--out``."""
    from playbooks.errors import PlaybookError
    from playbooks.signing_keys import write_keypair

    try:
        private, public = write_keypair(args.out)
    except PlaybookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write the keys to {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if _wants_json(args):
        print(json.dumps({"private_key": str(private), "public_key": str(public)}, indent=2))
    else:
        print(f"wrote {private} (keep it secret) and {public} (pin it on agents)")
    return 0


def sign_command(args: argparse.Namespace) -> int:
    """Lint and sign the catalogue directory; 1 with the reason if it cannot."""
    from playbooks.errors import PlaybookError
    from playbooks.sign import write_signed_catalogue
    from playbooks.signing_keys import read_private_key

    try:
        manifest = write_signed_catalogue(
            args.directory,
            read_private_key(args.key),
            catalogue_version=args.catalogue_version or None,
            valid_for=args.valid_for,
        )
    except PlaybookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if _wants_json(args):
        summary = {
            "playbooks": len(manifest.playbooks),
            "catalogue_version": manifest.catalogue_version,
            "expires_at": str(manifest.expires_at),
        }
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"signed {len(manifest.playbooks)} playbooks, catalogue version "
            f"{manifest.catalogue_version}, expires {manifest.expires_at}"
        )
    return 0


def _duration(text: str) -> dt.timedelta:
    from common.durations import parse_duration

    try:
        return dt.timedelta(seconds=parse_duration(text))
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


if __name__ == "__main__":
    sys.exit(main())
