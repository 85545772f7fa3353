"""Portal passwords: scrypt hashes (stdlib ``hashlib.scrypt``) and ``user passwd``.

Stored form: ``scrypt$N$r$p$SALT_HEX$HASH_HEX``; verification recomputes with the
stored parameters and compares in constant time. Passwords are 10 to 1024 characters.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from collector.errors import InvalidRequest, UnknownUser
from collector.store import Store

__all__ = ["MIN_LENGTH", "hash_password", "set_password", "verify_password"]

MIN_LENGTH = 10
MAX_LENGTH = 1024
_N, _R, _P = 2**14, 8, 1
_DUMMY = "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 32  # for unknown users (timing)


def hash_password(password: str) -> str:
    """The stored form of ``password`` (fresh random salt)."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """True if ``password`` matches ``stored``; ``None`` (no password set) costs the
    same time and is False, so a wrong name and a wrong password look alike."""
    try:
        scheme, n, r, p, salt, digest = (stored or _DUMMY).split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return stored is not None and hmac.compare_digest(computed, bytes.fromhex(digest))


def set_password(store: Store, name: str, password: str, actor: str, now_ms: int) -> None:
    """Set user ``name``'s portal password, ending its browser sessions; audited
    (``user.password_set``)."""
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(f"the password is too short: use at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidRequest(f"the password is too long: use at most {MAX_LENGTH} characters")
    if store.get_user(name) is None:
        raise UnknownUser(name[:64])
    store.set_portal_password(name, hash_password(password), now_ms)
    store.append_audit(actor, "user.password_set", name, {}, now_ms)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32
    )
