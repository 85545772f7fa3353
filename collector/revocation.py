"""A revoked agent is no target: the check the run and session services share.

The admin CLI revokes by writing the store directly; services read the agent record
fresh from the store for every request, so a revoked agent is refused at once. The
serving collector's periodic loop also ends the agent's live streams and tunnels
(``CollectorServer._cut_off``).
"""

from __future__ import annotations

from collector.errors import FailedPrecondition, format_ms
from collector.store import AgentRecord


def require_not_revoked(agent: AgentRecord, what: str) -> None:
    """FailedPrecondition ("agent revoked") if ``agent`` is revoked; ``what`` is the
    action refused, e.g. "run a playbook on it"."""
    if agent.revoked_ms is not None:
        raise FailedPrecondition(
            f"agent revoked: {agent.agent_id} ({agent.customer}/{agent.hostname}) was "
            f"revoked at {format_ms(agent.revoked_ms)}; cannot {what}. Enrol the host "
            "again to bring it back"
        )
