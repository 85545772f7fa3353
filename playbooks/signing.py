"""Signed catalogues: vendor keys, the manifest, signing, and verification.

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
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast

from common.atomic import write_atomic
from playbooks.errors import (
    BadSignature,
    DigestMismatch,
    DowngradeRefused,
    InvalidManifest,
    ManifestExpired,
    ManifestMismatch,
    ManifestNotYetValid,
    ModeMismatch,
    NotInManifest,
    UnknownSigner,
    UnsignedCatalogue,
    VendorKeyError,
)
from playbooks.loader import load_catalogue_files, load_playbook_bytes, playbook_files
from playbooks.model import Manifest, ManifestEntry, Mode, Playbook
from playbooks.semver import is_semver, parse_semver

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_VALIDITY",
    "FORMAT",
    "MANIFEST_FILE",
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "SIGNATURE_FILE",
    "VerifiedCatalogue",
    "build_manifest",
    "generate_keypair",
    "key_id",
    "next_catalogue_version",
    "public_key_from_private",
    "read_private_key",
    "sign_catalogue",
    "sign_manifest",
    "verify_catalogue",
    "verify_manifest",
    "verify_playbook",
    "write_keypair",
    "write_signed_catalogue",
]

FORMAT = 1
MANIFEST_FILE = "MANIFEST.json"
SIGNATURE_FILE = "MANIFEST.sig"
PRIVATE_KEY_FILE = "vendor.key"
PUBLIC_KEY_FILE = "vendor.pub"
DEFAULT_VALIDITY = timedelta(days=365)
DEFAULT_CLOCK_SKEW = timedelta(minutes=5)
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


# -- keys --------------------------------------------------------------------------------


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh Ed25519 vendor key: (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, _public_pem(key.public_key())


def write_keypair(out_dir: Path) -> tuple[Path, Path]:
    """Write a fresh ``vendor.key`` (mode 0600) and ``vendor.pub`` into ``out_dir``
    (created if missing); returns their paths. Never overwrites an existing key:
    raises VendorKeyError instead."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / PRIVATE_KEY_FILE, out_dir / PUBLIC_KEY_FILE
    for path in (private_path, public_path):
        if path.exists():
            raise VendorKeyError(f"{path} already exists; refusing to overwrite a vendor key")
    private_pem, public_pem = generate_keypair()
    _write_exclusive(private_path, private_pem, 0o600)
    _write_exclusive(public_path, public_pem, 0o644)
    return private_path, public_path


def read_private_key(path: Path, *, check_permissions: bool = True) -> bytes:
    """The PEM bytes of the vendor private key at ``path``. With ``check_permissions``
    (the default), a key readable by group or others is refused, as ssh does."""
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise VendorKeyError(f"{path}: cannot read the vendor key: {exc.strerror}") from exc
    if check_permissions and mode & 0o077:
        raise VendorKeyError(
            f"{path}: the vendor key is readable by other users (mode {mode:04o}): chmod 600 it"
        )
    _private_key(data, str(path))  # fail early on a file that is not a key
    return data


def public_key_from_private(private_pem: bytes) -> bytes:
    """The public key (PEM) that belongs to ``private_pem``."""
    return _public_pem(_private_key(private_pem).public_key())


def key_id(public_key: bytes) -> str:
    """A short id of a public key (PEM or raw 32 bytes): 16 hex digits of its SHA-256."""
    return _key_id(_raw_public(_public_key(public_key)))


def _key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def _private_key(pem: bytes, where: str = "the vendor private key") -> Ed25519PrivateKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise VendorKeyError(
            f"{where} is not an unencrypted PEM private key (make one with "
            f"`aftercare-vendor keygen`)"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise VendorKeyError(f"{where} is not an Ed25519 key")
    return key


def _public_key(data: bytes) -> Ed25519PublicKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if len(data) == 32:
        try:
            return Ed25519PublicKey.from_public_bytes(data)
        except ValueError as exc:
            raise VendorKeyError("a trusted vendor key is not a valid Ed25519 key") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise VendorKeyError("a trusted vendor key is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise VendorKeyError("a trusted vendor key is not an Ed25519 key")
    return key


def _public_pem(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _raw_public(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# -- signing -----------------------------------------------------------------------------


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


# -- verification ------------------------------------------------------------------------


def verify_manifest(
    manifest_bytes: bytes,
    signature: bytes | None,
    trusted_public_keys: Sequence[bytes],
    *,
    now: datetime,
    min_catalogue_version: int | None = None,
    pinned_versions: Mapping[str, str] | None = None,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> Manifest:
    """The manifest in ``manifest_bytes`` if ``signature`` (the MANIFEST.sig content)
    verifies over those exact bytes with one of ``trusted_public_keys`` — before any
    parsing — and it is within its validity window at ``now`` (aware datetime; issue
    time may be ``clock_skew`` ahead), its catalogue version is not below
    ``min_catalogue_version`` and no playbook version is below ``pinned_versions[name]``.

    Raises UnsignedCatalogue, BadSignature, UnknownSigner, InvalidManifest,
    ManifestExpired, ManifestNotYetValid, DowngradeRefused or VendorKeyError."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    signer = _check_signature(manifest_bytes, signature, trusted_public_keys)
    manifest = _parse_manifest(manifest_bytes, signer)
    _check_validity(manifest, now, clock_skew)
    _check_versions(manifest, min_catalogue_version, pinned_versions or {})
    return manifest


def verify_playbook(manifest: Manifest, name: str, file_bytes: bytes) -> Playbook:
    """The playbook ``name`` parsed from ``file_bytes`` if the sha256 of those exact
    bytes equals its manifest entry's (checked before parsing) and the file's name,
    version and mode equal the entry's.

    Raises NotInManifest, DigestMismatch, InvalidPlaybook, ManifestMismatch or
    ModeMismatch."""
    entry = manifest.entry(name)
    if entry is None:
        raise NotInManifest(
            f"playbook {name!r} is not in the signed catalogue (version "
            f"{manifest.catalogue_version}); only signed playbooks run"
        )
    digest = hashlib.sha256(file_bytes).hexdigest()
    if not hmac.compare_digest(digest, entry.sha256):
        raise DigestMismatch(
            f"playbook {name!r} ({entry.file}) does not match the signed manifest: its "
            f"sha256 is {digest}, the manifest says {entry.sha256}; the file was altered "
            f"or the catalogue must be signed again"
        )
    playbook = load_playbook_bytes(file_bytes, entry.file)
    _check_entry(entry, playbook)
    return playbook


def verify_catalogue(
    directory: Path,
    trusted_public_keys: Sequence[bytes],
    *,
    now: datetime,
    min_catalogue_version: int | None = None,
    pinned_versions: Mapping[str, str] | None = None,
) -> VerifiedCatalogue:
    """Verify the catalogue directory ``directory``: its manifest (``verify_manifest``),
    every playbook it lists (``verify_playbook``), and that no ``*.yaml`` file in it is
    left out of the manifest. Raises the errors of both, UnsignedCatalogue when
    MANIFEST.json or MANIFEST.sig is missing."""
    directory = Path(directory)
    manifest_bytes = _read_catalogue_file(directory / MANIFEST_FILE)
    signature = _read_catalogue_file(directory / SIGNATURE_FILE)
    manifest = verify_manifest(
        manifest_bytes,
        signature,
        trusted_public_keys,
        now=now,
        min_catalogue_version=min_catalogue_version,
        pinned_versions=pinned_versions,
    )
    files: dict[str, bytes] = {}
    playbooks: dict[str, Playbook] = {}
    for entry in manifest.playbooks:
        try:
            files[entry.name] = (directory / entry.file).read_bytes()
        except OSError as exc:
            raise DigestMismatch(
                f"{directory / entry.file}: listed in the signed manifest but cannot be "
                f"read ({exc.strerror})"
            ) from exc
        playbooks[entry.name] = verify_playbook(manifest, entry.name, files[entry.name])
    listed = {entry.file for entry in manifest.playbooks}
    for path in playbook_files(directory):
        if path.name not in listed:
            raise NotInManifest(
                f"{path} is not in the signed manifest: sign the catalogue again "
                f"(aftercare-vendor sign) or remove the file"
            )
    return VerifiedCatalogue(manifest, manifest_bytes, signature, files, playbooks)


def _read_catalogue_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise UnsignedCatalogue(
            f"{path} is missing: the catalogue is not signed (sign it with "
            f"`aftercare-vendor sign --key KEY {path.parent}`)"
        ) from exc
    except OSError as exc:
        raise UnsignedCatalogue(f"{path}: cannot read: {exc.strerror}") from exc


def _check_signature(
    manifest_bytes: bytes, signature: bytes | None, trusted_public_keys: Sequence[bytes]
) -> str:
    """The key id of the trusted key whose signature ``signature`` is over
    ``manifest_bytes``; raises if none."""
    from cryptography.exceptions import InvalidSignature

    if not signature or not signature.strip():
        raise UnsignedCatalogue("the catalogue manifest has no signature: it is not trusted")
    if len(manifest_bytes) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    claimed, raw_signature = _parse_signature(signature)
    if not trusted_public_keys:
        raise VendorKeyError("no trusted vendor public key is configured")
    trusted = [(_raw_public(key), key) for key in map(_public_key, trusted_public_keys)]
    for raw, key in trusted:
        try:
            key.verify(raw_signature, manifest_bytes)
        except InvalidSignature:
            continue
        return _key_id(raw)
    ids = [_key_id(raw) for raw, _ in trusted]
    if claimed in ids:
        raise BadSignature(
            f"the catalogue signature does not verify with the trusted vendor key {claimed}: "
            f"the manifest or its signature was altered"
        )
    raise UnknownSigner(
        f"the catalogue is not signed by a trusted vendor key (its signature names key "
        f"{claimed}; trusted: {', '.join(ids)})"
    )


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


def _check_validity(manifest: Manifest, now: datetime, skew: timedelta) -> None:
    if now >= manifest.expires_at:
        raise ManifestExpired(
            f"the catalogue manifest (version {manifest.catalogue_version}) expired at "
            f"{_format_time(manifest.expires_at)} (now {_format_time(now)}): the vendor "
            f"must sign a current catalogue"
        )
    if manifest.issued_at - skew > now:
        raise ManifestNotYetValid(
            f"the catalogue manifest was issued at {_format_time(manifest.issued_at)}, in "
            f"the future (now {_format_time(now)}): check this host's clock"
        )


def _check_versions(manifest: Manifest, minimum: int | None, pinned: Mapping[str, str]) -> None:
    if minimum is not None and manifest.catalogue_version < minimum:
        raise DowngradeRefused(
            f"catalogue version {manifest.catalogue_version} is older than version "
            f"{minimum} already accepted: refusing a downgrade (an old catalogue could "
            f"bring back withdrawn or vulnerable playbooks)"
        )
    for entry in manifest.playbooks:
        seen = pinned.get(entry.name)
        if seen is None:
            continue
        try:
            older = parse_semver(entry.version) < parse_semver(seen)
        except ValueError as exc:
            raise DowngradeRefused(
                f"the accepted version {seen!r} of {entry.name!r} is not a version; "
                f"refusing the catalogue until the agent's state is repaired"
            ) from exc
        if older:
            raise DowngradeRefused(
                f"playbook {entry.name!r} version {entry.version} is older than version "
                f"{seen} already accepted: refusing a downgrade"
            )


def _check_entry(entry: ManifestEntry, playbook: Playbook) -> None:
    if playbook.name != entry.name or playbook.version != entry.version:
        raise ManifestMismatch(
            f"{entry.file} holds {playbook.name} {playbook.version}, but the manifest "
            f"entry is {entry.name} {entry.version}"
        )
    if playbook.mode != entry.mode:
        raise ModeMismatch(
            f"playbook {entry.name!r} declares mode {playbook.mode}, but the signed manifest "
            f"says {entry.mode}"
        )


# -- files -------------------------------------------------------------------------------


def _write_exclusive(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as exc:
        raise VendorKeyError(f"{path} already exists; refusing to overwrite a vendor key") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
