"""Export a store to JSON lines and import it into another (SQLite -> PostgreSQL and back).

Format (docs/store-postgresql.md, "Moving a deployment"), one JSON object per line:

    {"format": "aftercare-store-dump", "version": 1, "schema_version": 12, "source": "sqlite"}
    {"table": "agents", "columns": ["agent_id", ...]}
    {"row": ["ag-1", ...]}                      (values in the table line's column order)
    ...
    {"end": true, "counts": {"agents": 3, ...}}

Values are JSON numbers, strings and null; booleans are true/false; binary values are
``{"base64": "..."}``. Tables come in migration order (parents before children); the
schema version table is not dumped: the header's ``schema_version`` must equal the
target's, so both ends run the same aftercare version.

Import runs in one write transaction: a corrupt or truncated dump (bad JSON, unknown
table or column, a row of the wrong width, a missing end line, counts that disagree)
raises ``DumpError`` naming the line, and nothing is written. A target holding any row
is refused unless ``into_non_empty`` is set.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from collector.errors import CollectorError
from collector.store.migrate import load_migrations
from collector.store.postgres import PostgresStore
from collector.store.sqlite import SQLiteStore

FORMAT = "aftercare-store-dump"
VERSION = 1
CHUNK_ROWS = 1000  # rows per executemany on import

_CREATE_TABLE = re.compile(r"^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I | re.M)
_DROP_TABLE = re.compile(r"^\s*DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(\w+)", re.I | re.M)


class DumpError(CollectorError):
    """A dump that cannot be imported (corrupt, truncated, wrong version) or a target
    that must not receive it; the message says which line and what to do."""


@dataclass(frozen=True)
class DumpSummary:
    """What an export wrote or an import loaded: rows per table, schema version."""

    schema_version: int
    counts: Mapping[str, int]


def dump_tables() -> list[str]:
    """Every table the migrations create and do not drop later, in creation order
    (parents first)."""
    names: list[str] = []
    for migration in load_migrations("sqlite"):
        for statement in migration.statements:
            names += [n for n in _CREATE_TABLE.findall(statement) if n not in names]
            names = [n for n in names if n not in _DROP_TABLE.findall(statement)]
    return names


def export_store(store: SQLiteStore, out: TextIO) -> DumpSummary:
    """Write every table of ``store`` to ``out``, from one consistent snapshot."""
    schema_version = load_migrations(_dialect(store))[-1].version
    header = {"format": FORMAT, "version": VERSION, "schema_version": schema_version}
    _write_line(out, {**header, "source": _dialect(store)})
    counts: dict[str, int] = {}
    with store._read() as db:
        for table in dump_tables():
            columns = list(_column_types(store, db, table))
            _write_line(out, {"table": table, "columns": columns})
            counts[table] = 0
            for row in db.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1"):
                _write_line(out, {"row": [_to_json(value) for value in row]})
                counts[table] += 1
    _write_line(out, {"end": True, "counts": counts})
    return DumpSummary(schema_version, counts)


def import_store(store: SQLiteStore, lines: TextIO, *, into_non_empty: bool = False) -> DumpSummary:
    """Load a dump into ``store`` in one transaction; DumpError (and nothing written) if
    the dump is corrupt or the store is not empty (unless ``into_non_empty``)."""
    schema_version = load_migrations(_dialect(store))[-1].version
    records = _records(lines)
    header = _header(next(records, None), schema_version)
    counts: dict[str, int] = {}
    with store._write() as db:
        if not into_non_empty:
            _refuse_non_empty(store, db)
        ended = False
        table, insert = "", ""
        columns: list[str] = []
        pending: list[list[Any]] = []
        types: Mapping[str, str] = {}
        for number, record in records:
            if ended:
                raise DumpError(f"dump line {number}: data after the end line")
            if "row" in record:
                if not table:
                    raise DumpError(f"dump line {number}: a row before any table line")
                pending.append(_row(record["row"], columns, types, number))
                counts[table] += 1
                if len(pending) >= CHUNK_ROWS:
                    db.executemany(insert, pending)
                    pending = []
            elif "table" in record:
                if pending:
                    db.executemany(insert, pending)
                    pending = []
                table, columns = _table_line(record, number, counts)
                types = _column_types(store, db, table)
                unknown = [c for c in columns if c not in types]
                if unknown:
                    raise DumpError(
                        f"dump line {number}: table {table} has no column {unknown[0]!r} in "
                        "this store; export and import with the same aftercare version"
                    )
                marks = ", ".join("?" * len(columns))
                insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
                counts[table] = 0
            elif record.get("end") is True:
                if pending:
                    db.executemany(insert, pending)
                    pending = []
                _check_counts(record.get("counts"), counts, number)
                ended = True
            else:
                raise DumpError(f"dump line {number}: neither a table, a row nor the end")
        if not ended:
            raise DumpError(
                "the dump has no end line: it is truncated (the export did not finish?); "
                "nothing was imported"
            )
        if isinstance(store, PostgresStore):
            _advance_identities(db)
    return DumpSummary(header, counts)


def count_rows(store: SQLiteStore) -> dict[str, int]:
    """Rows per dumped table (to compare a source and a target)."""
    with store._read() as db:
        return {
            table: int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for table in dump_tables()
        }


# -- reading the dump --------------------------------------------------------------------


def _records(lines: TextIO) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DumpError(f"dump line {number} is not JSON ({exc}); the dump is corrupt") from exc
        if not isinstance(record, dict):
            raise DumpError(f"dump line {number} is not a JSON object; the dump is corrupt")
        yield number, record


def _header(first: tuple[int, dict[str, Any]] | None, schema_version: int) -> int:
    if first is None:
        raise DumpError("the dump is empty; make one with `aftercare-collector export`")
    _, header = first
    if header.get("format") != FORMAT:
        raise DumpError(
            "the first line is not an aftercare store dump header; "
            "make the dump with `aftercare-collector export`"
        )
    if header.get("version") != VERSION:
        raise DumpError(
            f"dump format version {header.get('version')!r}; this aftercare reads {VERSION}"
        )
    if header.get("schema_version") != schema_version:
        raise DumpError(
            f"the dump is at schema version {header.get('schema_version')!r}, this store at "
            f"{schema_version}: export and import with the same aftercare version"
        )
    return schema_version


def _table_line(
    record: Mapping[str, Any], number: int, counts: Mapping[str, int]
) -> tuple[str, list[str]]:
    table, columns = record.get("table"), record.get("columns")
    if table not in dump_tables():
        raise DumpError(f"dump line {number}: unknown table {table!r}")
    if table in counts:
        raise DumpError(f"dump line {number}: table {table} appears twice")
    if (
        not isinstance(columns, list)
        or not columns
        or not all(isinstance(c, str) and c.isidentifier() for c in columns)
    ):
        raise DumpError(f"dump line {number}: table {table} has no valid column list")
    return str(table), [str(c) for c in columns]


def _row(values: Any, columns: Sequence[str], types: Mapping[str, str], number: int) -> list[Any]:
    if not isinstance(values, list) or len(values) != len(columns):
        raise DumpError(
            f"dump line {number}: a row of {len(values) if isinstance(values, list) else 'no'} "
            f"values for {len(columns)} columns; the dump is corrupt"
        )
    return [_from_json(v, types[c], number) for v, c in zip(values, columns, strict=True)]


def _check_counts(declared: Any, loaded: Mapping[str, int], number: int) -> None:
    if not isinstance(declared, dict) or dict(declared) != dict(loaded):
        raise DumpError(
            f"dump line {number}: the end line counts {declared!r} rows, the dump holds "
            f"{dict(loaded)!r}; the dump is corrupt or was edited"
        )


# -- values ------------------------------------------------------------------------------


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _from_json(value: Any, column_type: str, number: int) -> Any:
    if isinstance(value, dict):
        encoded = value.get("base64")
        if not isinstance(encoded, str):
            raise DumpError(f"dump line {number}: an object value that is not base64 data")
        try:
            return base64.b64decode(encoded, validate=True)
        except ValueError as exc:
            raise DumpError(f"dump line {number}: bad base64 data ({exc})") from exc
    if value is not None and column_type == "boolean":
        return bool(value)
    if isinstance(value, list):
        raise DumpError(f"dump line {number}: a list is not a column value")
    return value


# -- the store's tables ------------------------------------------------------------------


def _dialect(store: SQLiteStore) -> str:
    return "postgresql" if isinstance(store, PostgresStore) else "sqlite"


def _column_types(store: SQLiteStore, db: Any, table: str) -> dict[str, str]:
    """Column name -> lower-case type name, in table order."""
    if isinstance(store, PostgresStore):
        rows = db.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    else:
        rows = db.execute("SELECT name, type FROM pragma_table_info(?)", (table,)).fetchall()
    return {str(name): str(kind).lower() for name, kind in rows}


def _refuse_non_empty(store: SQLiteStore, db: Any) -> None:
    for table in dump_tables():
        if db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
            raise DumpError(
                f"the target store is not empty (table {table} has rows); import into a "
                "fresh store, or pass --into-non-empty to add the dump's rows to it"
            )


def _advance_identities(db: Any) -> None:
    """After explicit ids were inserted, move each identity sequence past them."""
    for table, column in db.identity.items():
        db.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
            f"COALESCE(MAX({column}), 1), MAX({column}) IS NOT NULL) FROM {table}"
        )


def _write_line(out: TextIO, record: Mapping[str, Any]) -> None:
    out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
