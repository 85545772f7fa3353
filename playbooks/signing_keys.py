"""Vendor keys: Ed25519 key pairs, their files and key ids.

Keys are PKCS#8 PEM private keys (unencrypted, file mode 0600) and
SubjectPublicKeyInfo PEM public keys; a raw 32-byte public key is also accepted
where keys are trusted. The cryptography library is imported inside the functions
that need it, so importing this module does not load it (the agent's memory).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from playbooks.errors import (
    VendorKeyError,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )


__all__ = [
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "generate_keypair",
    "key_id",
    "public_key_from_private",
    "read_private_key",
    "write_keypair",
]


PRIVATE_KEY_FILE = "vendor.key"
PUBLIC_KEY_FILE = "vendor.pub"


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


def _write_exclusive(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as exc:
        raise VendorKeyError(f"{path} already exists; refusing to overwrite a vendor key") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
