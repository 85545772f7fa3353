"""Signed catalogues: the round trip works, and every attack fails safely with its own
error: unsigned, altered playbook, altered manifest, another signer, expiry, version
downgrades, mode mismatch, unlisted files, malformed manifests, bad keys."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from playbooks import errors
from playbooks.errors import (
    BadSignature,
    DigestMismatch,
    DowngradeRefused,
    InvalidManifest,
    InvalidPlaybook,
    ManifestExpired,
    ManifestMismatch,
    ManifestNotYetValid,
    ModeMismatch,
    NotInManifest,
    PlaybookError,
    UnknownSigner,
    UnsignedCatalogue,
    VendorKeyError,
)
from playbooks.manifest import MANIFEST_FILE, SIGNATURE_FILE
from playbooks.model import ManifestEntry
from playbooks.sign import build_manifest, sign_catalogue, sign_manifest, write_signed_catalogue
from playbooks.signing_keys import key_id, public_key_from_private, read_private_key, write_keypair
from playbooks.verify import verify_catalogue, verify_manifest, verify_playbook
from tests.playbooks.conftest import NOW, VALIDITY


def files(catalogue: Path) -> tuple[bytes, bytes]:
    return (catalogue / MANIFEST_FILE).read_bytes(), (catalogue / SIGNATURE_FILE).read_bytes()


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def test_a_signed_catalogue_verifies(catalogue: Path, dev_pub: bytes) -> None:
    verified = verify_catalogue(catalogue, [dev_pub], now=NOW)
    manifest = verified.manifest
    assert manifest.catalogue_version == 7
    assert manifest.issued_at == NOW and manifest.expires_at == NOW + VALIDITY
    assert manifest.signer == key_id(dev_pub)
    assert len(manifest.playbooks) == 10 and set(verified.playbooks) == set(verified.files)
    entry = manifest.entry("disk-usage")
    assert entry is not None and entry.file == "disk-usage.yaml" and entry.mode == "read-only"
    data = (catalogue / "disk-usage.yaml").read_bytes()
    assert entry.sha256 == hashlib.sha256(data).hexdigest() and verified.files["disk-usage"] == data
    assert manifest.versions()["disk-usage"] == "1.0.0"


def test_the_manifest_is_canonical_json(catalogue: Path, dev_key: bytes) -> None:
    manifest_bytes, _ = files(catalogue)
    document = json.loads(manifest_bytes)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    assert manifest_bytes == canonical
    assert set(document) == {"format", "catalogue_version", "issued_at", "expires_at", "playbooks"}
    assert document["issued_at"] == "2030-01-01T12:00:00Z"
    assert [p["name"] for p in document["playbooks"]] == sorted(
        p["name"] for p in document["playbooks"]
    )
    again, _ = sign_catalogue(catalogue, dev_key, catalogue_version=7, valid_for=VALIDITY, now=NOW)
    assert again == manifest_bytes  # deterministic


def test_signature_file_format(catalogue: Path, dev_pub: bytes) -> None:
    _, signature = files(catalogue)
    algorithm, signer, encoded = signature.decode().split()
    assert algorithm == "ed25519" and signer == key_id(dev_pub) and len(encoded) == 88
    assert signature.endswith(b"\n")


# -- unsigned --------------------------------------------------------------------------


@pytest.mark.parametrize("missing", [SIGNATURE_FILE, MANIFEST_FILE])
def test_an_unsigned_catalogue_is_refused(catalogue: Path, dev_pub: bytes, missing: str) -> None:
    (catalogue / missing).unlink()
    with pytest.raises(UnsignedCatalogue, match="not signed"):
        verify_catalogue(catalogue, [dev_pub], now=NOW)


@pytest.mark.parametrize("signature", [None, b"", b" \n"])
def test_a_manifest_without_signature_is_refused(
    catalogue: Path, dev_pub: bytes, signature: bytes | None
) -> None:
    manifest_bytes, _ = files(catalogue)
    with pytest.raises(UnsignedCatalogue):
        verify_manifest(manifest_bytes, signature, [dev_pub], now=NOW)


# -- one byte changed --------------------------------------------------------------------


def test_one_byte_changed_in_a_playbook(catalogue: Path, dev_pub: bytes) -> None:
    path = catalogue / "disk-usage.yaml"
    data = path.read_bytes()
    index = data.index(b"df, -h")
    path.write_bytes(data[:index] + b"rm" + data[index + 2 :])
    with pytest.raises(DigestMismatch, match=r"'disk-usage'.*does not match the signed manifest"):
        verify_catalogue(catalogue, [dev_pub], now=NOW)


def test_the_digest_is_checked_before_the_yaml_is_parsed(catalogue: Path, dev_pub: bytes) -> None:
    manifest = verify_catalogue(catalogue, [dev_pub], now=NOW).manifest
    with pytest.raises(DigestMismatch):  # not InvalidPlaybook: the YAML is never read
        verify_playbook(manifest, "disk-usage", b"!!python/object/apply:os.system ['reboot']")


@pytest.mark.parametrize("where", [0, 40, -3])
def test_one_byte_changed_in_the_manifest(catalogue: Path, dev_pub: bytes, where: int) -> None:
    manifest_bytes, signature = files(catalogue)
    with pytest.raises(BadSignature) as raised:
        verify_manifest(
            flip(manifest_bytes, where % len(manifest_bytes)), signature, [dev_pub], now=NOW
        )
    assert type(raised.value) is BadSignature
    assert "altered" in str(raised.value)


def test_the_signature_covers_exact_bytes_not_the_json(catalogue: Path, dev_pub: bytes) -> None:
    manifest_bytes, signature = files(catalogue)
    same_json = json.dumps(json.loads(manifest_bytes), sort_keys=True, indent=1).encode()
    with pytest.raises(BadSignature):
        verify_manifest(same_json, signature, [dev_pub], now=NOW)
    with pytest.raises(BadSignature):  # checked before parsing: garbage is a bad signature
        verify_manifest(b"\x00not json", signature, [dev_pub], now=NOW)


def test_one_byte_changed_in_the_signature(catalogue: Path, dev_pub: bytes) -> None:
    manifest_bytes, signature = files(catalogue)
    algorithm, signer, encoded = signature.decode().split()
    tampered = f"{algorithm} {signer} {'B' if encoded[0] == 'A' else 'A'}{encoded[1:]}".encode()
    with pytest.raises(BadSignature):
        verify_manifest(manifest_bytes, tampered, [dev_pub], now=NOW)


@pytest.mark.parametrize(
    "signature",
    [
        b"garbage",
        b"rsa 0123456789abcdef AAAA",
        b"ed25519 0123456789abcdef not-base64!",
        b"\xff" * 10,
    ],
)
def test_a_malformed_signature_file(catalogue: Path, dev_pub: bytes, signature: bytes) -> None:
    manifest_bytes, _ = files(catalogue)
    with pytest.raises(BadSignature, match="malformed"):
        verify_manifest(manifest_bytes, signature, [dev_pub], now=NOW)


# -- signed by another key ---------------------------------------------------------------


def test_signed_by_another_key(
    catalogue: Path, dev_pub: bytes, stranger: tuple[bytes, bytes]
) -> None:
    manifest_bytes, _ = files(catalogue)
    forged = sign_manifest(manifest_bytes, stranger[0])
    with pytest.raises(UnknownSigner, match="not signed by a trusted vendor key"):
        verify_manifest(manifest_bytes, forged, [dev_pub], now=NOW)


def test_another_key_claiming_a_trusted_key_id(
    catalogue: Path, dev_pub: bytes, stranger: tuple[bytes, bytes]
) -> None:
    manifest_bytes, _ = files(catalogue)
    _, _, encoded = sign_manifest(manifest_bytes, stranger[0]).decode().split()
    claimed = f"ed25519 {key_id(dev_pub)} {encoded}".encode()
    with pytest.raises(BadSignature):
        verify_manifest(manifest_bytes, claimed, [dev_pub], now=NOW)


def test_key_rotation_tries_every_pinned_key(
    catalogue: Path, dev_pub: bytes, stranger: tuple[bytes, bytes]
) -> None:
    manifest_bytes, signature = files(catalogue)
    manifest = verify_manifest(manifest_bytes, signature, [stranger[1], dev_pub], now=NOW)
    assert manifest.signer == key_id(dev_pub)
    raw = dev_pub  # a raw 32-byte public key is accepted too
    from cryptography.hazmat.primitives import serialization

    raw_bytes = serialization.load_pem_public_key(raw).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert verify_manifest(manifest_bytes, signature, [raw_bytes], now=NOW).signer == key_id(
        dev_pub
    )


def test_no_trusted_key_or_a_bad_one(catalogue: Path) -> None:
    manifest_bytes, signature = files(catalogue)
    with pytest.raises(VendorKeyError, match="no trusted vendor public key"):
        verify_manifest(manifest_bytes, signature, [], now=NOW)
    with pytest.raises(VendorKeyError, match="not a PEM public key"):
        verify_manifest(manifest_bytes, signature, [b"not a key"], now=NOW)


# -- expiry ------------------------------------------------------------------------------


def test_an_expired_manifest(catalogue: Path, dev_pub: bytes) -> None:
    manifest_bytes, signature = files(catalogue)
    verify_manifest(manifest_bytes, signature, [dev_pub], now=NOW + VALIDITY - timedelta(seconds=1))
    for late in (NOW + VALIDITY, NOW + VALIDITY + timedelta(days=400)):
        with pytest.raises(ManifestExpired, match="expired at 2030-01-31T12:00:00Z"):
            verify_manifest(manifest_bytes, signature, [dev_pub], now=late)


def test_a_manifest_from_the_future(catalogue: Path, dev_pub: bytes) -> None:
    manifest_bytes, signature = files(catalogue)
    verify_manifest(manifest_bytes, signature, [dev_pub], now=NOW - timedelta(minutes=4))  # skew
    with pytest.raises(ManifestNotYetValid, match="check this host's clock"):
        verify_manifest(manifest_bytes, signature, [dev_pub], now=NOW - timedelta(minutes=6))


def test_now_must_be_timezone_aware(catalogue: Path, dev_pub: bytes) -> None:
    manifest_bytes, signature = files(catalogue)
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_manifest(manifest_bytes, signature, [dev_pub], now=NOW.replace(tzinfo=None))


# -- downgrades --------------------------------------------------------------------------


def test_a_catalogue_version_downgrade(catalogue: Path, dev_pub: bytes) -> None:
    manifest_bytes, signature = files(catalogue)
    verify_manifest(manifest_bytes, signature, [dev_pub], now=NOW, min_catalogue_version=7)
    with pytest.raises(DowngradeRefused, match="catalogue version 7 is older than version 8"):
        verify_manifest(manifest_bytes, signature, [dev_pub], now=NOW, min_catalogue_version=8)


def test_replaying_an_old_signed_catalogue(catalogue: Path, dev_key: bytes, dev_pub: bytes) -> None:
    old = files(catalogue)
    path = catalogue / "disk-usage.yaml"
    path.write_text(path.read_text().replace("version: 1.0.0", "version: 1.1.0"))
    write_signed_catalogue(catalogue, dev_key, valid_for=VALIDITY, now=NOW)
    accepted = verify_catalogue(catalogue, [dev_pub], now=NOW).manifest  # the agent keeps:
    state = accepted.catalogue_version, accepted.versions()
    assert state[0] == 8 and state[1]["disk-usage"] == "1.1.0"
    with pytest.raises(DowngradeRefused):
        verify_manifest(
            *old, [dev_pub], now=NOW, min_catalogue_version=state[0], pinned_versions=state[1]
        )


def test_a_playbook_version_downgrade(catalogue: Path, dev_pub: bytes) -> None:
    manifest_bytes, signature = files(catalogue)
    for seen in ("1.0.0", "0.9.9", "0.10.0"):
        verify_manifest(
            manifest_bytes, signature, [dev_pub], now=NOW, pinned_versions={"disk-usage": seen}
        )
    for seen in ("1.0.1", "1.1.0", "2.0.0", "1.0.10"):
        with pytest.raises(
            DowngradeRefused, match=f"'disk-usage' version 1.0.0 is older than version {seen}"
        ):
            verify_manifest(
                manifest_bytes, signature, [dev_pub], now=NOW, pinned_versions={"disk-usage": seen}
            )


def test_a_newer_catalogue_that_downgrades_one_playbook(
    catalogue: Path, dev_key: bytes, dev_pub: bytes
) -> None:
    write_signed_catalogue(catalogue, dev_key, catalogue_version=9, valid_for=VALIDITY, now=NOW)
    with pytest.raises(DowngradeRefused, match=r"'network' version 1.0.0"):
        verify_catalogue(
            catalogue,
            [dev_pub],
            now=NOW,
            min_catalogue_version=8,
            pinned_versions={"network": "1.2.0"},
        )


def test_the_signer_refuses_to_reuse_or_lower_a_catalogue_version(
    catalogue: Path, dev_key: bytes
) -> None:
    for version in (7, 3):
        with pytest.raises(DowngradeRefused, match="use 8 or more"):
            write_signed_catalogue(catalogue, dev_key, catalogue_version=version, now=NOW)
    assert write_signed_catalogue(catalogue, dev_key, now=NOW).catalogue_version == 8


# -- the file against its entry ----------------------------------------------------------


def sign_entries(catalogue: Path, key: bytes, change: dict[str, str]) -> tuple[bytes, bytes]:
    """Sign a manifest for disk-usage.yaml whose entry has the fields in ``change``."""
    data = (catalogue / "disk-usage.yaml").read_bytes()
    entry = {
        "name": "disk-usage",
        "version": "1.0.0",
        "mode": "read-only",
        "file": "disk-usage.yaml",
    }
    entry.update(change)
    manifest = build_manifest(
        [ManifestEntry(sha256=hashlib.sha256(data).hexdigest(), **entry)],  # type: ignore[arg-type]
        catalogue_version=1,
        issued_at=NOW,
        expires_at=NOW + VALIDITY,
    )
    return manifest, sign_manifest(manifest, key)


def test_a_mode_mismatch(catalogue: Path, dev_key: bytes, dev_pub: bytes) -> None:
    signed = sign_entries(catalogue, dev_key, {"mode": "mutating"})
    manifest = verify_manifest(*signed, [dev_pub], now=NOW)
    with pytest.raises(
        ModeMismatch, match="declares mode read-only, but the signed manifest says mutating"
    ):
        verify_playbook(manifest, "disk-usage", (catalogue / "disk-usage.yaml").read_bytes())


def test_a_mode_mismatch_the_other_way(catalogue: Path, dev_key: bytes, dev_pub: bytes) -> None:
    """A file that says mutating under an entry that says read-only (its digest matches:
    a hand-made or buggy manifest) is refused on the mode."""
    path = catalogue / "disk-usage.yaml"
    path.write_text(path.read_text().replace("mode: read-only", "mode: mutating"))
    signed = sign_entries(catalogue, dev_key, {})
    manifest = verify_manifest(*signed, [dev_pub], now=NOW)
    with pytest.raises(ModeMismatch):
        verify_playbook(manifest, "disk-usage", path.read_bytes())


def test_a_version_mismatch(catalogue: Path, dev_key: bytes, dev_pub: bytes) -> None:
    manifest = verify_manifest(
        *sign_entries(catalogue, dev_key, {"version": "2.0.0"}), [dev_pub], now=NOW
    )
    with pytest.raises(ManifestMismatch, match=r"holds disk-usage 1.0.0"):
        verify_playbook(manifest, "disk-usage", (catalogue / "disk-usage.yaml").read_bytes())


def test_a_playbook_not_in_the_manifest(catalogue: Path, dev_pub: bytes) -> None:
    manifest = verify_catalogue(catalogue, [dev_pub], now=NOW).manifest
    with pytest.raises(NotInManifest, match="'wipe-disk' is not in the signed catalogue"):
        verify_playbook(manifest, "wipe-disk", b"name: wipe-disk\n")


def test_an_unlisted_file_in_the_catalogue(catalogue: Path, dev_pub: bytes) -> None:
    extra = (catalogue / "disk-usage.yaml").read_text().replace("name: disk-usage", "name: extra")
    (catalogue / "extra.yaml").write_text(extra)
    with pytest.raises(NotInManifest, match=r"extra.yaml is not in the signed manifest"):
        verify_catalogue(catalogue, [dev_pub], now=NOW)


def test_a_listed_file_that_is_missing(catalogue: Path, dev_pub: bytes) -> None:
    (catalogue / "network.yaml").unlink()
    with pytest.raises(DigestMismatch, match="listed in the signed manifest but cannot be read"):
        verify_catalogue(catalogue, [dev_pub], now=NOW)


def test_a_signed_but_invalid_playbook_is_refused(dev_key: bytes, dev_pub: bytes) -> None:
    data = b"name: bad\nversion: 1.0.0\ndescription: x\nmode: read-only\nsteps: []\n"
    manifest_bytes = build_manifest(
        [ManifestEntry("bad", "1.0.0", "read-only", "bad.yaml", hashlib.sha256(data).hexdigest())],
        catalogue_version=1,
        issued_at=NOW,
        expires_at=NOW + VALIDITY,
    )
    manifest = verify_manifest(
        manifest_bytes, sign_manifest(manifest_bytes, dev_key), [dev_pub], now=NOW
    )
    with pytest.raises(InvalidPlaybook, match=r"bad.yaml:5: steps must list at least one step"):
        verify_playbook(manifest, "bad", data)


# -- malformed (but signed) manifests ----------------------------------------------------


GOOD_ENTRY = {
    "name": "x",
    "version": "1.0.0",
    "mode": "read-only",
    "file": "x.yaml",
    "sha256": "0" * 64,
}
GOOD = {
    "format": 1,
    "catalogue_version": 1,
    "issued_at": "2030-01-01T12:00:00Z",
    "expires_at": "2030-02-01T12:00:00Z",
    "playbooks": [GOOD_ENTRY],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 2}, "format 2 is not supported"),
        ({"catalogue_version": 0}, "catalogue_version must be"),
        ({"catalogue_version": True}, "catalogue_version must be"),
        ({"issued_at": "yesterday"}, "issued_at must be a UTC time"),
        ({"expires_at": "2029-01-01T00:00:00Z"}, "expires_at is not later"),
        ({"extra": 1}, "unknown: extra"),
        ({"playbooks": [{**GOOD_ENTRY, "file": "../../etc/passwd"}]}, "must be x.yaml"),
        ({"playbooks": [{**GOOD_ENTRY, "file": "/etc/passwd"}]}, "must be x.yaml"),
        ({"playbooks": [{**GOOD_ENTRY, "mode": "root"}]}, "invalid mode"),
        ({"playbooks": [{**GOOD_ENTRY, "version": "1"}]}, "invalid version"),
        ({"playbooks": [{**GOOD_ENTRY, "sha256": "abc"}]}, "invalid sha256"),
        ({"playbooks": [GOOD_ENTRY, GOOD_ENTRY]}, "lists a playbook twice"),
        ({"playbooks": {"x": 1}}, "playbooks must be a list"),
    ],
)
def test_malformed_manifests_are_refused_even_when_signed(
    dev_key: bytes, dev_pub: bytes, change: dict[str, object], message: str
) -> None:
    data = json.dumps({**GOOD, **change}).encode()
    with pytest.raises(InvalidManifest, match=message):
        verify_manifest(data, sign_manifest(data, dev_key), [dev_pub], now=NOW)


def test_a_signed_manifest_that_is_not_json(dev_key: bytes, dev_pub: bytes) -> None:
    data = b"[[[["
    with pytest.raises(InvalidManifest, match="not JSON"):
        verify_manifest(data, sign_manifest(data, dev_key), [dev_pub], now=NOW)


# -- signing refuses invalid playbooks ---------------------------------------------------


def test_the_signer_refuses_an_invalid_playbook(catalogue: Path, dev_key: bytes) -> None:
    before = files(catalogue)
    path = catalogue / "network.yaml"
    path.write_text(
        path.read_text().replace("argv: [ip, -brief, address, show]", 'argv: [sh, -c, "ip a"]')
    )
    with pytest.raises(InvalidPlaybook, match=r"network.yaml:\d+: argv runs `sh -c`"):
        write_signed_catalogue(catalogue, dev_key, now=NOW)
    assert files(catalogue) == before


# -- keys --------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    private_path, public_path = write_keypair(tmp_path / "keys")
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert (private_path.name, public_path.name) == ("vendor.key", "vendor.pub")
    key = read_private_key(private_path)
    assert public_key_from_private(key) == public_path.read_bytes()
    assert len(key_id(public_path.read_bytes())) == 16
    with pytest.raises(VendorKeyError, match="refusing to overwrite"):
        write_keypair(tmp_path / "keys")


def test_a_vendor_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    private_path, _ = write_keypair(tmp_path)
    os.chmod(private_path, 0o644)
    with pytest.raises(VendorKeyError, match="chmod 600"):
        read_private_key(private_path)


def test_keys_that_are_not_ed25519_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(VendorKeyError, match="not an Ed25519 key"):
        sign_manifest(b"{}", pem)
    with pytest.raises(VendorKeyError, match="not an Ed25519 key"):
        key_id(public)
    with pytest.raises(VendorKeyError, match="not an unencrypted PEM private key"):
        sign_manifest(b"{}", b"junk")


# -- the package ---------------------------------------------------------------------------


def test_every_error_is_a_playbook_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), PlaybookError), name
    assert issubclass(UnknownSigner, BadSignature) and issubclass(ModeMismatch, ManifestMismatch)


def test_importing_the_package_does_not_load_cryptography() -> None:
    code = (
        "import sys, playbooks.loader, playbooks.params, playbooks.signing_keys,"
        " playbooks.manifest, playbooks.verify, playbooks.sign;"
        "sys.exit('cryptography' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
