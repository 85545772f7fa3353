"""Portal sign-in: passwords checked, failures limited, browser sessions kept.

Contracts:
- ``sign_in`` refuses a wrong name, password or one-time code alike
  (``Unauthenticated``, same message, same scrypt cost). A user with a TOTP secret
  must give the current code, and each code works once. Failures are counted per
  source by ``AuthFailures`` (kind ``portal``: rate-limited, aggregated in the audit
  log) and per account: after
  ``LOCK_AFTER`` failures the account is locked for ``LOCK_MS`` (``RateLimited``,
  audited as ``portal.locked``), even for the right password.
- A successful sign-in gives a random cookie value (only its SHA-256 is stored) and a
  random CSRF token bound to that session; audited ``portal.signed_in``.
- ``current`` returns the signed-in user for a cookie, checking the user against the
  store on every request (a disabled or removed user is signed out at once).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from collector.auth import Principal, hash_token
from collector.auth_failures import AuthFailures
from collector.errors import RateLimited, Unauthenticated, format_ms
from collector.portal.passwords import verify_password
from collector.portal.totp import matching_step
from collector.store.portal_base import PortalCredential, WebSession
from collector.store.writer import StoreThread

__all__ = ["LOCK_AFTER", "LOCK_MS", "SESSION_MS", "PortalSignIn", "SignedIn", "csrf_matches"]

LOCK_AFTER = 5
LOCK_MS = 15 * 60_000
SESSION_MS = 12 * 3600_000
WRONG = "wrong user name, password or one-time code"


@dataclass(frozen=True)
class SignedIn:
    """A signed-in browser: who, its session, and its language setting."""

    principal: Principal
    session: WebSession
    language: str  # the user's setting ("" : follow the browser)


def csrf_matches(expected: str, given: str) -> bool:
    """Constant-time comparison of a form's CSRF token with the session's."""
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())


class PortalSignIn:
    """Sign-in, sign-out and the current user; all store access through the writer."""

    def __init__(
        self, db: StoreThread, failures: AuthFailures, clock_ms: Callable[[], int]
    ) -> None:
        self._db = db
        self._store = db.store
        self._failures = failures
        self._clock_ms = clock_ms

    async def sign_in(
        self, name: str, password: str, peer: str, code: str = ""
    ) -> tuple[str, SignedIn]:
        """The cookie value and the new session, or Unauthenticated / RateLimited."""
        self._failures.check("portal", peer)
        name = name.strip()[:64]
        now = self._clock_ms()
        credential = await self._db.call(self._store.portal_credential, name) if name else None
        user = await self._db.call(self._store.get_user, name) if credential else None
        if credential is not None and (credential.locked_until_ms or 0) > now:
            await self._failures.record("portal", peer, "account locked", name)
            raise RateLimited(
                f"too many wrong passwords: sign-in is locked until "
                f"{format_ms(credential.locked_until_ms or now)}; wait, or ask an admin to "
                "set a new password (`aftercare-collector user passwd`)"
            )
        stored = credential.password_hash if credential is not None else None
        if not verify_password(password, stored) or user is None or credential is None:
            await self._failed(name, peer, now, known=credential is not None)
            raise Unauthenticated(WRONG)
        if credential.totp_secret and not await self._code_ok(credential, code, now):
            await self._failed(name, peer, now, known=True)
            raise Unauthenticated(WRONG)
        if user.disabled_ms is not None:
            await self._failures.record("portal", peer, "user disabled", name)
            raise Unauthenticated(f"user {name!r} is disabled; ask an admin")
        await self._db.call(self._store.record_login_success, name)
        token = secrets.token_urlsafe(32)
        session = WebSession(
            hash_token(token), name, secrets.token_urlsafe(32), now, now + SESSION_MS
        )
        await self._db.call(self._store.create_web_session, session)
        await self._audit(name, "portal.signed_in", {"peer": peer[:64]}, now)
        principal = Principal(user.name, user.role, user.customer)
        return token, SignedIn(principal, session, credential.language)

    async def current(self, token: str) -> SignedIn | None:
        """The signed-in user for a cookie value; None if none, expired or disabled."""
        if not token or len(token) > 100:
            return None
        now = self._clock_ms()
        session = await self._db.call(self._store.web_session, hash_token(token), now)
        if session is None:
            return None
        user = await self._db.call(self._store.get_user, session.name)
        if user is None or user.disabled_ms is not None:
            return None
        credential = await self._db.call(self._store.portal_credential, session.name)
        language = credential.language if credential is not None else ""
        return SignedIn(Principal(user.name, user.role, user.customer), session, language)

    async def sign_out(self, signed_in: SignedIn) -> None:
        """End the browser session; audited ``portal.signed_out``."""
        await self._db.call(self._store.end_web_session, signed_in.session.token_hash)
        await self._audit(signed_in.principal.name, "portal.signed_out", {}, self._clock_ms())

    async def set_language(self, signed_in: SignedIn, language: str) -> None:
        """Keep the user's page language ("" follows the browser)."""
        await self._db.call(self._store.set_portal_language, signed_in.principal.name, language)

    async def prune(self) -> int:
        """Delete expired browser sessions."""
        return int(await self._db.call(self._store.prune_web_sessions, self._clock_ms()))

    async def _code_ok(self, credential: PortalCredential, code: str, now: int) -> bool:
        step = matching_step(credential.totp_secret, code, now)
        if step is None:
            return False
        return bool(await self._db.call(self._store.use_totp_step, credential.name, step))

    async def _failed(self, name: str, peer: str, now: int, known: bool) -> None:
        await self._failures.record("portal", peer, WRONG, name)
        if not known:
            return
        after = await self._db.call(
            self._store.record_login_failure, name, now, LOCK_AFTER, LOCK_MS
        )
        if after.locked_until_ms is not None and after.locked_until_ms > now:
            details = {"until_ms": after.locked_until_ms, "after_failures": LOCK_AFTER}
            await self._audit(name, "portal.locked", details, now)

    async def _audit(self, name: str, action: str, details: Mapping[str, object], now: int) -> None:
        await self._db.call(self._store.append_audit, f"user:{name}", action, name, details, now)
