"""export / import: a store's content moves SQLite -> PostgreSQL -> SQLite with nothing
lost (every row of every table, the audit chain intact); corrupt dumps and non-empty
targets are refused and nothing is written."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from collector.audit import verify_chain
from collector.store import SQLiteStore
from collector.store.base import ApproverRecord
from collector.store.dump import DumpError, count_rows, dump_tables, export_store, import_store
from collector.store.postgres import PostgresStore
from tests.collector.test_store_contract import T0, gap, make_agent, sample
from tests.collector.test_store_runs import new_run
from tests.collector.test_store_tickets import event, new_ticket, opened
from tests.pg_cluster import PgCluster

REPO = Path(__file__).resolve().parents[2]


def populate(store: SQLiteStore) -> None:
    """Some of everything: agents, batches with history, a gap, users, tickets with
    timelines (and their audit entries), a binary certificate, a boolean column."""
    for n in range(3):
        store.add_agent(make_agent(f"a{n}", hostname=f"web{n}"))
        for seq in (1, 2):
            values = [sample("load1", seq + n), sample("fs_used", 0.5, mount="/", device="sda")]
            store.store_batch(f"a{n}", seq, T0 + seq * 15_000, T0 + seq * 15_000, values, [])
    store.store_gap("a0", gap(9))
    store.add_user("erin", "engineer", None, "h" * 64, T0)
    store.add_user("alice", "customer", "acme", "i" * 64, T0)
    ticket = store.create_ticket(new_ticket(), opened())
    store.add_ticket_events(ticket.id, [event(T0 + 1, note="looked 中文")])
    store.update_ticket(replace(ticket, waiting_on_customer=True), [event(T0 + 2)])
    store.append_audit("user:erin", "test.action", "x", {"n": 1.5, "s": "ü"}, T0 + 3)
    store.create_run(new_run("run-why", reason="磁盘满了 disk full", ticket_id=ticket.id))
    store.add_approver(
        ApproverRecord(
            customer="acme",
            key_fingerprint="sha256:" + "ab" * 32,
            name="Ann",
            root_fingerprint="sha256:" + "cd" * 32,
            issued_ms=T0,
            expires_ms=T0 + 10**9,
            certificate=bytes(range(256)),
            added_ms=T0,
            added_by="user:erin",
        )
    )


def dump(store: SQLiteStore) -> str:
    out = io.StringIO()
    export_store(store, out)
    return out.getvalue()


def rows_by_table(text: str) -> dict[str, list[str]]:
    """Each table's rows (as {column: value} JSON, sorted): backend-neutral content."""
    tables: dict[str, list[str]] = {}
    columns: list[str] = []
    for line in text.splitlines():
        record = json.loads(line)
        if "table" in record:
            columns = record["columns"]
            tables[record["table"]] = []
        elif "row" in record:
            values = [int(v) if isinstance(v, bool) else v for v in record["row"]]
            row = dict(zip(columns, values, strict=True))
            tables[list(tables)[-1]].append(json.dumps(row, sort_keys=True))
    return {table: sorted(rows) for table, rows in tables.items()}


@pytest.fixture
def source(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "source.db")
    populate(store)
    yield store
    store.close()


def test_sqlite_to_postgresql_to_sqlite_loses_nothing(
    source: SQLiteStore, pg_cluster: PgCluster, tmp_path: Path
) -> None:
    first = dump(source)
    pg = PostgresStore(pg_cluster.new_database())
    try:
        summary = import_store(pg, io.StringIO(first))
        assert summary.counts == count_rows(source) == count_rows(pg)
        assert verify_chain(pg.audit_entries()).ok
        assert pg.audit_entries() == source.audit_entries()
        second = dump(pg)
        # identities moved past the imported ids: new rows get fresh ones
        ticket = pg.create_ticket(new_ticket(dedup_key="new"), opened())
        assert ticket.id > max(t.id for t in source.list_tickets(None, None, None, 100))
        pg.append_audit("user:erin", "after.import", "y", {}, T0 + 9)
        assert verify_chain(pg.audit_entries()).ok
    finally:
        pg.close()
    back = SQLiteStore(tmp_path / "back.db")
    try:
        import_store(back, io.StringIO(second))
        assert count_rows(back) == count_rows(source)
        assert rows_by_table(dump(back)) == rows_by_table(first)
        approvers = back.list_approvers("acme")
        assert approvers[0].certificate == bytes(range(256))
        assert back.latest("a1") == source.latest("a1")
        assert back.get_run("run-why") == source.get_run("run-why")
        assert back.get_run("run-why").reason == "磁盘满了 disk full"  # type: ignore[union-attr]
    finally:
        back.close()
    assert sum(count_rows(source).values()) > 30
    assert all(table in rows_by_table(first) for table in dump_tables())


def test_a_non_empty_target_is_refused_unless_told(source: SQLiteStore, tmp_path: Path) -> None:
    text = dump(source)
    target = SQLiteStore(tmp_path / "target.db")
    try:
        target.add_user("bob", "engineer", None, "j" * 64, T0)
        with pytest.raises(DumpError, match=r"not empty.*--into-non-empty"):
            import_store(target, io.StringIO(text))
        assert target.list_users() and len(target.list_users()) == 1
        import_store(target, io.StringIO(text), into_non_empty=True)
        assert len(target.list_users()) == 3
    finally:
        target.close()


def corruptions(text: str) -> dict[str, tuple[str, str]]:
    lines = text.splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if line.startswith('{"row"'))
    end = json.loads(lines[-1])
    end["counts"]["agents"] += 1
    return {
        "truncated": ("".join(lines[:-1]), "no end line"),
        "cut mid-line": ("".join(lines[:-2]) + lines[-2][:10], "not JSON"),
        "bad json": ("".join([*lines[:row], "{row: [1\n", *lines[row + 1 :]]), "not JSON"),
        "short row": ("".join([*lines[:row], '{"row": [1]}\n', *lines[row + 1 :]]), "values for"),
        "edited counts": ("".join([*lines[:-1], json.dumps(end) + "\n"]), "end line counts"),
        "not a dump": ('{"hello": 1}\n', "not an aftercare store dump"),
        "empty": ("", "empty"),
        "other schema": (
            re.sub(r'"schema_version":\d+', '"schema_version":99', text, count=1),
            "99",
        ),
        "unknown table": (text.replace('"table":"gaps"', '"table":"gapz"', 1), "unknown table"),
        "data after end": (text + lines[row], "after the end"),
    }


@pytest.mark.parametrize(
    "case",
    [
        *("truncated", "cut mid-line", "bad json", "short row", "edited counts"),
        *("not a dump", "empty", "other schema", "unknown table", "data after end"),
    ],
)
def test_a_corrupt_dump_is_refused_and_nothing_is_written(
    source: SQLiteStore, tmp_path: Path, case: str
) -> None:
    text, message = corruptions(dump(source))[case]
    target = SQLiteStore(tmp_path / "target.db")
    try:
        with pytest.raises(DumpError, match=message):
            import_store(target, io.StringIO(text))
        assert set(count_rows(target).values()) == {0}
    finally:
        target.close()


def collector_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_the_commands_move_a_store_and_check_it(source: SQLiteStore, tmp_path: Path) -> None:
    source.close()
    exported = collector_cli("export", "--store", f"sqlite:///{tmp_path}/source.db")
    assert exported.returncode == 0, exported.stderr
    assert "exported" in exported.stderr and "schema version" in exported.stderr
    url = f"sqlite:///{tmp_path}/copy.db"
    imported = collector_cli("import", "--store", url, "--json", stdin=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout)
    assert report["ok"] and report["audit_chain"]["ok"] and not report["count_mismatches"]
    assert report["rows"]["agents"] == 3
    again = collector_cli("import", "--store", url, stdin=exported.stdout)
    assert again.returncode == 1 and "not empty" in again.stderr
    fresh = f"sqlite:///{tmp_path}/fresh.db"
    bad = collector_cli("import", "--store", fresh, stdin=exported.stdout[:-40])
    assert bad.returncode == 1 and "corrupt" in bad.stderr
    for command in ("export", "import"):
        assert "--store" in collector_cli(command, "--help").stdout
