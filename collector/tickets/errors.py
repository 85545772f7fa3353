"""Errors raised by the ticket domain logic, placed in the collector's exception tree.

They subclass the collector's own errors so the API layer maps them to gRPC status
codes without knowing about tickets (FailedPrecondition → FAILED_PRECONDITION,
NotFound → NOT_FOUND, ConfigError → refuse to start)::

    CollectorError                      (collector.errors)
    ├── NotFound
    │   └── TicketNotFound              no such ticket (or not visible to this user)
    ├── FailedPrecondition
    │   └── InvalidTransition           the action does not apply in the ticket's state
    ├── InvalidRequest                  (used as is: empty cause, reason or comment)
    └── ConfigError
        └── TicketConfigError           tickets.yaml is invalid; names file and key path
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.errors import ConfigError, FailedPrecondition, NotFound

__all__ = ["InvalidTransition", "TicketConfigError", "TicketNotFound"]


class TicketNotFound(NotFound):
    """No ticket with this id exists, or the user may not see it (same answer on purpose)."""

    def __init__(self, ticket_id: int) -> None:
        self.ticket_id = ticket_id
        super().__init__(f"ticket {ticket_id} not found; list tickets with `aftercare tickets`")


class InvalidTransition(FailedPrecondition):
    """An action that the ticket's current state does not allow.

    The message says the state and what is possible, e.g. "ticket 12 is closed;
    `acknowledge` does not apply (possible: `comment`, `reopen`)".
    """

    def __init__(
        self,
        ticket_id: int,
        state: str,
        action: str,
        possible: Sequence[str],
        hint: str = "",
    ) -> None:
        self.ticket_id = ticket_id
        self.state = state
        self.action = action
        self.possible = tuple(possible)
        message = f"ticket {ticket_id} is {state}; `{action}` does not apply"
        if hint:
            message += f": {hint}"
        super().__init__(f"{message} ({_possible_text(self.possible)})")


def _possible_text(possible: Sequence[str]) -> str:
    if not possible:
        return "nothing applies"
    if len(possible) == 1:
        return f"only `{possible[0]}` applies"
    return "possible: " + ", ".join(f"`{name}`" for name in possible)


class TicketConfigError(ConfigError):
    """The tickets configuration is invalid. ``key_path`` is like "escalation.steps[1].trigger"."""

    def __init__(
        self,
        key_path: str,
        message: str,
        source: str = "",
        problems: Sequence[TicketConfigError] = (),
    ) -> None:
        self.key_path = key_path
        self.detail = message
        self.source = source
        self.problems = list(problems)  # each problem, when there are several
        where = f"{source}: " if source else ""
        key = f"{key_path}: " if key_path else ""
        super().__init__(f"{where}{key}{message}")

    @classmethod
    def several(cls, problems: Sequence[TicketConfigError]) -> TicketConfigError:
        """One error listing every problem, one per line."""
        lines = "".join(f"\n  {problem}" for problem in problems)
        return cls("", f"{len(problems)} problems:{lines}", problems=problems)
