"""Signing a catalogue: vendor release tooling (`aftercare-vendor sign`), never run by an agent."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from common.atomic import write_atomic
from playbooks.errors import (
    DowngradeRefused,
)
from playbooks.loader import load_catalogue_files
from playbooks.model import Manifest, ManifestEntry

if TYPE_CHECKING:
    pass

from playbooks.manifest import (
    _ALGORITHM,
    FORMAT,
    MANIFEST_FILE,
    SIGNATURE_FILE,
    _format_time,
    _parse_manifest,
)
from playbooks.signing_keys import _key_id, _private_key, _raw_public

__all__ = [
    "DEFAULT_VALIDITY",
    "build_manifest",
    "next_catalogue_version",
    "sign_catalogue",
    "sign_manifest",
    "write_signed_catalogue",
]


DEFAULT_VALIDITY = timedelta(days=365)


def build_manifest(
    entries: Sequence[ManifestEntry],
    *,
    catalogue_version: int,
    issued_at: datetime,
    expires_at: datetime,
) -> bytes:
    """The canonical manifest bytes for ``entries`` (sorted by name)."""
    if isinstance(catalogue_version, bool) or catalogue_version < 1:
        raise ValueError(f"catalogue_version must be a whole number >= 1, got {catalogue_version}")
    if expires_at <= issued_at:
        raise ValueError("expires_at must be later than issued_at")
    document = {
        "format": FORMAT,
        "catalogue_version": catalogue_version,
        "issued_at": _format_time(issued_at),
        "expires_at": _format_time(expires_at),
        "playbooks": [
            {
                "name": e.name,
                "version": e.version,
                "mode": e.mode,
                "file": e.file,
                "sha256": e.sha256,
            }
            for e in sorted(entries, key=lambda e: e.name)
        ],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_manifest(manifest_bytes: bytes, private_key_pem: bytes) -> bytes:
    """The ``MANIFEST.sig`` content for ``manifest_bytes``: ``ed25519 KEY-ID BASE64\\n``."""
    key = _private_key(private_key_pem)
    signature = key.sign(manifest_bytes)
    signer = _key_id(_raw_public(key.public_key()))
    return f"{_ALGORITHM} {signer} {base64.b64encode(signature).decode()}\n".encode()


def sign_catalogue(
    directory: Path,
    private_key_pem: bytes,
    *,
    catalogue_version: int,
    valid_for: timedelta,
    now: datetime | None = None,
) -> tuple[bytes, bytes]:
    """(manifest bytes, signature bytes) for the playbooks in ``directory``, valid from
    ``now`` for ``valid_for``. Every playbook is linted first: InvalidPlaybook (listing
    every problem) and nothing is signed if any is invalid."""
    if valid_for <= timedelta(0):
        raise ValueError("valid_for must be longer than 0")
    _private_key(private_key_pem)  # fail before any work: a bad key is the likelier mistake
    loaded = load_catalogue_files(Path(directory))
    entries = [
        ManifestEntry(
            name=item.playbook.name,
            version=item.playbook.version,
            mode=item.playbook.mode,
            file=item.path.name,
            sha256=hashlib.sha256(item.data).hexdigest(),
        )
        for item in loaded
    ]
    issued_at = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    manifest = build_manifest(
        entries,
        catalogue_version=catalogue_version,
        issued_at=issued_at,
        expires_at=issued_at + valid_for,
    )
    return manifest, sign_manifest(manifest, private_key_pem)


def next_catalogue_version(directory: Path) -> int:
    """One more than the catalogue version in ``directory``'s MANIFEST.json (1 if none).

    Read without verification: it only picks the number the signer writes next."""
    try:
        current = json.loads((Path(directory) / MANIFEST_FILE).read_bytes())
        version = current["catalogue_version"]
    except (OSError, ValueError, KeyError, TypeError):
        return 1
    return version + 1 if isinstance(version, int) and not isinstance(version, bool) else 1


def write_signed_catalogue(
    directory: Path,
    private_key_pem: bytes,
    *,
    catalogue_version: int | None = None,
    valid_for: timedelta = DEFAULT_VALIDITY,
    now: datetime | None = None,
) -> Manifest:
    """Sign the catalogue in ``directory`` and write MANIFEST.json and MANIFEST.sig there.

    ``catalogue_version`` defaults to one more than the current one; a version not
    higher than the current one is refused (DowngradeRefused: agents that accepted the
    current one would refuse it, or worse, accept different content under its number).
    Returns the manifest written."""
    directory = Path(directory)
    current = next_catalogue_version(directory) - 1
    version = current + 1 if catalogue_version is None else catalogue_version
    if version <= current:
        raise DowngradeRefused(
            f"catalogue_version {version} is not higher than the current {current} in "
            f"{directory / MANIFEST_FILE}: use {current + 1} or more"
        )
    manifest_bytes, signature = sign_catalogue(
        directory, private_key_pem, catalogue_version=version, valid_for=valid_for, now=now
    )
    write_atomic(directory / MANIFEST_FILE, manifest_bytes, 0o644)
    write_atomic(directory / SIGNATURE_FILE, signature, 0o644)
    signer = _key_id(_raw_public(_private_key(private_key_pem).public_key()))
    return _parse_manifest(manifest_bytes, signer)
