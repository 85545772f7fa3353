"""Signed audit checkpoints on a real data directory: ``audit checkpoint``, ``audit
verify --checkpoint`` against a cut, rewritten or forged log, and the append-only
triggers (attacks as tests; an attacker holding the data dir drops the triggers)."""

from __future__ import annotations

import json
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from collector.audit import entry_hash, verify_chain
from collector.cli import main
from collector.datadir import DataDir, initialise
from collector.store import SQLiteStore
from collector.store.migrate import split_statements
from tests.collector.test_audit import DROP_TRIGGERS

T0 = 1_700_000_000_000


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    data_dir = DataDir(tmp_path / "collector")
    initialise(data_dir, T0)
    append(data_dir, 5)
    return data_dir


def append(data_dir: DataDir, n: int, actor: str = "erin") -> None:
    store = data_dir.open_store()
    try:
        for i in range(n):
            store.append_audit(actor, "session.approve", f"host{i}", {"i": i}, T0 + i)
    finally:
        store.close()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def save_checkpoint(data_dir: DataDir, capsys: pytest.CaptureFixture[str]) -> Path:
    code, out = cli(capsys, "audit", "checkpoint", "--data-dir", str(data_dir.root), "--json")
    assert code == 0, out
    path = data_dir.root.parent / "checkpoint.json"
    path.write_text(out)
    return path


def verify(
    data_dir: DataDir, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    return cli(
        capsys, "audit", "verify", "--data-dir", str(data_dir.root), "--checkpoint", str(checkpoint)
    )


def sql(data_dir: DataDir, *statements: str) -> None:
    with closing(sqlite3.connect(data_dir.root / "aftercare.db")) as conn, conn:
        for statement in statements:
            conn.execute(statement)


def rows(data_dir: DataDir) -> Iterator[tuple[int, str, str, str, str, str, str]]:
    with closing(sqlite3.connect(data_dir.root / "aftercare.db")) as conn:
        yield from conn.execute(
            "SELECT id, actor, action, target, details, prev_hash, hash FROM audit_log ORDER BY id"
        )


def test_audit_key_created_at_init_and_on_next_start(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "d")
    initialise(data_dir, T0)
    assert stat.S_IMODE(data_dir.audit_key.stat().st_mode) == 0o600
    first = data_dir.load_audit_key().public
    data_dir.audit_key.unlink()  # a data directory from before audit checkpoints
    initialise(data_dir, T0)
    assert data_dir.audit_key.exists() and data_dir.load_audit_key().public != first
    initialise(data_dir, T0)
    assert len(data_dir.load_audit_key().public) == 32


def test_checkpoint_document(data_dir: DataDir, capsys: pytest.CaptureFixture[str]) -> None:
    document = json.loads(save_checkpoint(data_dir, capsys).read_text())
    body = document["checkpoint"]
    assert body["type"] == "aftercare.audit-checkpoint/v1"
    assert body["count"] == 6  # collector.initialised + 5
    entries = SQLiteStore(data_dir.root / "aftercare.db").audit_entries()
    assert body["head"] == entries[-1].hash
    code, out = cli(capsys, "audit", "checkpoint", "--data-dir", str(data_dir.root))
    assert code == 0 and "checkpoint of 6 audit entries" in out


def test_untouched_and_grown_log_contains_the_checkpoint(
    data_dir: DataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = save_checkpoint(data_dir, capsys)
    code, out = verify(data_dir, checkpoint, capsys)
    assert code == 0 and "contains the checkpoint of 6 entries" in out, out
    append(data_dir, 3)
    code, out = verify(data_dir, checkpoint, capsys)
    assert code == 0, out
    code, out = cli(
        capsys,
        "audit",
        "verify",
        "--data-dir",
        str(data_dir.root),
        "--checkpoint",
        str(checkpoint),
        "--json",
    )
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["checkpoint"]["contained"]


def test_tail_cut_detected(data_dir: DataDir, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = save_checkpoint(data_dir, capsys)
    sql(data_dir, *DROP_TRIGGERS, "DELETE FROM audit_log WHERE id > 4")
    assert verify_chain(SQLiteStore(data_dir.root / "aftercare.db").audit_entries()).ok
    code, out = verify(data_dir, checkpoint, capsys)
    assert code == 1
    assert "does NOT contain" in out and "entries 5..6 were removed (the tail was cut)" in out


def test_rewritten_suffix_detected(data_dir: DataDir, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = save_checkpoint(data_dir, capsys)
    statements = list(DROP_TRIGGERS)
    prev = ""
    for entry_id, actor, action, target, details, prev_hash, _ in list(rows(data_dir)):
        if entry_id < 4:
            continue
        prev = prev or prev_hash
        if entry_id == 4:
            actor = "mallory"  # rewrite from entry 4 on, recomputing every hash
        digest = entry_hash(prev, T0, actor, action, target, json.loads(details))
        statements.append(
            f"UPDATE audit_log SET actor = '{actor}', at_ms = {T0}, prev_hash = '{prev}', "
            f"hash = '{digest}' WHERE id = {entry_id}"
        )
        prev = digest
    sql(data_dir, *statements)
    assert verify_chain(SQLiteStore(data_dir.root / "aftercare.db").audit_entries()).ok
    code, out = verify(data_dir, checkpoint, capsys)
    assert code == 1 and "does NOT contain" in out and "rewritten" in out, out


def test_forged_entry_in_place_of_witnessed_ones_detected(
    data_dir: DataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = save_checkpoint(data_dir, capsys)
    sql(data_dir, *DROP_TRIGGERS, "DELETE FROM audit_log WHERE id = 6")
    append(data_dir, 2, actor="mallory")  # forged, chained properly: count 7 > 6
    assert verify_chain(SQLiteStore(data_dir.root / "aftercare.db").audit_entries()).ok
    code, out = verify(data_dir, checkpoint, capsys)
    assert code == 1 and "forged" in out, out


def test_checkpoint_of_another_collector_or_tampered_refused(
    data_dir: DataDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = DataDir(tmp_path / "other")
    initialise(other, T0)
    foreign = save_checkpoint(other, capsys)
    code, out = verify(data_dir, foreign, capsys)
    assert code == 1 and "another audit key" in out
    document = json.loads(save_checkpoint(data_dir, capsys).read_text())
    document["checkpoint"]["count"] = 2
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(document))
    code, out = verify(data_dir, edited, capsys)
    assert code == 1 and "bad signature" in out


def test_agent_status_output_accepted_as_checkpoint(
    data_dir: DataDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads(save_checkpoint(data_dir, capsys).read_text())
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"agent_id": "ag-1", "audit_checkpoint": {"document": document}}))
    code, out = verify(data_dir, status, capsys)
    assert code == 0, out


def test_triggers_refuse_update_and_delete(data_dir: DataDir) -> None:
    for statement in (
        "UPDATE audit_log SET actor = 'mallory' WHERE id = 2",
        "DELETE FROM audit_log",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            sql(data_dir, statement)
    assert len(list(rows(data_dir))) == 6
    append(data_dir, 1)  # appending still works
    assert len(list(rows(data_dir))) == 7


def test_migration_keeps_trigger_bodies_whole() -> None:
    statements = split_statements(
        "CREATE TABLE t (a INT);\n-- note; here\nCREATE TRIGGER x BEFORE DELETE ON t\n"
        "BEGIN\n  SELECT RAISE(ABORT, 'no');\n  SELECT 1;\nEND;\nCREATE INDEX i ON t (a);"
    )
    assert len(statements) == 3
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END")
