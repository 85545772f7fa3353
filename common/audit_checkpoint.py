"""Signed checkpoints of the collector's audit chain, and the proof that one extends another.

Standard library only: the collector signs (``collector.audit_checkpoint``), agents
witness (``agent.audit_witness``); both use this module for the exact bytes, the
accumulator and the extension check. Signature checking is passed in as a callable
``verify(public_key, data, signature) -> bool`` (Ed25519). Specified in docs/audit.md.

A **checkpoint** body is canonical JSON (``signed_bytes.canonical``)::

    {"type": "aftercare.audit-checkpoint/v1", "count": N, "head": HEX,
     "accumulator": HEX, "at_ms": MS, "key": B64}

``head`` is the hash of entry N (``GENESIS`` when N = 0), ``key`` the raw 32-byte
Ed25519 public key of the collector's audit key, and ``accumulator`` folds every entry
hash so far: ``acc_0 = GENESIS``, ``acc_i = sha256(raw(acc_{i-1}) + raw(hash_i))``.
A holder of checkpoint M checks checkpoint N > M from the **proof** — the raw entry
hashes M+1..N — without seeing any entry: folded onto acc_M they must give acc_N, and
the last one must be the new head. Entry contents never travel.

A **document** (the file ``aftercare-collector audit checkpoint`` prints and
``audit verify --checkpoint`` reads) is ``{"checkpoint": BODY-OBJECT, "signature": B64}``;
the signed bytes are the canonical JSON of ``BODY-OBJECT``.

Every parser raises ``CheckpointError`` naming the field at fault.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common.signed_bytes import canonical, fingerprint

__all__ = [
    "CAPABILITY",
    "CHECKPOINT",
    "GENESIS",
    "MAX_PROOF",
    "Checkpoint",
    "CheckpointError",
    "SignedCheckpoint",
    "Verify",
    "extension_problem",
    "fold",
]

CHECKPOINT = "aftercare.audit-checkpoint/v1"
CAPABILITY = "audit-witness"  # in the Hello: the agent witnesses checkpoints, send them
GENESIS = "0" * 64
MAX_PROOF = 100_000  # entry hashes per message; further behind: intermediate checkpoints
_HEX = re.compile(r"[0-9a-f]{64}")
_KEYS = {"type", "count", "head", "accumulator", "at_ms", "key"}

Verify = Callable[[bytes, bytes, bytes], bool]
"""``verify(raw_public_key, data, signature)``: True iff the Ed25519 signature is valid."""


class CheckpointError(ValueError):
    """A checkpoint or proof is malformed, badly signed or does not extend; says why."""


def fold(accumulator: str, hashes: Iterable[bytes]) -> str:
    """``accumulator`` (hex) with each raw 32-byte entry hash folded in, in order."""
    acc = bytes.fromhex(accumulator)
    for digest in hashes:
        if len(digest) != 32:
            raise CheckpointError(f"proof: an entry hash has {len(digest)} bytes, expected 32")
        acc = hashlib.sha256(acc + digest).digest()
    return acc.hex()


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint states; trusted only once its signature verified."""

    count: int
    head: str
    accumulator: str
    at_ms: int
    key: bytes

    @property
    def key_fingerprint(self) -> str:
        return fingerprint(self.key)

    def body(self) -> dict[str, Any]:
        return {
            "type": CHECKPOINT,
            "count": self.count,
            "head": self.head,
            "accumulator": self.accumulator,
            "at_ms": self.at_ms,
            "key": base64.b64encode(self.key).decode("ascii"),
        }

    def encode(self) -> bytes:
        """The exact bytes that are signed."""
        return canonical(self.body())

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Checkpoint:
        if body.get("type") != CHECKPOINT:
            raise CheckpointError(f"checkpoint.type: expected {CHECKPOINT!r}")
        missing, extra = _KEYS - set(body), set(body) - _KEYS
        if missing or extra:
            raise CheckpointError(f"checkpoint: missing {sorted(missing)}, unknown {sorted(extra)}")
        count = _whole(body["count"], "checkpoint.count")
        head = _hex(body["head"], "checkpoint.head")
        if count == 0 and head != GENESIS:
            raise CheckpointError("checkpoint.head: an empty log's head is 64 zeros")
        key = _b64(body["key"], "checkpoint.key")
        if len(key) != 32:
            raise CheckpointError("checkpoint.key: expected a 32-byte Ed25519 public key")
        return cls(
            count=count,
            head=head,
            accumulator=_hex(body["accumulator"], "checkpoint.accumulator"),
            at_ms=_whole(body["at_ms"], "checkpoint.at_ms"),
            key=key,
        )


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint with its signature; construct with ``verified`` or ``seal``."""

    checkpoint: Checkpoint
    signature: bytes

    @classmethod
    def seal(cls, checkpoint: Checkpoint, sign: Callable[[bytes], bytes]) -> SignedCheckpoint:
        """Sign ``checkpoint`` with ``sign`` (the audit private key's sign method)."""
        return cls(checkpoint, sign(checkpoint.encode()))

    @classmethod
    def verified(cls, data: bytes, signature: bytes, verify: Verify) -> SignedCheckpoint:
        """Parse the signed bytes ``data``, after checking ``signature`` over them with the
        key they name. Refuses non-canonical bytes (a document must round-trip)."""
        if len(data) > 4096:
            raise CheckpointError("checkpoint: larger than 4096 bytes")
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint: not JSON ({exc})") from exc
        if not isinstance(body, dict):
            raise CheckpointError("checkpoint: expected a JSON object")
        checkpoint = Checkpoint.from_body(body)
        if checkpoint.encode() != data:
            raise CheckpointError("checkpoint: not in canonical form")
        if not verify(checkpoint.key, data, signature):
            raise CheckpointError("checkpoint: bad signature (not signed by the key it names)")
        return cls(checkpoint, signature)

    def document(self) -> dict[str, Any]:
        """The JSON document form (the checkpoint file)."""
        return {
            "checkpoint": self.checkpoint.body(),
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    @classmethod
    def from_document(cls, value: Any, verify: Verify) -> SignedCheckpoint:
        """Parse and verify a document (``document()``'s form)."""
        if not isinstance(value, dict) or set(value) != {"checkpoint", "signature"}:
            raise CheckpointError(
                "not an audit checkpoint document: expected an object with exactly "
                "'checkpoint' and 'signature'"
            )
        if not isinstance(value["checkpoint"], dict):
            raise CheckpointError("checkpoint: expected a JSON object")
        data = canonical(value["checkpoint"])
        return cls.verified(data, _b64(value["signature"], "signature"), verify)


def extension_problem(
    held: Checkpoint | None, new: Checkpoint, proof_from: int, proof: Sequence[bytes]
) -> str:
    """Why ``new`` (signature already verified) does not extend ``held``; '' if it does.

    Extends means: the same key, and either the same count, head and accumulator, or a
    longer log whose proof (hashes ``held.count+1 .. new.count``) folds ``held``'s
    accumulator into ``new``'s and ends in ``new``'s head. Anything extends nothing.
    """
    if held is None:
        return ""
    if new.key != held.key:
        return f"signed by another audit key ({new.key_fingerprint}, pinned {held.key_fingerprint})"
    if new.count < held.count:
        return (
            f"the log shrank: checkpoint of {new.count} entries, but {held.count} were "
            f"witnessed (the tail was cut)"
        )
    if new.count == held.count:
        if (new.head, new.accumulator) != (held.head, held.accumulator):
            return f"entry {new.count} or an earlier one was rewritten (head/accumulator differ)"
        return ""
    if proof_from != held.count:
        return f"the proof starts after entry {proof_from}, but {held.count} are held"
    if len(proof) != new.count - held.count:
        return (
            f"the proof has {len(proof)} hashes, {new.count - held.count} needed "
            f"for entries {held.count + 1}..{new.count}"
        )
    if fold(held.accumulator, proof) != new.accumulator or proof[-1].hex() != new.head:
        return (
            f"the log of {new.count} entries does not contain the {held.count} witnessed "
            f"(entries up to {held.count} were rewritten or removed)"
        )
    return ""


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise CheckpointError(f"{what}: expected a whole number >= 0")
    return value


def _hex(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise CheckpointError(f"{what}: expected 64 lower-case hex digits")
    return value


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise CheckpointError(f"{what}: expected base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"{what}: not valid base64") from exc
