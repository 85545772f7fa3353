"""The host archive's inspection sources: each inspection that covered the host (its
run, publication and sign-off) and the configuration changes recorded for it.

Plugged into ``collector.archive.Archive`` next to its default sources (see
``ARCHIVE_SOURCES``); docs/archive.md lists the kinds.
"""

from __future__ import annotations

from collector.archive import DEFAULT_SOURCES, SOURCE_LIMIT, ArchiveEntry, Source
from collector.inspections.model import ChangeRecord, Inspection
from collector.store.base import AgentRecord
from collector.store.writer import StoreThread

__all__ = ["ARCHIVE_SOURCES", "change_entries", "inspection_entries"]


async def inspection_entries(db: StoreThread, agent: AgentRecord) -> list[ArchiveEntry]:
    """Each inspection of the host's customer whose run covered this host."""
    inspections = await db.call(db.store.list_inspections, agent.customer, None, SOURCE_LIMIT)
    return [
        entry for inspection in inspections for entry in _inspection(inspection, agent.agent_id)
    ]


def _inspection(inspection: Inspection, agent_id: str) -> list[ArchiveEntry]:
    result = next((h for h in inspection.host_results if h.agent_id == agent_id), None)
    if result is None or inspection.run_started_ms is None:
        return []
    ref = f"inspection {inspection.id}"
    entries = [
        ArchiveEntry(
            inspection.run_started_ms,
            "inspection",
            f"inspection by {inspection.engineer}: host {result.outcome}"
            + (f" ({result.detail})" if result.detail else ""),
            ref,
        )
    ]
    if inspection.published_ms is not None:
        entries.append(
            ArchiveEntry(
                inspection.published_ms,
                "inspection",
                f"inspection report published by {_who(inspection.published_by)} "
                f"(sha256 {inspection.report_sha256[:12]})",
                ref,
            )
        )
    signoff = inspection.signoff or {}
    if signoff.get("at_ms"):
        entries.append(
            ArchiveEntry(
                int(signoff["at_ms"]),
                "inspection",
                f"inspection report {signoff.get('decision', '?')} by "
                f"{signoff.get('name') or _who(str(signoff.get('by', '?')))}",
                ref,
            )
        )
    return entries


def _who(actor: str) -> str:
    """A stored actor (``user:erin``) as people read it (``erin``)."""
    return actor.removeprefix("user:")


async def change_entries(db: StoreThread, agent: AgentRecord) -> list[ArchiveEntry]:
    """Configuration changes recorded for the host (by inspections' drift check)."""
    changes = await db.call(db.store.change_records, agent.agent_id)
    return [_change(c) for c in changes]


def _change(change: ChangeRecord) -> ArchiveEntry:
    before = change.before if change.before is not None else "absent"
    after = change.after if change.after is not None else "absent"
    ref = f"inspection {change.inspection_id}" if change.inspection_id is not None else ""
    return ArchiveEntry(
        change.at_ms, "change", f"{change.kind} {change.item}: {before} → {after}", ref
    )


ARCHIVE_SOURCES: tuple[Source, ...] = (*DEFAULT_SOURCES, inspection_entries, change_entries)
