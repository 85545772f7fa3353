"""The agent's exception tree: every error the agent raises on purpose.

Third-party errors (sqlite3, tomllib, agent.rpc.RpcError, cryptography, ...) are mapped to these at
the boundary with ``raise ... from exc``. Messages say what to do where there is
something to do.

    AgentError
    ├── ConfigError              bad config file or key; the message names file and key
    ├── SpoolError               the on-disk spool is unusable (unwritable, newer schema)
    ├── EnrollmentError          joining a collector failed
    │   ├── CAHashMismatch       the collector's CA does not match the pinned hash
    │   ├── TokenRejected        the collector refused the join token
    │   ├── AlreadyEnrolled      this agent already holds an identity
    │   └── CollectorUnreachable the collector could not be reached
    ├── NotEnrolledError         the agent has no identity yet; run the join command
    ├── BrokenIdentity           the key and certificate in the state dir do not match
    └── ApprovalRefused          a customer approval does not count on this host; the
                                 message is the precise reason (host log, collector)
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AgentError",
    "AlreadyEnrolled",
    "ApprovalRefused",
    "BrokenIdentity",
    "CAHashMismatch",
    "CollectorUnreachable",
    "ConfigError",
    "EnrollmentError",
    "NotEnrolledError",
    "SpoolError",
    "TokenRejected",
]


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The agent configuration is invalid.

    ``path`` is the config file (None for built-in defaults) and ``key`` the dotted
    key (e.g. ``"spool.max_size"``), when known; ``problem`` is the bare explanation.
    The message reads ``"<path>: <key>: <problem>"`` with absent parts left out.
    """

    def __init__(self, problem: str, *, path: Path | None = None, key: str | None = None) -> None:
        self.problem = problem
        self.path = path
        self.key = key
        super().__init__(": ".join(str(part) for part in (path, key, problem) if part))

    def in_file(self, path: Path | None) -> ConfigError:
        """The same error, attributed to the config file ``path``."""
        return ConfigError(self.problem, path=path, key=self.key)


class SpoolError(AgentError):
    """The on-disk spool cannot be used (unwritable, unreadable, or a newer schema)."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        self.path = path
        super().__init__(message)


class EnrollmentError(AgentError):
    """Joining a collector (exchanging a join token for a certificate) failed."""


class CAHashMismatch(EnrollmentError):
    """The collector presented a CA whose hash differs from the one in the join command."""


class TokenRejected(EnrollmentError):
    """The collector refused the join token (unknown, used or expired)."""


class AlreadyEnrolled(EnrollmentError):
    """The agent already has an identity; enrolling again would replace it."""


class CollectorUnreachable(EnrollmentError):
    """The collector could not be reached (DNS, TCP, or TLS failure)."""


class NotEnrolledError(AgentError):
    """The agent has no identity yet; it must be enrolled with a join token first."""


class BrokenIdentity(AgentError):
    """The state directory's key and certificate do not belong together (changed by
    hand: an interrupted renewal is completed or rolled back before this check)."""


class ApprovalRefused(AgentError):
    """An approval (signed statement, collector's word or local) does not count here."""
