"""The collector's side of audit checkpoints: its audit key, signing, and checking its
own log against a checkpoint someone kept (format: ``common.audit_checkpoint``).

The audit key is an Ed25519 key of the collector's own (``DATA_DIR/audit-key.pem``,
0600), used for nothing else. A checkpoint it signed states the log's entry count,
head hash and accumulator; ``log_problem`` says whether the log still contains it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from collector.errors import ConfigError
from common.audit_checkpoint import GENESIS, Checkpoint, SignedCheckpoint, fold

__all__ = ["AuditKey", "ed25519_verify", "log_problem", "new_audit_key_pem"]


def new_audit_key_pem() -> bytes:
    """A fresh Ed25519 private key, PKCS#8 PEM."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class AuditKey:
    """The collector's audit signing key."""

    private: Ed25519PrivateKey

    @classmethod
    def from_pem(cls, pem: bytes, where: str) -> AuditKey:
        """Load a PKCS#8 PEM Ed25519 key; ConfigError naming ``where`` otherwise."""
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: not a PEM private key ({exc})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{where}: not an Ed25519 key")
        return cls(key)

    @property
    def public(self) -> bytes:
        """The raw 32-byte public key (what checkpoints name and agents pin)."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, count: int, head: str, accumulator: str, at_ms: int) -> SignedCheckpoint:
        checkpoint = Checkpoint(count, head, accumulator, at_ms, self.public)
        return SignedCheckpoint.seal(checkpoint, self.private.sign)


def ed25519_verify(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``data`` by ``public_key``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def log_problem(checkpoint: Checkpoint, hashes: Sequence[str], audit_key: bytes) -> str:
    """Why a log whose entry hashes are ``hashes`` (ids 1, 2, ...) does not contain
    ``checkpoint`` (its signature already verified); '' if it does.

    Contains means: signed by this collector's audit key, at least ``count`` entries,
    and the first ``count`` fold to its accumulator with entry ``count`` as its head.
    """
    if checkpoint.key != audit_key:
        return (
            f"the checkpoint was signed by another audit key ({checkpoint.key_fingerprint}), "
            "not this collector's"
        )
    if len(hashes) < checkpoint.count:
        return (
            f"the log has {len(hashes)} entries but the checkpoint witnessed "
            f"{checkpoint.count}: entries {len(hashes) + 1}..{checkpoint.count} were removed "
            "(the tail was cut)"
        )
    head = hashes[checkpoint.count - 1] if checkpoint.count else GENESIS
    accumulator = fold(GENESIS, (bytes.fromhex(h) for h in hashes[: checkpoint.count]))
    if head != checkpoint.head or accumulator != checkpoint.accumulator:
        return (
            f"the first {checkpoint.count} entries are not those the checkpoint witnessed "
            f"(head or accumulator differ): entries up to {checkpoint.count} were rewritten, "
            "removed and replaced, or forged"
        )
    return ""
