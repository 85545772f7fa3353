"""Hash-chained audit log: hashing rule, verification, and tamper detection on SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from collector.audit import GENESIS_HASH, ChainVerdict, entry_hash, verify_chain
from collector.store import AuditEntry, SQLiteStore

T0 = 1_700_000_000_000


def build_chain(n: int) -> list[AuditEntry]:
    """A valid chain of n entries built with the pure hashing rule (no store)."""
    entries: list[AuditEntry] = []
    prev = GENESIS_HASH
    for i in range(1, n + 1):
        details: Mapping[str, Any] = {"n": i, "note": f"entry {i}"}
        digest = entry_hash(prev, T0 + i, f"user{i}", "session.approve", f"host{i}", details)
        entries.append(
            AuditEntry(i, T0 + i, f"user{i}", "session.approve", f"host{i}", details, prev, digest)
        )
        prev = digest
    return entries


def rehash(entry: AuditEntry) -> AuditEntry:
    """The entry with its own hash recomputed (a careful attacker's edit)."""
    digest = entry_hash(
        entry.prev_hash, entry.at_ms, entry.actor, entry.action, entry.target, entry.details
    )
    return replace(entry, hash=digest)


def test_entry_hash_is_canonical_and_sensitive() -> None:
    base = entry_hash(GENESIS_HASH, T0, "zoe", "user.add", "bob", {"a": 1, "b": [1, 2]})
    assert len(base) == 64 and int(base, 16) >= 0
    assert base == entry_hash(GENESIS_HASH, T0, "zoe", "user.add", "bob", {"b": [1, 2], "a": 1})
    changed = [
        entry_hash("1" * 64, T0, "zoe", "user.add", "bob", {"a": 1, "b": [1, 2]}),
        entry_hash(GENESIS_HASH, T0 + 1, "zoe", "user.add", "bob", {"a": 1, "b": [1, 2]}),
        entry_hash(GENESIS_HASH, T0, "zo", "user.add", "bob", {"a": 1, "b": [1, 2]}),
        entry_hash(GENESIS_HASH, T0, "zoe", "user.del", "bob", {"a": 1, "b": [1, 2]}),
        entry_hash(GENESIS_HASH, T0, "zoe", "user.add", "bo", {"a": 1, "b": [1, 2]}),
        entry_hash(GENESIS_HASH, T0, "zoe", "user.add", "bob", {"a": 1, "b": [2, 1]}),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def test_valid_chain() -> None:
    assert verify_chain(build_chain(5)) == ChainVerdict(
        ok=True, checked=5, first_bad_id=None, reason="5 entries ok"
    )


def test_empty_chain_is_valid() -> None:
    verdict = verify_chain([])
    assert verdict.ok and verdict.checked == 0


def test_edited_details_detected_at_that_entry() -> None:
    entries = build_chain(5)
    entries[2] = replace(entries[2], details={"n": 3, "note": "nothing to see"})
    verdict = verify_chain(entries)
    assert (verdict.ok, verdict.first_bad_id, verdict.checked) == (False, 3, 2)
    assert "modified" in verdict.reason


def test_edited_actor_detected_at_that_entry() -> None:
    entries = build_chain(5)
    entries[3] = replace(entries[3], actor="someone-else")
    verdict = verify_chain(entries)
    assert (verdict.ok, verdict.first_bad_id) == (False, 4)


def test_edit_with_recomputed_hash_detected_at_next_entry() -> None:
    entries = build_chain(5)
    entries[1] = rehash(replace(entries[1], target="other-host"))
    verdict = verify_chain(entries)
    assert (verdict.ok, verdict.first_bad_id) == (False, 3)
    assert "prev_hash" in verdict.reason


def test_deleted_middle_entry_detected() -> None:
    entries = build_chain(5)
    del entries[2]
    verdict = verify_chain(entries)
    assert (verdict.ok, verdict.first_bad_id, verdict.checked) == (False, 4, 2)


def test_deleted_entry_with_renumbered_ids_detected() -> None:
    entries = build_chain(5)
    del entries[2]
    entries = [replace(e, id=i) for i, e in enumerate(entries, start=1)]
    verdict = verify_chain(entries)
    assert (verdict.ok, verdict.first_bad_id) == (False, 3)


def test_renumbered_ids_detected_even_with_intact_hashes() -> None:
    # Ids are not hashed, but anchors and `after_id` refer to them: a jump is tampering.
    entries = build_chain(4)
    entries[2:] = [replace(e, id=e.id + 1) for e in entries[2:]]
    verdict = verify_chain(entries)
    assert (verdict.ok, verdict.first_bad_id) == (False, 4)
    assert "missing or reordered" in verdict.reason


def test_deleted_first_entry_detected() -> None:
    verdict = verify_chain(build_chain(3)[1:])
    assert (verdict.ok, verdict.first_bad_id) == (False, 2)


def test_reordered_entries_detected() -> None:
    entries = build_chain(4)
    entries[1], entries[2] = entries[2], entries[1]
    verdict = verify_chain(entries)
    assert (verdict.ok, verdict.first_bad_id) == (False, 3)


def test_suffix_verified_from_anchor() -> None:
    entries = build_chain(6)
    anchor = entries[2]
    assert verify_chain(entries[3:], prev_id=anchor.id, prev_hash=anchor.hash).ok
    assert not verify_chain(entries[3:], prev_id=anchor.id, prev_hash=GENESIS_HASH).ok


def test_tail_truncation_is_not_detectable_without_an_anchor() -> None:
    # Documented limitation: a shortened chain is internally consistent.
    assert verify_chain(build_chain(5)[:3]).ok


# -- on a real SQLite store, tampering behind its back ---------------------------------


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "aftercare.db"
    store = SQLiteStore(path)
    try:
        for i in range(1, 6):
            store.append_audit(
                "zoe", "session.approve", f"host{i}", {"reason": f"ticket {i}"}, at_ms=T0 + i
            )
        assert verify_chain(store.audit_entries()).ok
    finally:
        store.close()
    return path


DROP_TRIGGERS = (
    "DROP TRIGGER IF EXISTS audit_log_no_update",
    "DROP TRIGGER IF EXISTS audit_log_no_delete",
)


def tamper(path: Path, sql: str) -> None:
    """Change the database behind the store's back, as an attacker holding the data
    directory can: the append-only triggers are dropped first."""
    with closing(sqlite3.connect(path)) as conn, conn:
        for drop in DROP_TRIGGERS:
            conn.execute(drop)
        conn.execute(sql)


def verify_stored(path: Path) -> ChainVerdict:
    store = SQLiteStore(path)
    try:
        return verify_chain(store.audit_entries())
    finally:
        store.close()


def test_sqlite_row_edit_detected(db_path: Path) -> None:
    tamper(db_path, """UPDATE audit_log SET details = '{"reason":"routine"}' WHERE id = 3""")
    verdict = verify_stored(db_path)
    assert (verdict.ok, verdict.first_bad_id) == (False, 3)


def test_sqlite_actor_edit_detected(db_path: Path) -> None:
    tamper(db_path, "UPDATE audit_log SET actor = 'mallory' WHERE id = 4")
    verdict = verify_stored(db_path)
    assert (verdict.ok, verdict.first_bad_id) == (False, 4)


def test_sqlite_row_delete_detected(db_path: Path) -> None:
    tamper(db_path, "DELETE FROM audit_log WHERE id = 2")
    verdict = verify_stored(db_path)
    assert (verdict.ok, verdict.first_bad_id) == (False, 3)


def test_sqlite_untouched_log_verifies(db_path: Path) -> None:
    verdict = verify_stored(db_path)
    assert verdict.ok and verdict.checked == 5
