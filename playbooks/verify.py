"""Verification of a signed catalogue: the path every agent runs before it trusts a playbook.

Order (``verify_manifest`` then ``verify_playbook``), each step before the next one
reads anything: signature over the exact manifest bytes with any pinned key (key
rotation) → parse the manifest → validity window → catalogue version not below the
last accepted → no playbook version below the last accepted; then for a playbook:
its manifest entry → sha256 of the exact file bytes → parse the YAML → its name,
version and mode equal the entry's. Formats: ``playbooks.manifest``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

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
from playbooks.loader import load_playbook_bytes, playbook_files
from playbooks.model import Manifest, ManifestEntry, Playbook
from playbooks.semver import parse_semver

if TYPE_CHECKING:
    pass

from playbooks.manifest import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    SIGNATURE_FILE,
    VerifiedCatalogue,
    _format_time,
    _parse_manifest,
    _parse_signature,
)
from playbooks.signing_keys import _key_id, _public_key, _raw_public

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "verify_catalogue",
    "verify_manifest",
    "verify_playbook",
]


DEFAULT_CLOCK_SKEW = timedelta(minutes=5)


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
