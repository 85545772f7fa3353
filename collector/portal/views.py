"""What the portal's pages show, gathered through the collector's services.

Pure of HTTP: each function takes the signed-in ``Principal`` and returns plain
dataclasses for the templates. Tenancy is the services' (and ``Principal``'s): a
customer user gets only its customer's hosts, tickets, sessions and inspections.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from collector.auth import Principal
from collector.errors import NotFound
from collector.fleet import Fleet
from collector.gateway.recording import WatchHub, WatchItem
from collector.health import HealthSummary, summarize
from collector.inspections.service import InspectionService, InspectionView
from collector.runs.model import RunRecord
from collector.runs.service import RunService
from collector.sessions.model import RemoteSession
from collector.sessions.service import SessionService
from collector.store import AgentRecord
from collector.store.writer import StoreThread
from collector.tickets.model import ACTIVE_STATES
from collector.tickets.service import TicketService, TicketView
from playbooks.model import Playbook

__all__ = ["HostRow", "Overview", "Portal", "Waiting"]

OVERVIEW_LIMIT = 200  # sessions and inspections looked at
TICKETS_SHOWN = 50  # the newest active tickets on the overview
CONSENT_STATES = frozenset({"planned", "announced"})
QUEUE_STATES = ACTIVE_STATES - {"resolved"}  # resolved ones wait for the customer
QUEUE_LIMIT = 500
TICKET_RUNS_SHOWN = 50  # diagnostic runs listed on a ticket's page


@dataclass(frozen=True)
class HostRow:
    """One host on the overview."""

    agent_id: str
    hostname: str
    customer: str
    connected: bool
    last_seen_ms: int | None
    revoked: bool
    health: HealthSummary


@dataclass(frozen=True)
class Waiting:
    """What waits for the customer's decision."""

    sessions: tuple[RemoteSession, ...]  # pending requests
    tickets: tuple[TicketView, ...]  # resolved: confirm or reject the fix
    consents: tuple[InspectionView, ...]  # planned/announced: consent
    signoffs: tuple[InspectionView, ...]  # published: sign or reject
    runs: tuple[RunRecord, ...] = ()  # playbook runs waiting for approval

    @property
    def count(self) -> int:
        return (
            len(self.sessions)
            + len(self.tickets)
            + len(self.consents)
            + len(self.signoffs)
            + len(self.runs)
        )


@dataclass(frozen=True)
class Overview:
    """The overview page."""

    hosts: tuple[HostRow, ...]
    tickets: tuple[TicketView, ...]  # active, newest first (at most TICKETS_SHOWN)
    live_sessions: tuple[RemoteSession, ...]  # approved or active: can be terminated
    waiting: Waiting
    tickets_cut: bool = False  # more active tickets than shown


# A live session's events from another replica; None when none holds it.
RemoteWatch = Callable[[str], Awaitable[AsyncIterator[WatchItem] | None]]


class Portal:
    """The services a page reads and acts through (those of the running collector)."""

    def __init__(
        self,
        db: StoreThread,
        fleet: Fleet,
        tickets: TicketService,
        sessions: SessionService,
        inspections: InspectionService | None,
        clock_ms: Callable[[], int],
        runs: RunService | None = None,
        data_dir: Path = Path("."),
        watch_hub: WatchHub | None = None,
        remote_watch: RemoteWatch | None = None,
    ) -> None:
        self.runs = runs
        # a live session's events from the replica whose gateway holds its engineer's
        # connection (ReplicaRouting.remote_watch); None with one process
        self.remote_watch = remote_watch
        self.watch_hub = watch_hub or WatchHub()  # live recording events (the gateway's)
        self.data_dir = data_dir  # recordings are under it
        self.db = db
        self.fleet = fleet
        self.tickets = tickets
        self.sessions = sessions
        self.inspections = inspections
        self.clock_ms = clock_ms

    async def overview(self, who: Principal) -> Overview:
        """Hosts, active tickets, live sessions and what waits for ``who``."""
        tickets = await self.tickets.list_tickets(
            who, sorted(ACTIVE_STATES), None, None, TICKETS_SHOWN
        )
        to_confirm = await self.tickets.list_tickets(who, ["resolved"], None, None, OVERVIEW_LIMIT)
        sessions = await self.sessions.list_sessions(who, OVERVIEW_LIMIT)
        inspections: list[InspectionView] = []
        if self.inspections is not None:
            inspections = await self.inspections.list_inspections(who, None, (), OVERVIEW_LIMIT)
        runs: list[RunRecord] = []
        if self.runs is not None:
            runs = await self.runs.list_runs(who, None, OVERVIEW_LIMIT)
        waiting = Waiting(
            runs=tuple(r for r in runs if r.state == "waiting_approval"),
            sessions=tuple(s for s in sessions if s.state == "pending"),
            tickets=tuple(to_confirm),
            consents=tuple(i for i in inspections if i.inspection.state in CONSENT_STATES),
            signoffs=tuple(i for i in inspections if i.inspection.state == "awaiting_signoff"),
        )
        return Overview(
            hosts=tuple(await self.hosts(who)),
            tickets=tuple(tickets),
            tickets_cut=len(tickets) >= TICKETS_SHOWN,
            live_sessions=tuple(s for s in sessions if s.state in ("approved", "active")),
            waiting=waiting,
        )

    async def visible_host(self, who: Principal, agent_id: str) -> AgentRecord:
        """The host ``agent_id`` if ``who`` may see it; NotFound (404) otherwise."""
        agent = await self.db.call(self.db.store.get_agent, agent_id)
        if agent is None or (who.role == "customer" and agent.customer != who.customer):
            raise NotFound(f"no host {agent_id!r}; the fleet page lists them")
        return agent

    async def ticket_runs(self, who: Principal, ticket_id: int) -> list[RunRecord]:
        """The playbook runs attached to ticket ``ticket_id`` (newest first, at most
        TICKET_RUNS_SHOWN) that ``who`` may see; [] when runs are not served."""
        if self.runs is None:
            return []
        return await self.runs.list_ticket_runs(who, ticket_id, TICKET_RUNS_SHOWN)

    def playbook(self, name: str) -> Playbook | None:
        """The catalogue's playbook ``name`` (what a run collects or changes), if served."""
        catalogue = self.runs.catalogue if self.runs is not None else None
        return catalogue.playbooks.get(name) if catalogue is not None else None

    async def queue(self, who: Principal, level: str, customer: str) -> list[TicketView]:
        """Engineers' queue: active tickets (filtered by level and customer), the most
        urgent first — by the earliest deadline of a running SLA clock, tickets without
        one last."""
        who.require("engineer", "admin")
        views = await self.tickets.list_tickets(
            who, sorted(QUEUE_STATES), level or None, customer or None, QUEUE_LIMIT
        )
        return sorted(views, key=_urgency)

    async def hosts(self, who: Principal) -> list[HostRow]:
        """The hosts ``who`` may see, with health and connectivity, by hostname."""
        agents = await self.db.call(self.db.store.list_agents, who.visible_customer(None))
        rows = []
        for agent in agents:
            state = self.fleet.get(agent.agent_id)
            last_seen = max(agent.last_seen_ms or 0, (state.last_seen_ms or 0) if state else 0)
            rows.append(
                HostRow(
                    agent_id=agent.agent_id,
                    hostname=agent.hostname,
                    customer=agent.customer,
                    connected=bool(state and state.connected),
                    last_seen_ms=last_seen or None,
                    revoked=agent.revoked_ms is not None,
                    health=summarize(state.samples if state else ()),
                )
            )
        return sorted(rows, key=lambda r: (r.customer, r.hostname))


def _urgency(view: TicketView) -> tuple[int, int]:
    """Sort key: the earliest due time of a running clock (none: last), then age."""
    due = [
        c.due_ms
        for c in view.sla.clocks
        if c.applicable and not c.stopped and not c.paused and c.due_ms is not None
    ]
    return (min(due) if due else 2**62, view.ticket.created_ms)
