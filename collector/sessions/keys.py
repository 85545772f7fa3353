"""Users' SSH public keys for the gateway: parse authorized_keys lines, fingerprint, register.

``parse_public_key`` accepts one OpenSSH public key line (``TYPE BASE64 [COMMENT]``)
and checks that the blob really is a key of that type; ``fingerprint`` is what
``ssh-keygen -l`` prints ("SHA256:" + unpadded base64 of the blob's SHA-256).
``SshKeys`` registers keys for the calling user, audited; a key belongs to one user.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Callable

from collector.auth import Principal
from collector.errors import InvalidRequest
from collector.store.base import SshKeyRecord
from collector.store.writer import StoreThread

__all__ = ["KEY_TYPES", "SshKeys", "fingerprint", "parse_public_key"]

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
MAX_LINE = 16 * 1024


def fingerprint(blob: bytes) -> str:
    """The key's SHA-256 fingerprint as ``ssh-keygen -l`` prints it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def parse_public_key(line: str) -> tuple[str, bytes, str]:
    """``(key_type, blob, comment)`` of one authorized_keys line. Raises InvalidRequest."""
    text = line.strip()
    if "PRIVATE KEY" in text:
        raise InvalidRequest(
            "this is a PRIVATE key: never share it; give the .pub file next to it instead"
        )
    if not text or len(text) > MAX_LINE or "\n" in text:
        raise InvalidRequest(
            "give exactly one public key line, e.g. the contents of id_ed25519.pub"
        )
    parts = text.split(None, 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise InvalidRequest(
            "not an OpenSSH public key line (expected e.g. 'ssh-ed25519 AAAA... you@host'; "
            f"supported types: {', '.join(sorted(KEY_TYPES))})"
        )
    key_type, encoded = parts[0], parts[1]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest("the key's base64 part is damaged") from exc
    if _blob_type(blob) != key_type:
        raise InvalidRequest(f"the key data is not a {key_type} key")
    return key_type, blob, parts[2].strip() if len(parts) > 2 else ""


def _blob_type(blob: bytes) -> str | None:
    """The type name at the start of an SSH key blob (None if malformed)."""
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    if length > 64 or len(blob) < 4 + length:
        return None
    return blob[4 : 4 + length].decode("ascii", "replace")


class SshKeys:
    """Register, list and remove the caller's own keys (admins see everyone's)."""

    def __init__(self, db: StoreThread, clock_ms: Callable[[], int]) -> None:
        self._db = db
        self._store = db.store
        self._clock_ms = clock_ms

    async def add(self, who: Principal, line: str) -> SshKeyRecord:
        key_type, blob, comment = parse_public_key(line)
        record = SshKeyRecord(
            fingerprint=fingerprint(blob),
            user=who.name,
            key_type=key_type,
            key_base64=base64.b64encode(blob).decode(),
            comment=comment[:200],
            added_ms=self._clock_ms(),
        )
        stored = await self._db.call(self._store.add_ssh_key, record)
        await self._audit(who, "ssh_key.added", stored)
        return stored

    async def list(self, who: Principal) -> list[SshKeyRecord]:
        user = None if who.role == "admin" else who.name
        return await self._db.call(self._store.list_ssh_keys, user)

    async def remove(self, who: Principal, key_fingerprint: str) -> SshKeyRecord:
        user = None if who.role == "admin" else who.name
        removed = await self._db.call(self._store.remove_ssh_key, key_fingerprint, user)
        await self._audit(who, "ssh_key.removed", removed)
        return removed

    async def owner(self, key_fingerprint: str) -> str | None:
        """The user a key belongs to (None if unregistered)."""
        record = await self._db.call(self._store.ssh_key, key_fingerprint)
        return None if record is None else record.user

    async def _audit(self, who: Principal, action: str, key: SshKeyRecord) -> None:
        await self._db.call(
            self._store.append_audit,
            f"user:{who.name}",
            action,
            key.fingerprint,
            {"user": key.user, "key_type": key.key_type, "comment": key.comment},
            self._clock_ms(),
        )
