"""What signed documents are made of: canonical JSON bytes and key fingerprints.

Standard library only. ``common.approval_format`` (the customer's signed consent) and
``common.audit_checkpoint`` (the audit log's signed checkpoints) build on these; they
live apart so that a process needing only these (the agent witnessing checkpoints,
pinning a root) does not keep the whole approval format in memory (issue 17).
``approval_format`` re-exports every name here.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

__all__ = ["FormatError", "canonical", "fingerprint", "parse_fingerprint"]

_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")


class FormatError(ValueError):
    """A document is not well-formed; the message names the field."""


def canonical(value: Any) -> bytes:
    """The exact bytes that are signed: sorted keys, no whitespace, UTF-8, no NaN."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def fingerprint(raw_public_key: bytes) -> str:
    """``sha256:HEX`` of a raw Ed25519 public key."""
    return "sha256:" + hashlib.sha256(raw_public_key).hexdigest()


def parse_fingerprint(text: str) -> str:
    """``text`` normalised (lower-case hex), or FormatError if it is not ``sha256:HEX``."""
    value = text.strip().lower()
    if not _FINGERPRINT.fullmatch(value):
        raise FormatError(f"{text!r} is not a key fingerprint (sha256: and 64 hex digits)")
    return value
