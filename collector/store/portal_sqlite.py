"""The portal tables of the SQLite store (a mixin of ``SQLiteStore``; contracts in
collector/store/portal_base.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

from collector.errors import InvalidRequest, UnknownUser
from collector.store.portal_base import PortalCredential, WebSession

__all__ = ["SQLitePortal"]

LANGUAGES = ("", "zh-CN", "en")
_CREDENTIAL = (
    "SELECT name, password_hash, password_set_ms, failed_logins, locked_until_ms, language, "
    "totp_secret, totp_last_step FROM portal_users WHERE name = ?"
)

Transaction = Callable[[], AbstractContextManager[sqlite3.Connection]]


class SQLitePortal:
    """``PortalStore`` on the SQLite connection of ``SQLiteStore`` (a mixin)."""

    _write: Transaction
    _read: Transaction

    def set_portal_password(self, name: str, password_hash: str, now_ms: int) -> None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
                raise UnknownUser(name)
            db.execute(
                "INSERT INTO portal_users (name, password_hash, password_set_ms) "
                "VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "password_hash = excluded.password_hash, "
                "password_set_ms = excluded.password_set_ms, "
                "failed_logins = 0, locked_until_ms = NULL",
                (name, password_hash, now_ms),
            )
            db.execute("DELETE FROM portal_sessions WHERE name = ?", (name,))

    def portal_credential(self, name: str) -> PortalCredential | None:
        with self._read() as db:
            row = db.execute(_CREDENTIAL, (name,)).fetchone()
        return PortalCredential(*row) if row else None

    def record_login_failure(
        self, name: str, now_ms: int, lock_after: int, lock_ms: int
    ) -> PortalCredential:
        with self._write() as db:
            row = db.execute(_CREDENTIAL, (name,)).fetchone()
            if row is None:
                raise UnknownUser(name)
            failed = int(row[3]) + 1
            if failed >= lock_after:
                db.execute(
                    "UPDATE portal_users SET failed_logins = 0, locked_until_ms = ? WHERE name = ?",
                    (now_ms + lock_ms, name),
                )
            else:
                db.execute(
                    "UPDATE portal_users SET failed_logins = ? WHERE name = ?", (failed, name)
                )
            row = db.execute(_CREDENTIAL, (name,)).fetchone()
        return PortalCredential(*row)

    def record_login_success(self, name: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE portal_users SET failed_logins = 0, locked_until_ms = NULL WHERE name = ?",
                (name,),
            )

    def set_portal_totp(self, name: str, secret: str) -> None:
        with self._write() as db:
            updated = db.execute(
                "UPDATE portal_users SET totp_secret = ?, totp_last_step = 0 WHERE name = ?",
                (secret, name),
            )
            if updated.rowcount == 0:
                raise InvalidRequest(
                    f"user {name[:64]!r} has no portal password: set one first "
                    "(`aftercare-collector user passwd`)"
                )

    def use_totp_step(self, name: str, step: int) -> bool:
        with self._write() as db:
            updated = db.execute(
                "UPDATE portal_users SET totp_last_step = ? WHERE name = ? AND totp_last_step < ?",
                (step, name, step),
            )
        return bool(updated.rowcount)

    def set_portal_language(self, name: str, language: str) -> None:
        if language not in LANGUAGES:
            raise InvalidRequest(f"unknown language {language!r}: use zh-CN or en")
        with self._write() as db:
            db.execute("UPDATE portal_users SET language = ? WHERE name = ?", (language, name))

    def create_web_session(self, session: WebSession) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO portal_sessions "
                "(token_hash, name, csrf_token, created_ms, expires_ms) VALUES (?, ?, ?, ?, ?)",
                (
                    session.token_hash,
                    session.name,
                    session.csrf_token,
                    session.created_ms,
                    session.expires_ms,
                ),
            )

    def web_session(self, token_hash: str, now_ms: int) -> WebSession | None:
        with self._read() as db:
            row = db.execute(
                "SELECT token_hash, name, csrf_token, created_ms, expires_ms "
                "FROM portal_sessions WHERE token_hash = ? AND expires_ms > ?",
                (token_hash, now_ms),
            ).fetchone()
        return WebSession(*row) if row else None

    def end_web_session(self, token_hash: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM portal_sessions WHERE token_hash = ?", (token_hash,))

    def prune_web_sessions(self, now_ms: int) -> int:
        with self._write() as db:
            deleted = db.execute("DELETE FROM portal_sessions WHERE expires_ms <= ?", (now_ms,))
        return int(deleted.rowcount)
