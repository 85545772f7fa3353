"""Approval keys on the customer's machine: key files, public keys, certificates, signing.

Private keys are Ed25519 in unencrypted PEM PKCS8 files of mode 0600, created here and
never sent anywhere (the collector only ever sees public keys and signed documents).
Public keys are exchanged as base64 of the raw 32 bytes. Every problem raises
``ApprovalKeyError`` with a message that says what to do.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from common.approval_format import (
    ApproverCertificate,
    FormatError,
    SignedDocument,
    fingerprint,
)

__all__ = [
    "CERT_FILE",
    "ENV_APPROVAL_KEY",
    "KEY_FILE",
    "ROOT_KEY_FILE",
    "ApprovalKeyError",
    "certificate_path_for",
    "config_dir",
    "create_key",
    "encode_key",
    "parse_public_key",
    "raw_public_key",
    "read_certificate",
    "read_private_key",
    "verify_certificate",
]

ROOT_KEY_FILE = "approval-root.key"
KEY_FILE = "approval.key"
CERT_FILE = "approval.cert"
ENV_APPROVAL_KEY = "AFTERCARE_APPROVAL_KEY"
MAX_FILE_BYTES = 64 * 1024


class ApprovalKeyError(Exception):
    """A key or certificate file or argument is unusable; the message says why."""


def config_dir() -> Path:
    """Where the CLI keeps approval keys by default: ``~/.config/aftercare``."""
    return Path.home() / ".config" / "aftercare"


def certificate_path_for(key_path: Path) -> Path:
    """The certificate file that goes with a key file (``approval.key`` → ``approval.cert``)."""
    return key_path.with_suffix(".cert")


def create_key(path: Path) -> Ed25519PrivateKey:
    """Make a new key and write it to ``path`` (mode 0600); refuse to overwrite."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ApprovalKeyError(
            f"{path} already exists; it is not overwritten (move it away, or choose "
            "another file with --out)"
        ) from None
    except OSError as exc:
        raise ApprovalKeyError(f"cannot create {path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def read_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path``; refused if other users can read the file."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()[: MAX_FILE_BYTES + 1]
    except OSError as exc:
        raise ApprovalKeyError(f"cannot read the key {path}: {exc.strerror or exc}") from exc
    if mode & 0o077:
        raise ApprovalKeyError(
            f"{path}: the key is readable by other users (mode {mode:04o}): chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ApprovalKeyError(
            f"{path} is not an unencrypted PEM private key (make one with "
            "`aftercare approvers key` or `aftercare approvers init`)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ApprovalKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def raw_public_key(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of ``key``."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def encode_key(raw: bytes) -> str:
    """A raw public key as the base64 text people exchange."""
    return base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> bytes:
    """The raw public key in ``text`` (base64 of 32 bytes, as `approvers key` prints it).

    Private keys and anything else are refused without echoing them back.
    """
    value = text.strip()
    if "PRIVATE KEY" in value.upper():
        raise ApprovalKeyError(
            "that is a private key: never hand it out. Pass the public key that "
            "`aftercare approvers key` printed (base64, 44 characters)"
        )
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ApprovalKeyError(
            "--key is not an approval public key: expected base64 of a 32-byte Ed25519 "
            "public key, as `aftercare approvers key` prints it"
        )
    return raw


def verify_certificate(data: bytes, where: str) -> ApproverCertificate:
    """The certificate in ``data`` if it is well-formed and signed by the root it names."""
    try:
        document = SignedDocument.parse(data, "certificate")
        certificate = ApproverCertificate.from_body(document.fields("certificate"))
    except FormatError as exc:
        raise ApprovalKeyError(f"{where} is not an approver certificate: {exc}") from exc
    try:
        Ed25519PublicKey.from_public_bytes(certificate.root).verify(
            document.signature, document.body
        )
    except InvalidSignature:
        raise ApprovalKeyError(
            f"{where}: the certificate's signature does not verify against the root it "
            f"names ({fingerprint(certificate.root)})"
        ) from None
    return certificate


def read_certificate(path: Path) -> tuple[bytes, ApproverCertificate]:
    """The certificate file's bytes and what it says (after checking its signature)."""
    try:
        data = path.read_bytes()[: MAX_FILE_BYTES + 1]
    except OSError as exc:
        raise ApprovalKeyError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return data.strip(), verify_certificate(data.strip(), str(path))
