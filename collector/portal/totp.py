"""The optional second factor: TOTP (RFC 6238, 30-second steps, 6 digits) with pyotp.

A code is accepted for its own step and one step either side (clock drift); the store
keeps the last accepted step so a code works once (``PortalStore.use_totp_step``).
"""

from __future__ import annotations

import pyotp

__all__ = ["ISSUER", "STEP_SECONDS", "matching_step", "new_secret", "provisioning_uri"]

ISSUER = "aftercare"
STEP_SECONDS = 30


def new_secret() -> str:
    """A fresh random base32 secret (160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(name: str, secret: str) -> str:
    """The ``otpauth://`` URI an authenticator app takes (as text or QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=ISSUER)


def matching_step(secret: str, code: str, now_ms: int) -> int | None:
    """The step whose code ``code`` is (now, or one step before or after); None if none."""
    code = code.strip().replace(" ", "")
    if not secret or len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    step = now_ms // 1000 // STEP_SECONDS
    for candidate in (step, step - 1, step + 1):
        if totp.verify(code, for_time=candidate * STEP_SECONDS, valid_window=0):
            return candidate
    return None
