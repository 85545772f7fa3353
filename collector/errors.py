"""The collector's exception tree: every error the collector raises on purpose.

Third-party errors (sqlite3, psycopg, cryptography, ...) are mapped to these at the
boundary with ``raise ... from exc``; the API layer turns them into gRPC status codes
in exactly one place. Messages say what to do where there is something to do.

    CollectorError
    ├── StoreError                  backend failure (database locked, disk full, ...)
    │   └── MigrationError          schema cannot be brought to the version the code knows
    ├── NotFound
    │   ├── UnknownAgent
    │   ├── UnknownUser
    │   ├── UnknownRun              (collector.runs.errors)
    │   └── TicketNotFound          (collector.tickets.errors)
    ├── Conflict                    would create a duplicate, or a stale change
    │   └── UserExists
    ├── DeliveryError               a notification could not be sent (collector.notify.errors)
    ├── TokenError                  join tokens (agent enrolment)
    │   ├── TokenUnknown
    │   ├── TokenUsed
    │   └── TokenExpired
    ├── AuthError                   API tokens (people)
    │   ├── Unauthenticated
    │   └── PermissionDenied
    ├── AgentRevoked
    ├── RateLimited                 too many failed attempts from one source (auth_failures)
    ├── InvalidRequest              bad input from an agent or a user (e.g. a bad CSR)
    │   └── RuleFileError           alert rule files, FILE:LINE problems (collector.rules.errors)
    ├── FailedPrecondition          the request does not apply in the current state
    │   └── InvalidTransition       ticket action not possible in its state (tickets.errors)
    └── ConfigError                 invalid configuration, found at start
        └── TicketConfigError       the tickets YAML (collector.tickets.errors)
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = [
    "AgentRevoked",
    "AuthError",
    "CollectorError",
    "ConfigError",
    "Conflict",
    "FailedPrecondition",
    "InvalidRequest",
    "MigrationError",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "StoreError",
    "TokenError",
    "TokenExpired",
    "TokenUnknown",
    "TokenUsed",
    "Unauthenticated",
    "UnknownAgent",
    "UnknownUser",
    "UserExists",
    "format_ms",
]

_NEW_TOKEN = "create a new one with `aftercare-collector token create`"


def format_ms(ms: int) -> str:
    """Render unix milliseconds as an ISO-8601 UTC timestamp for messages (any int:
    one outside the calendar is shown as a number, never an exception)."""
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")
    except (ValueError, OverflowError, OSError):
        return f"{ms} ms after 1970 (out of range)"


class CollectorError(Exception):
    """Base of every error the collector raises on purpose."""


class StoreError(CollectorError):
    """The store backend failed (locked, corrupt, disk full, connection lost)."""


class MigrationError(StoreError):
    """The database schema cannot be migrated to, or is newer than, what this code knows."""


class NotFound(CollectorError):
    """A named object does not exist."""


class UnknownAgent(NotFound):
    """No agent with this id is enrolled."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        super().__init__(
            f"unknown agent {agent_id!r}; it is not enrolled here "
            f"(enrol it with a join token: `aftercare-collector token create`)"
        )


class UnknownUser(NotFound):
    """No user with this name exists."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown user {name!r}; add it with `aftercare-collector user add`")


class Conflict(CollectorError):
    """The operation would create a duplicate of an existing object."""


class UserExists(Conflict):
    """A user with this name already exists."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"user {name!r} already exists; choose another name")


class TokenError(CollectorError):
    """A join token cannot be used to enrol an agent."""


class TokenUnknown(TokenError):
    """The join token was never issued (or was mistyped)."""

    def __init__(self) -> None:
        super().__init__(f"join token not recognised; check it was copied whole, or {_NEW_TOKEN}")


class TokenUsed(TokenError):
    """The join token has already enrolled an agent (tokens are single use)."""

    def __init__(self, used_ms: int | None = None) -> None:
        self.used_ms = used_ms
        when = f" at {format_ms(used_ms)}" if used_ms is not None else ""
        super().__init__(
            f"join token already used{when}; each token enrols one agent — {_NEW_TOKEN}"
        )


class TokenExpired(TokenError):
    """The join token's validity period has passed."""

    def __init__(self, expires_ms: int) -> None:
        self.expires_ms = expires_ms
        super().__init__(f"join token expired at {format_ms(expires_ms)}; {_NEW_TOKEN}")


class AuthError(CollectorError):
    """A person's API request is not authenticated or not allowed."""


class Unauthenticated(AuthError):
    """No API token, or one the collector does not know."""

    def __init__(
        self,
        message: str = "missing or unknown API token; ask an admin for one "
        "(`aftercare-collector user add`)",
    ) -> None:
        super().__init__(message)


class PermissionDenied(AuthError):
    """The authenticated user's role or customer does not allow the action."""


class RateLimited(CollectorError):
    """Too many failed unauthenticated attempts from one source; try again later."""


class AgentRevoked(CollectorError):
    """The agent's enrolment was revoked; it must enrol again."""

    def __init__(self, agent_id: str, revoked_ms: int | None = None) -> None:
        self.agent_id = agent_id
        self.revoked_ms = revoked_ms
        when = f" at {format_ms(revoked_ms)}" if revoked_ms is not None else ""
        super().__init__(
            f"agent {agent_id!r} was revoked{when}; to bring it back, enrol it again "
            f"with a new join token (`aftercare-collector token create`)"
        )


class InvalidRequest(CollectorError):
    """Bad input from an agent or a user (malformed CSR, out-of-range value, ...)."""


class FailedPrecondition(CollectorError):
    """The action needs something the caller did not bring (e.g. a signed approval)."""


class ConfigError(CollectorError):
    """The collector's configuration is invalid; the message names the field."""
