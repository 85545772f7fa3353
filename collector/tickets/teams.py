"""Teams for level-by-level escalation (逐级上传): pure, loaded from the tickets config.

Engineers each have a recipient (an e-mail address or a webhook) and optionally a
supervisor (another engineer; the chain ends at one without). A team serves some
customers and has an on-call rotation: its engineers take turns of ``shift_ms``
each, counted from ``since_ms``.

The chain of a ticket (``chain_for``) starts at the engineer responsible for it — its
assignee when that is a configured engineer, else the on-call engineer of the
customer's team when the ticket was opened — and goes up supervisor by supervisor.
A ticket whose customer has no team has no chain (None): the escalation ladder's
fixed recipient lists apply. Supervisor cycles and unknown names are refused when
the config is loaded (``check``), so a chain always ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from collector.tickets.escalation import Recipient
from collector.tickets.model import Ticket

__all__ = ["Engineer", "Team", "Teams"]


@dataclass(frozen=True)
class Engineer:
    """Where an engineer is notified, and who they report to ("" at the top)."""

    recipient: Recipient
    supervisor: str = ""


@dataclass(frozen=True)
class Team:
    """Customers served and the on-call rotation (each in turn for ``shift_ms``)."""

    customers: tuple[str, ...]
    on_call: tuple[str, ...]
    shift_ms: int
    since_ms: int = 0

    def on_call_at(self, at_ms: int) -> str:
        """The engineer on call at ``at_ms`` (before ``since_ms``: the first one)."""
        turn = max(0, at_ms - self.since_ms) // self.shift_ms
        return self.on_call[turn % len(self.on_call)]


@dataclass(frozen=True)
class Teams:
    """Engineers by name and teams by name; empty: no chains (fixed lists apply)."""

    engineers: Mapping[str, Engineer] = field(default_factory=dict)
    teams: Mapping[str, Team] = field(default_factory=dict)

    def team_of(self, customer: str) -> Team | None:
        """The team serving ``customer``, if any."""
        return next((t for t in self.teams.values() if customer in t.customers), None)

    def chain_for(self, ticket: Ticket) -> tuple[str, ...] | None:
        """The engineers the ticket escalates to, in order (see the module docstring);
        None when its customer has no team."""
        team = self.team_of(ticket.customer)
        if team is None:
            return None
        first = ticket.assignee or ""
        if first not in self.engineers:
            first = team.on_call_at(ticket.created_ms)
        return self.chain_from(first)

    def chain_from(self, name: str) -> tuple[str, ...]:
        """``name``, their supervisor, theirs, … up to the top."""
        chain = [name]
        while (above := self.engineers[chain[-1]].supervisor) and above not in chain:
            chain.append(above)
        return tuple(chain)

    def recipients_for(self, ticket: Ticket) -> tuple[Recipient, ...] | None:
        """The chain's recipients (None when the customer has no team)."""
        chain = self.chain_for(ticket)
        return None if chain is None else tuple(self.engineers[n].recipient for n in chain)

    def problems(self) -> list[tuple[str, str]]:
        """(key path, problem) for unknown names, supervisor cycles and customers in
        two teams; empty when the teams are consistent."""
        found: list[tuple[str, str]] = []
        for name, engineer in self.engineers.items():
            path = f"teams.engineers.{name}.supervisor"
            if engineer.supervisor and engineer.supervisor not in self.engineers:
                found.append((path, f"unknown engineer {engineer.supervisor!r}"))
            elif self._cycles(name):
                found.append((path, "supervisors go round in a circle; the chain must end"))
        seen: dict[str, str] = {}
        for team_name, team in self.teams.items():
            for index, name in enumerate(team.on_call):
                if name not in self.engineers:
                    path = f"teams.teams.{team_name}.on_call[{index}]"
                    found.append((path, f"unknown engineer {name!r}; list them under engineers"))
            for customer in team.customers:
                if customer in seen:
                    path = f"teams.teams.{team_name}.customers"
                    found.append((path, f"customer {customer!r} is already in {seen[customer]!r}"))
                seen[customer] = team_name
        return found

    def _cycles(self, name: str) -> bool:
        visited = {name}
        current = self.engineers[name].supervisor
        while current and current in self.engineers:
            if current in visited:
                return True
            visited.add(current)
            current = self.engineers[current].supervisor
        return False
