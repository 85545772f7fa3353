"""``python -m playbooks.sign_dev``: re-sign the shipped catalogue with the development key.

For developers who edit a playbook in ``playbooks/catalogue/``: lints every playbook,
bumps the catalogue version, and writes MANIFEST.json and MANIFEST.sig valid for one
year, signed with the DEVELOPMENT vendor key kept in the repository at
``tests/playbooks/dev-vendor.key`` (never in the package). That key is public
knowledge: production vendors generate their own with ``aftercare-vendor keygen``,
sign with ``aftercare-vendor sign --key KEY DIR``, and pin only their public key.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from common.durations import parse_duration
from playbooks.errors import PlaybookError
from playbooks.shipped import catalogue_dir, dev_public_key_path
from playbooks.sign import write_signed_catalogue
from playbooks.signing_keys import public_key_from_private, read_private_key

__all__ = ["DEV_PRIVATE_KEY", "main"]

DEV_PRIVATE_KEY = Path(__file__).resolve().parents[1] / "tests" / "playbooks" / "dev-vendor.key"


def main(argv: list[str] | None = None) -> int:
    """Sign, print what was signed; 1 (with the reason on stderr) if it cannot."""
    parser = argparse.ArgumentParser(
        prog="python -m playbooks.sign_dev",
        description="Re-sign the shipped playbook catalogue with the DEVELOPMENT vendor key.",
    )
    parser.add_argument("--key", type=Path, default=DEV_PRIVATE_KEY, help="private key (PEM)")
    parser.add_argument("--dir", type=Path, default=catalogue_dir(), help="catalogue directory")
    parser.add_argument("--valid-for", default="365d", help='validity (default "365d")')
    args = parser.parse_args(argv)
    try:
        key = read_private_key(args.key, check_permissions=False)  # git does not keep 0600
        valid_for = timedelta(seconds=parse_duration(args.valid_for))
        manifest = write_signed_catalogue(args.dir, key, valid_for=valid_for)
    except (PlaybookError, ValueError) as exc:
        print(f"sign_dev: {exc}", file=sys.stderr)
        return 1
    print(
        f"signed {len(manifest.playbooks)} playbooks in {args.dir}: catalogue version "
        f"{manifest.catalogue_version}, valid until {manifest.expires_at:%Y-%m-%d %H:%M} UTC, "
        f"DEVELOPMENT key {manifest.signer}"
    )
    if public_key_from_private(key) != dev_public_key_path().read_bytes():
        print(
            f"sign_dev: warning: {args.key} is not the key of {dev_public_key_path()}; "
            "the shipped-catalogue test will fail",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
