"""The host archive: its sources on a real store, the merged timeline, plug-in sources."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from collector.archive import DEFAULT_SOURCES, Archive, ArchiveEntry
from collector.inspections.archive_sources import ARCHIVE_SOURCES
from collector.inspections.model import ChangeRecord
from collector.runs.model import RunRecord
from collector.sessions.model import NewSessionEvent, RemoteSession
from collector.store import AgentRecord, GapRecord, SQLiteStore
from collector.store.writer import StoreThread
from collector.tickets.model import NewEvent, NewTicket

T0 = 1_700_000_000_000
S = 1000


def agent_record(agent_id: str, hostname: str) -> AgentRecord:
    return AgentRecord(agent_id, "acme", hostname, T0, f"serial-{agent_id}", T0 + 86_400_000)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StoreThread]:
    thread = StoreThread(SQLiteStore(tmp_path / "a.db"))
    yield thread
    thread.close()


def populate(store: SQLiteStore) -> AgentRecord:
    """A host a1 with one record of every kind, and a host a2 with its own ticket."""
    host = agent_record("a1", "web1")
    store.add_agent(host)
    store.add_agent(agent_record("a2", "web2"))
    store.append_audit("agent:a1", "agent.certificate_renewed", "a1", {"serial": "x"}, T0 + 1 * S)
    for agent_id, at in (("a1", T0 + 2 * S), ("a2", T0 + 3 * S)):
        store.create_ticket(
            NewTicket("acme", f"disk of {agent_id}", "2", "rule", agent_id=agent_id),
            NewEvent(at, "rule:disk", "opened"),
        )
    store.create_session(
        RemoteSession("ses-0123456789ab", "a1", "acme", "web1", "erin", "check disk",
                      3_600_000, T0 + 4 * S, T0 + 600 * S),
        NewSessionEvent(T0 + 4 * S, "user:erin", "requested"),
    )  # fmt: skip
    store.create_run(
        RunRecord("run-0123456789ab", "a1", "acme", "web1", "disk_usage", "1.0.0",
                  "read-only", {}, "user:erin", T0 + 5 * S)
    )  # fmt: skip
    store.store_gap("a1", GapRecord(7, 1, 6, 6, T0 + 6 * S, T0 + 7 * S, "spool full", T0 + 8 * S))
    store.append_audit("user:erin", "playbook.run_requested", "run-0123456789ab",
                       {"agent_id": "a1"}, T0 + 9 * S)  # fmt: skip
    store.append_audit("user:erin", "playbook.run_requested", "run-x", {"agent_id": "a2"}, T0)
    return host


def timeline(db: StoreThread, host: AgentRecord, **kwargs: object) -> list[ArchiveEntry]:
    archive = Archive(db, kwargs.pop("sources", None))  # type: ignore[arg-type]
    return asyncio.run(archive.timeline(host, **kwargs))  # type: ignore[arg-type]


def test_every_source_newest_first_and_only_this_host(db: StoreThread) -> None:
    assert isinstance(db.store, SQLiteStore)
    host = populate(db.store)
    entries = timeline(db, host)
    assert [(e.at_ms - T0, e.kind, e.ref) for e in entries] == [
        (9 * S, "audit", "audit 4"),  # audit 2 and 3: the two tickets opened
        (6 * S, "gap", "sequence 7"),
        (5 * S, "run", "run-0123456789ab"),
        (4 * S, "session", "ses-0123456789ab"),
        (2 * S, "ticket", "ticket 1"),
        (1 * S, "certificate", "audit 1"),
        (0, "enrolled", "a1"),
    ]
    assert "disk of a1" in entries[4].summary and "level 2" in entries[4].summary
    assert "disk_usage 1.0.0" in entries[2].summary
    assert "web2" not in str(entries) and "disk of a2" not in str(entries)


def test_since_keeps_the_newer_entries(db: StoreThread) -> None:
    assert isinstance(db.store, SQLiteStore)
    host = populate(db.store)
    assert [e.kind for e in timeline(db, host, since_ms=T0 + 5 * S)] == ["audit", "gap", "run"]


def test_a_plugged_in_source_joins_the_timeline(db: StoreThread) -> None:
    assert isinstance(db.store, SQLiteStore)
    host = populate(db.store)

    async def inspections(_db: StoreThread, agent: AgentRecord) -> Sequence[ArchiveEntry]:
        return [ArchiveEntry(T0 + 10 * S, "inspection", f"inspected {agent.hostname}", "insp-1")]

    entries = timeline(db, host, sources=[*DEFAULT_SOURCES, inspections])
    assert (entries[0].kind, entries[0].summary) == ("inspection", "inspected web1")
    assert len(entries) == 8


def test_revocation_shows_newest(db: StoreThread) -> None:
    assert isinstance(db.store, SQLiteStore)
    host = populate(db.store)
    revoked = db.store.revoke_agent("a1", T0 + 20 * S)
    kinds = [e.kind for e in timeline(db, revoked)]
    assert kinds[0] == "revoked" and host.revoked_ms is None


def test_recorded_configuration_changes_are_in_the_archive(db: StoreThread) -> None:
    assert isinstance(db.store, SQLiteStore)
    host = populate(db.store)
    db.store.add_change_records(
        [
            ChangeRecord("a1", T0 + 11 * S, "inspection", "package", "nginx", "1.24", "1.26", 7),
            ChangeRecord("a1", T0 + 12 * S, "inspection", "unit", "cron", "active", None, 7),
            ChangeRecord("a2", T0 + 13 * S, "inspection", "package", "curl", "8.0", "8.1", 7),
        ]
    )
    entries = timeline(db, host, sources=ARCHIVE_SOURCES)
    changes = [(e.summary, e.ref) for e in entries if e.kind == "change"]
    assert changes == [
        ("unit cron: active → absent", "inspection 7"),
        ("package nginx: 1.24 → 1.26", "inspection 7"),
    ]
