"""The portal aggregate of the store: portal passwords, lockout and browser sessions.

Contracts (every backend): a portal row belongs to a user and goes with it (removing
the user removes its password and its sessions); only hashes are stored (the
password's scrypt hash, the session cookie's SHA-256); ``record_login_failure``
counts and locks in one transaction, so concurrent wrong guesses cannot skip the lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["PortalCredential", "PortalStore", "WebSession"]


@dataclass(frozen=True)
class PortalCredential:
    """A user's portal password and sign-in state."""

    name: str
    password_hash: str
    password_set_ms: int
    failed_logins: int = 0
    locked_until_ms: int | None = None
    language: str = ""  # "zh-CN" | "en" | "" (the browser's choice)
    totp_secret: str = ""  # base32; "" : no second factor
    totp_last_step: int = 0  # the last accepted TOTP step (a code is good once)


@dataclass(frozen=True)
class WebSession:
    """A signed-in browser: the user, its CSRF token and when the sign-in lapses."""

    token_hash: str
    name: str
    csrf_token: str
    created_ms: int
    expires_ms: int


class PortalStore(Protocol):
    """The portal aggregate of the store (every backend implements it)."""

    def set_portal_password(self, name: str, password_hash: str, now_ms: int) -> None:
        """Set ``name``'s password (UnknownUser if no such user), clear its failures and
        lock, and end its browser sessions."""
        ...

    def portal_credential(self, name: str) -> PortalCredential | None:
        """The user's portal password and state; None if it has no password."""
        ...

    def record_login_failure(
        self, name: str, now_ms: int, lock_after: int, lock_ms: int
    ) -> PortalCredential:
        """Count one failed sign-in; at ``lock_after`` failures lock until
        ``now_ms + lock_ms`` and start counting afresh."""
        ...

    def record_login_success(self, name: str) -> None:
        """Clear the user's failed sign-ins."""
        ...

    def set_portal_totp(self, name: str, secret: str) -> None:
        """Set (or with "" remove) the user's TOTP secret; InvalidRequest if the user has
        no portal password yet."""
        ...

    def use_totp_step(self, name: str, step: int) -> bool:
        """Record ``step`` as used if it is later than the last used one; False (nothing
        changed) for a replayed or older step."""
        ...

    def set_portal_language(self, name: str, language: str) -> None:
        """The user's page language ("" follows the browser)."""
        ...

    def create_web_session(self, session: WebSession) -> None:
        """Keep a new browser session (its cookie hashed)."""
        ...

    def web_session(self, token_hash: str, now_ms: int) -> WebSession | None:
        """The live session with this cookie hash; None if unknown or expired."""
        ...

    def end_web_session(self, token_hash: str) -> None:
        """Forget the session (sign-out); nothing if unknown."""
        ...

    def prune_web_sessions(self, now_ms: int) -> int:
        """Delete expired sessions; returns how many."""
        ...
