"""Users' SSH public keys for the gateway: registered for the calling user, audited.

A key belongs to one user. Keys are checked with ``collector.sessions.pubkey`` (the
same checks the client runs before sending) and known by their SHA256 fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable

from collector import limits
from collector.auth import Principal
from collector.errors import InvalidRequest
from collector.sessions import pubkey
from collector.sessions.pubkey import PublicKey
from collector.store.base import SshKeyRecord
from collector.store.writer import StoreThread

__all__ = ["SshKeys", "parse_public_key"]


def parse_public_key(line: str) -> PublicKey:
    """The key of one authorized_keys line. Raises InvalidRequest saying what is wrong."""
    try:
        return pubkey.parse_public_key(line.encode("utf-8"), "the key")
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc


class SshKeys:
    """Register, list and remove the caller's own keys (admins see everyone's)."""

    def __init__(self, db: StoreThread, clock_ms: Callable[[], int]) -> None:
        self._db = db
        self._store = db.store
        self._clock_ms = clock_ms

    async def add(self, who: Principal, line: str) -> SshKeyRecord:
        key = parse_public_key(line)
        held = await self._db.call(self._store.list_ssh_keys, who.name)
        if len(held) >= limits.SSH_KEYS_PER_USER:
            raise InvalidRequest(
                f"{who.name} has {len(held)} SSH keys, the limit; remove one first "
                "(`aftercare keys list`, `aftercare keys remove FINGERPRINT`)"
            )
        record = SshKeyRecord(
            fingerprint=key.fingerprint,
            user=who.name,
            key_type=key.key_type,
            key_base64=key.blob_base64,
            comment=key.comment[:200],
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
        """The user a key belongs to (None if unregistered, or if its user is disabled,
        removed or holds an expired token: such a user cannot log in either)."""
        record = await self._db.call(self._store.ssh_key, key_fingerprint)
        if record is None:
            return None
        user = await self._db.call(self._store.get_user, record.user)
        if user is None or user.disabled_ms is not None:
            return None
        if user.token_expires_ms is not None and self._clock_ms() >= user.token_expires_ms:
            return None
        return record.user

    async def _audit(self, who: Principal, action: str, key: SshKeyRecord) -> None:
        await self._db.call(
            self._store.append_audit,
            f"user:{who.name}",
            action,
            key.fingerprint,
            {"user": key.user, "key_type": key.key_type, "comment": key.comment},
            self._clock_ms(),
        )
