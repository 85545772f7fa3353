"""The signed catalogue's manifest: its file names, formats and parsing.

A catalogue is a directory of playbook files plus ``MANIFEST.json`` (name, version,
mode, file and sha256 of every playbook, the catalogue version and a validity window)
and ``MANIFEST.sig`` (an Ed25519 signature over the manifest's exact bytes by the
vendor key). The vendor key lives with the vendor's release process: the collector
only serves the three kinds of file, and agents pin the vendor public key(s).

Verification order (``verify_manifest`` then ``verify_playbook``), each step before
the next one reads anything: signature over the exact manifest bytes with any pinned
key (key rotation) → parse the manifest → validity window → catalogue version not
below the last accepted → no playbook version below the last accepted; then for a
playbook: its manifest entry → sha256 of the exact file bytes → parse the YAML → its
name, version and mode equal the entry's.

Formats (docs/playbooks.md, "Signing"):

- ``MANIFEST.json``: canonical JSON (sorted keys, no whitespace, ASCII, no trailing
  newline): ``{"catalogue_version": N, "expires_at": "...Z", "format": 1,
  "issued_at": "...Z", "playbooks": [{"file", "mode", "name", "sha256", "version"}]}``
  with playbooks sorted by name, times in UTC to the second.
- ``MANIFEST.sig``: one ASCII line ``ed25519 KEY-ID BASE64-SIGNATURE``. The key id
  (first 16 hex digits of the SHA-256 of the raw 32-byte public key) is a hint for
  the error message only: every pinned key is tried whatever it says.
- Keys: PKCS#8 PEM private key (unencrypted, file mode 0600), SubjectPublicKeyInfo
  PEM public key; a raw 32-byte public key is also accepted where keys are trusted.

The cryptography library is imported inside the functions that need it, so that
importing this module (or the loader) does not load it; see agent.identity for why
the long-running agent cares.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from playbooks.errors import (
    BadSignature,
    InvalidManifest,
)
from playbooks.model import Manifest, ManifestEntry, Mode, Playbook
from playbooks.semver import is_semver

if TYPE_CHECKING:
    pass


__all__ = [
    "FORMAT",
    "MANIFEST_FILE",
    "MAX_MANIFEST_BYTES",
    "MAX_SIGNATURE_BYTES",
    "SIGNATURE_FILE",
    "VerifiedCatalogue",
]


FORMAT = 1
MANIFEST_FILE = "MANIFEST.json"
SIGNATURE_FILE = "MANIFEST.sig"
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_SIGNATURE_BYTES = 1024
_ALGORITHM = "ed25519"
_MANIFEST_KEYS = frozenset({"format", "catalogue_version", "issued_at", "expires_at", "playbooks"})
_ENTRY_KEYS = frozenset({"name", "version", "mode", "file", "sha256"})
_MODES: tuple[Mode, ...] = ("read-only", "mutating")
_NAME = re.compile(r"[a-z][a-z0-9-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@dataclass(frozen=True)
class VerifiedCatalogue:
    """A catalogue directory that verified: the manifest, the exact bytes to serve
    (manifest, signature, each playbook file by name) and the parsed playbooks."""

    manifest: Manifest
    manifest_bytes: bytes
    signature: bytes
    files: Mapping[str, bytes] = field(default_factory=dict)  # playbook name -> file bytes
    playbooks: Mapping[str, Playbook] = field(default_factory=dict)  # name -> playbook


def _parse_signature(signature: bytes) -> tuple[str, bytes]:
    malformed = BadSignature(
        f"the signature file is malformed: expected one line `{_ALGORITHM} KEY-ID BASE64`"
    )
    if len(signature) > MAX_SIGNATURE_BYTES:
        raise malformed
    try:
        parts = signature.decode("ascii").split()
    except UnicodeDecodeError as exc:
        raise malformed from exc
    if len(parts) != 3 or parts[0] != _ALGORITHM or not re.fullmatch(r"[0-9a-f]{16}", parts[1]):
        raise malformed
    try:
        raw = base64.b64decode(parts[2], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise malformed from exc
    if len(raw) != 64:
        raise malformed
    return parts[1], raw


def _parse_manifest(data: bytes, signer: str) -> Manifest:
    """The manifest in ``data`` (already verified); InvalidManifest if malformed."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidManifest(f"the signed manifest is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidManifest("the signed manifest is not a JSON object")
    if document.get("format") != FORMAT:
        raise InvalidManifest(
            f"manifest format {document.get('format')!r} is not supported (this version "
            f"reads format {FORMAT}): upgrade aftercare"
        )
    _exact_keys(document, _MANIFEST_KEYS, "the manifest")
    version = document["catalogue_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidManifest(f"catalogue_version must be a whole number >= 1, got {version!r}")
    issued_at = _parse_time(document["issued_at"], "issued_at")
    expires_at = _parse_time(document["expires_at"], "expires_at")
    if expires_at <= issued_at:
        raise InvalidManifest("expires_at is not later than issued_at")
    playbooks = document["playbooks"]
    if not isinstance(playbooks, list):
        raise InvalidManifest("playbooks must be a list")
    entries = tuple(_parse_entry(item) for item in playbooks)
    if len({e.name for e in entries}) != len(entries):
        raise InvalidManifest("the manifest lists a playbook twice")
    return Manifest(FORMAT, version, issued_at, expires_at, entries, signer)


def _parse_entry(item: object) -> ManifestEntry:
    if not isinstance(item, dict):
        raise InvalidManifest("a playbook entry is not a JSON object")
    _exact_keys(item, _ENTRY_KEYS, "a playbook entry")
    name, version, mode = item["name"], item["version"], item["mode"]
    file, sha256 = item["file"], item["sha256"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidManifest(f"invalid playbook name {name!r} in the manifest")
    if not isinstance(version, str) or not is_semver(version):
        raise InvalidManifest(f"invalid version {version!r} for {name!r} in the manifest")
    if mode not in _MODES:
        raise InvalidManifest(f"invalid mode {mode!r} for {name!r} in the manifest")
    if file != f"{name}.yaml":
        raise InvalidManifest(f"the file of {name!r} must be {name}.yaml, not {file!r}")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise InvalidManifest(f"invalid sha256 for {name!r} in the manifest")
    return ManifestEntry(name, version, cast(Mode, mode), file, sha256)


def _exact_keys(document: Mapping[str, object], keys: frozenset[str], what: str) -> None:
    missing, unknown = keys - document.keys(), document.keys() - keys
    if missing or unknown:
        raise InvalidManifest(
            f"{what} must have exactly the keys {', '.join(sorted(keys))} "
            f"(missing: {', '.join(sorted(missing)) or '-'}; "
            f"unknown: {', '.join(sorted(unknown)) or '-'})"
        )


def _format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: object, what: str) -> datetime:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise InvalidManifest(f"{what} must be a UTC time like 2026-01-31T12:00:00Z")
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidManifest(f"{what} {value!r} is not a valid time") from exc
