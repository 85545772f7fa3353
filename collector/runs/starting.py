"""Starting a run for a signed-in person: the checks the gRPC API and the portal share.

An engineer or admin starts a run on a host they may see; a ticket named with it must
exist for them and belong to the host's customer. The run service then records it,
audits ``playbook.run_requested`` and sends it to the host.
"""

from __future__ import annotations

from collections.abc import Mapping

from collector import limits
from collector.auth import Principal
from collector.errors import InvalidRequest
from collector.runs.model import RunRecord
from collector.runs.service import RunService
from collector.store import AgentRecord
from collector.tickets.service import TicketService

__all__ = ["start_run"]


async def start_run(
    who: Principal,
    runs: RunService,
    tickets: TicketService,
    agent: AgentRecord,
    playbook: str,
    params: Mapping[str, str],
    ticket_id: int | None,
    reason: str = "",
) -> RunRecord:
    """Start ``playbook`` on ``agent`` as ``who`` (engineer or admin, else
    PermissionDenied). NotFound for a ticket ``who`` cannot see; InvalidRequest for a
    ticket of another customer, a reason over ``limits.SESSION_REASON`` bytes (it is
    stored with the run), or parameters the catalogue refuses."""
    who.require("engineer", "admin")
    limits.text("reason", reason, limits.SESSION_REASON)
    if ticket_id is not None:
        view = await tickets.get(who, ticket_id)
        if view.ticket.customer != agent.customer:
            raise InvalidRequest(f"ticket {ticket_id} belongs to another customer")
    return await runs.start(f"user:{who.name}", agent, playbook, dict(params), ticket_id, reason)
