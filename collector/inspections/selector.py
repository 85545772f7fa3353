"""Which hosts an inspection covers: a plan's ``--hosts`` selector.

Pure. A selector is a comma-separated list of shell-style patterns (``web-*,db-1``)
matched against each host's hostname and agent id; empty selects every host of the
customer. Revoked hosts are never selected.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from collector.errors import InvalidRequest
from collector.store.base import AgentRecord

__all__ = ["check_selector", "select_hosts"]

MAX_SELECTOR = 1000


def check_selector(selector: str) -> str:
    """The selector, normalised (spaces stripped); InvalidRequest if malformed."""
    if len(selector) > MAX_SELECTOR:
        raise InvalidRequest(f"--hosts is {len(selector)} characters; the limit is {MAX_SELECTOR}")
    patterns = [p.strip() for p in selector.split(",")] if selector.strip() else []
    if any(not p for p in patterns):
        raise InvalidRequest(f"--hosts {selector!r}: an empty pattern between commas")
    return ",".join(patterns)


def select_hosts(agents: Sequence[AgentRecord], customer: str, selector: str) -> list[AgentRecord]:
    """The customer's enrolled, unrevoked hosts the selector matches, by hostname."""
    patterns = [p for p in check_selector(selector).split(",") if p]
    chosen = [
        agent
        for agent in agents
        if agent.customer == customer
        and agent.revoked_ms is None
        and (
            not patterns
            or any(
                fnmatch.fnmatchcase(agent.hostname, p) or fnmatch.fnmatchcase(agent.agent_id, p)
                for p in patterns
            )
        )
    ]
    return sorted(chosen, key=lambda a: (a.hostname, a.agent_id))
