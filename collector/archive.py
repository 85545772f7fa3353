"""The host's archive (设备档案): one timeline of everything recorded about a host.

The timeline is merged from SOURCES: each is one small async function reading one kind
of record for the host and returning ``ArchiveEntry`` items (time, kind, summary,
reference). Add a source (inspections, change records) by passing it to ``Archive``;
nothing else changes. Each source returns at most ``SOURCE_LIMIT`` entries, its
newest; the timeline is newest first. See docs/archive.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from collector.runs.model import RunRecord
from collector.sessions.model import RemoteSession
from collector.store.base import AgentRecord, AuditEntry, GapRecord
from collector.store.writer import StoreThread
from collector.tickets.model import Ticket

__all__ = [
    "DEFAULT_SOURCES",
    "SOURCE_LIMIT",
    "Archive",
    "ArchiveEntry",
    "Source",
    "audit_entries",
    "enrolment_entries",
    "gap_entries",
    "run_entries",
    "session_entries",
    "ticket_entries",
]

SOURCE_LIMIT = 500
# Ticket and session lists are read per customer, newest first, then kept for the host.
CUSTOMER_SCAN_LIMIT = 5000


@dataclass(frozen=True)
class ArchiveEntry:
    """One event in a host's archive; ``ref`` names the record it comes from ("" if none)."""

    at_ms: int
    kind: str
    summary: str
    ref: str = ""


Source = Callable[[StoreThread, AgentRecord], Awaitable[Sequence[ArchiveEntry]]]


class Archive:
    """Builds host timelines from its sources."""

    def __init__(self, db: StoreThread, sources: Iterable[Source] | None = None) -> None:
        self._db = db
        self._sources = tuple(sources if sources is not None else DEFAULT_SOURCES)

    async def timeline(self, agent: AgentRecord, since_ms: int = 0) -> list[ArchiveEntry]:
        """Every source's entries at or after ``since_ms``, newest first (ties: by kind,
        then reference)."""
        entries: list[ArchiveEntry] = []
        for source in self._sources:
            found = await source(self._db, agent)
            entries.extend(e for e in newest(found) if e.at_ms >= since_ms)
        return sorted(entries, key=lambda e: (-e.at_ms, e.kind, e.ref, e.summary))


def newest(entries: Iterable[ArchiveEntry], limit: int = SOURCE_LIMIT) -> list[ArchiveEntry]:
    """The ``limit`` newest of ``entries``."""
    return sorted(entries, key=lambda e: -e.at_ms)[:limit]


# -- sources ------------------------------------------------------------------------


async def enrolment_entries(db: StoreThread, agent: AgentRecord) -> list[ArchiveEntry]:
    """Enrolment and revocation, from the agent record (renewals come from the audit log)."""
    entries = [
        ArchiveEntry(
            agent.enrolled_ms,
            "enrolled",
            f"enrolled as {agent.hostname} for customer {agent.customer}",
            agent.agent_id,
        )
    ]
    if agent.revoked_ms is not None:
        entries.append(ArchiveEntry(agent.revoked_ms, "revoked", "agent revoked", agent.agent_id))
    return entries


async def ticket_entries(db: StoreThread, agent: AgentRecord) -> list[ArchiveEntry]:
    """Each of the host's tickets: opened, resolved, closed."""
    tickets = await db.call(db.store.list_tickets, agent.customer, None, None, CUSTOMER_SCAN_LIMIT)
    return [e for t in tickets if t.agent_id == agent.agent_id for e in _ticket(t)]


def _ticket(ticket: Ticket) -> list[ArchiveEntry]:
    ref = f"ticket {ticket.id}"
    entries = [
        ArchiveEntry(
            ticket.created_ms,
            "ticket",
            f"ticket opened, level {ticket.level}: {ticket.title} (now {ticket.state})",
            ref,
        )
    ]
    if ticket.resolved_ms is not None:
        entries.append(ArchiveEntry(ticket.resolved_ms, "ticket", "ticket resolved", ref))
    if ticket.closed_ms is not None:
        entries.append(
            ArchiveEntry(ticket.closed_ms, "ticket", f"ticket closed ({ticket.close_reason})", ref)
        )
    return entries


async def session_entries(db: StoreThread, agent: AgentRecord) -> list[ArchiveEntry]:
    """Each remote session of the host: requested, and how it ended."""
    sessions = await db.call(
        db.store.list_sessions, agent.customer, None, None, CUSTOMER_SCAN_LIMIT
    )
    return [e for s in sessions if s.agent_id == agent.agent_id for e in _session(s)]


def _session(session: RemoteSession) -> list[ArchiveEntry]:
    entries = [
        ArchiveEntry(
            session.requested_ms,
            "session",
            f"remote session requested by {session.engineer}: {session.reason} "
            f"(now {session.state})",
            session.session_id,
        )
    ]
    if session.connected_ms is not None:
        entries.append(
            ArchiveEntry(
                session.connected_ms,
                "session",
                f"{session.engineer} logged in (approved by {session.approved_by or '?'})",
                session.session_id,
            )
        )
    if session.ended_ms is not None:
        entries.append(
            ArchiveEntry(
                session.ended_ms,
                "session",
                f"remote session {session.state}: {session.end_reason or session.deny_reason}",
                session.session_id,
            )
        )
    return entries


async def run_entries(db: StoreThread, agent: AgentRecord) -> list[ArchiveEntry]:
    """Each playbook run on the host, at its request, with its current state."""
    runs = await db.call(db.store.list_runs, None, agent.agent_id, SOURCE_LIMIT)
    return [_run(r) for r in runs]


def _run(run: RunRecord) -> ArchiveEntry:
    return ArchiveEntry(
        run.requested_ms,
        "run",
        f"playbook {run.playbook} {run.version} ({run.mode}) requested by "
        f"{run.requested_by}: {run.state}",
        run.run_id,
    )


async def gap_entries(db: StoreThread, agent: AgentRecord) -> list[ArchiveEntry]:
    """Data the agent could not keep (its spool bound exceeded)."""
    gaps = await db.call(db.store.gaps, agent.agent_id)
    return [_gap(g) for g in gaps]


def _gap(gap: GapRecord) -> ArchiveEntry:
    return ArchiveEntry(
        gap.start_ms,
        "gap",
        f"{gap.lost_batches} batches lost up to {gap.end_ms} ms: {gap.reason}",
        f"sequence {gap.sequence}",
    )


async def audit_entries(db: StoreThread, agent: AgentRecord) -> list[ArchiveEntry]:
    """Audit log entries naming the host (as target or as ``agent_id`` in the details);
    certificate renewals show as kind ``certificate``. Reads the whole audit log."""
    entries = await db.call(db.store.audit_entries, 0)
    return [_audit(e) for e in entries if _about(e, agent.agent_id)]


def _about(entry: AuditEntry, agent_id: str) -> bool:
    return entry.target == agent_id or entry.details.get("agent_id") == agent_id


def _audit(entry: AuditEntry) -> ArchiveEntry:
    kind = "certificate" if entry.action == "agent.certificate_renewed" else "audit"
    return ArchiveEntry(entry.at_ms, kind, f"{entry.action} by {entry.actor}", f"audit {entry.id}")


DEFAULT_SOURCES: tuple[Source, ...] = (
    enrolment_entries,
    ticket_entries,
    session_entries,
    run_entries,
    gap_entries,
    audit_entries,
)
