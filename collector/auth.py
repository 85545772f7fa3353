"""API tokens, join tokens and who may see what. Pure domain logic: no gRPC, no SQL.

Tokens are random strings shown once; only their SHA-256 is stored. A principal
is the user behind an API token. Engineers and admins see every customer; a
customer user sees only its own customer.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from collector.errors import PermissionDenied, Unauthenticated, format_ms

Role = Literal["admin", "engineer", "customer"]
ROLES: tuple[Role, ...] = ("admin", "engineer", "customer")

API_TOKEN_PREFIX = "act_"
JOIN_TOKEN_PREFIX = "ajt_"


def new_api_token() -> str:
    """A fresh user API token (256 bits of randomness)."""
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_join_token() -> str:
    """A fresh single-use agent join token."""
    return JOIN_TOKEN_PREFIX + secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    """The stored form of a token: SHA-256 hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_token_usable(
    name: str, disabled_ms: int | None, token_expires_ms: int | None, now_ms: int
) -> None:
    """Raise Unauthenticated saying why if user ``name``'s token may not be used now.

    A disabled user's token is refused from the next call on; an expired token from
    its expiry on. The message names the user (the caller holds its token) and what to do.
    """
    if disabled_ms is not None:
        raise Unauthenticated(
            f"the API token of user {name!r} is disabled (since {format_ms(disabled_ms)}); "
            "ask an admin (`aftercare-collector user enable`)"
        )
    if token_expires_ms is not None and now_ms >= token_expires_ms:
        raise Unauthenticated(
            f"the API token of user {name!r} expired at {format_ms(token_expires_ms)}; "
            "ask an admin for a new one (`aftercare-collector user rotate-token`)"
        )


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of an API method."""

    name: str
    role: Role
    customer: str | None = None

    def can_see(self, customer: str) -> bool:
        """True if this principal may see data of ``customer``."""
        return self.role != "customer" or self.customer == customer

    def visible_customer(self, requested: str | None) -> str | None:
        """The customer filter to apply: a customer user is always pinned to its own.

        Raises PermissionDenied if a customer user asks for another customer.
        """
        if self.role != "customer":
            return requested or None
        if requested and requested != self.customer:
            raise PermissionDenied(f"user {self.name!r} may not see customer {requested!r}")
        return self.customer

    def require(self, *roles: Role) -> None:
        """Raise PermissionDenied unless the principal has one of ``roles``."""
        if self.role not in roles:
            raise PermissionDenied(
                f"user {self.name!r} has role {self.role!r}; this needs {' or '.join(roles)}"
            )
