"""PostgreSQL store backend: the same ``Store`` methods as SQLite, on a PostgreSQL database.

One implementation of every query: ``PostgresStore`` inherits ``SQLiteStore``'s methods
and the shared row modules, and hands them a ``PgConnection`` — the small slice of
``sqlite3.Connection`` they use (``execute``, ``executemany``, cursors with
``fetchone``/``fetchall``/``rowcount``/``lastrowid``) over a psycopg 3 connection. The
adapter bridges the few dialect differences explicitly:

- placeholders: ``?`` becomes ``%s`` (and a literal ``%`` becomes ``%%``);
- ids: an ``INSERT`` into a table with an identity column gets ``RETURNING <column>``,
  which fills ``lastrowid`` (the identity columns are read from the catalogue);
- the fragments in ``DIALECT_REWRITES`` (SQLite's ``json_each`` and scalar ``MIN``/``MAX``);
- errors: a constraint violation is raised as ``sqlite3.IntegrityError``, which the
  shared methods already turn into ``Conflict`` and friends; any other database error
  becomes ``StoreError`` at the transaction boundary.

Transactions: write transactions take one transaction-level advisory lock first, so
writers are serialised across processes and replicas exactly as SQLite's ``BEGIN
IMMEDIATE`` serialises them (the audit chain and the ticket dedup rely on it). Reads run
in ``REPEATABLE READ``: one consistent snapshot, like a SQLite read transaction.

The metric history's fold is the one exception: it runs on a second connection under a
lock of its own (``FOLD_LOCK_KEY``), beside the writer, because at 10,000 hosts every
host's 5-minute bucket ends at once and the fold of those staged rows held the writer
(and every ingest ack behind it) for seconds. It only moves staged rows into
``history_points``, which ingest never touches: ingest adds staged rows and series, the
fold reads and deletes committed staged rows and upserts points. The roll-up, which
also writes points and drops series, takes both locks (write lock first, so no two
transactions wait for each other's). Folds of two replicas take turns.

Migrations: ``collector/store/migrations/postgresql/NNNN_name.sql``, the twin of each
SQLite migration (docs/store-postgresql.md says how to write one); each file is sent as
one script, so PL/pgSQL bodies keep their semicolons.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, cast

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from collector.errors import ConfigError, StoreError
from collector.history.policy import MAX_SERIES_PER_HOST
from collector.store.history_rows import fold_history
from collector.store.migrate import VERSION_TABLE_DDL, Migration, load_migrations, migrate
from collector.store.sqlite import SQLiteStore
from common.clock import wall_ms

__all__ = ["DIALECT_REWRITES", "PgConnection", "PostgresStore", "redact_url"]

# The key of the advisory lock every write transaction holds ("aftercar" in ASCII).
WRITE_LOCK_KEY = 0x6166746572636172
# The key of the lock the history's fold and roll-up hold ("histfold").
FOLD_LOCK_KEY = 0x68697374666F6C64

# SQLite fragment -> PostgreSQL fragment, applied to every statement before the
# placeholders are translated. tests/collector/test_store_postgres_dialect.py checks that
# each SQLite fragment still occurs in the shared SQL, so a rewrite cannot silently rot.
DIALECT_REWRITES: tuple[tuple[str, str], ...] = (
    (
        "SELECT value FROM json_each(?)",
        "SELECT value::bigint FROM json_array_elements_text(?::json)",
    ),
    ("MIN(min_value, excluded.min_value)", "LEAST(history_points.min_value, excluded.min_value)"),
    (
        "MAX(max_value, excluded.max_value)",
        "GREATEST(history_points.max_value, excluded.max_value)",
    ),
    (
        "sample_count = sample_count + excluded.sample_count",
        "sample_count = history_points.sample_count + excluded.sample_count",
    ),
    (
        "sum_value = sum_value + excluded.sum_value",
        "sum_value = history_points.sum_value + excluded.sum_value",
    ),
)

_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)
_INSERT_VALUES = re.compile(  # INSERT INTO t (a, b) VALUES (?, ?): placeholders only
    r"^\s*INSERT\s+INTO\s+(\w+)\s*\(([\w\s,]+)\)\s*VALUES\s*\([?,\s]*\)", re.IGNORECASE
)
_UPDATE_BY_KEY = re.compile(  # UPDATE t SET a = ?, b = ? WHERE k = ? AND l = ?: only that
    r"^\s*UPDATE\s+(\w+)\s+SET\s+((?:\w+\s*=\s*\?\s*,\s*)*\w+\s*=\s*\?)\s+"
    r"WHERE\s+((?:\w+\s*=\s*\?\s+AND\s+)*\w+\s*=\s*\?)\s*$",
    re.IGNORECASE,
)
_COLUMN_TYPES = (
    "SELECT column_name, data_type FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = %s"
)
_IDENTITY_COLUMNS = (
    "SELECT table_name, column_name FROM information_schema.columns "
    "WHERE is_identity = 'YES' AND table_schema = current_schema()"
)


def translate(sql: str) -> str:
    """The PostgreSQL text of a statement written for SQLite with ``?`` placeholders."""
    for sqlite_text, pg_text in DIALECT_REWRITES:
        sql = sql.replace(sqlite_text, pg_text)
    return sql.replace("%", "%%").replace("?", "%s")


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class PgCursor:
    """The result of one statement, shaped like ``sqlite3.Cursor``."""

    def __init__(self, cursor: psycopg.Cursor[Any], lastrowid: int | None) -> None:
        self._cursor = cursor
        self.rowcount = cursor.rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    """The part of ``sqlite3.Connection`` the shared store code uses, over psycopg."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn
        self.identity: dict[str, str] = {}  # table -> its identity column
        self.column_types: dict[str, dict[str, str]] = {}  # table -> column -> type

    def load_identity_columns(self) -> None:
        """Read which tables have an identity column (after migrating), into the
        ``identity`` mapping in place (connections of one store share it)."""
        rows = self.raw.execute(_IDENTITY_COLUMNS).fetchall()
        self.identity.clear()
        self.identity.update({str(table): str(column) for table, column in rows})

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PgCursor:
        """Run one statement (``?`` placeholders); ``lastrowid`` is set for identity inserts."""
        returning = self._returning(sql)
        text = sql if params is None else translate(sql)
        if returning:
            text += f" RETURNING {returning}"
        with _integrity_as_sqlite():
            cursor = self.raw.execute(text, params, prepare=False)
        lastrowid = None
        if returning:
            row = cursor.fetchone()
            lastrowid = int(row[0]) if row else None
        return PgCursor(cursor, lastrowid)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> PgCursor:
        """Run ``sql`` for every row, as one statement over arrays where it can: one
        round trip and one short, cached query text instead of one per row (rows were
        80% of the PostgreSQL writer's time per batch).

        - ``INSERT INTO t (cols) VALUES (?, ...) ...`` becomes ``INSERT INTO t (cols)
          SELECT * FROM unnest(?::type[], ...) ...``;
        - ``UPDATE t SET a = ?, ... WHERE k = ? AND ...`` becomes ``UPDATE t SET a = v.a,
          ... FROM unnest(...) AS v(a, ..., k, ...) WHERE t.k = v.k AND ...``.

        Contract of the shared code: rows of one call never hit the same ``ON CONFLICT
        ... DO UPDATE`` or ``WHERE`` key (PostgreSQL updates a row once per statement).
        Other statements run row by row (psycopg pipelines them)."""
        if not rows:
            return PgCursor(self.raw.cursor(), None)
        insert = _INSERT_VALUES.match(sql)
        if insert is not None:
            table, columns = insert.group(1), _names(insert.group(2), ",")
            text = (
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"SELECT * FROM unnest({self._arrays(table, columns)}) "
                + translate(sql[insert.end() :])  # the ON CONFLICT clause, if any
            )
            return self._execute_columns(text, rows)
        update = _UPDATE_BY_KEY.match(sql)
        if update is not None:
            table = update.group(1)
            assigned, keys = _names(update.group(2), ","), _names(update.group(3), "AND")
            text = (
                f"UPDATE {table} SET {', '.join(f'{c} = v.{c}' for c in assigned)} "
                f"FROM unnest({self._arrays(table, assigned + keys)}) "
                f"AS v({', '.join(assigned + keys)}) "
                f"WHERE {' AND '.join(f'{table}.{k} = v.{k}' for k in keys)}"
            )
            return self._execute_columns(text, rows)
        cursor = self.raw.cursor()
        with _integrity_as_sqlite():
            cursor.executemany(translate(sql), rows)
        return PgCursor(cursor, None)

    def _arrays(self, table: str, columns: Sequence[str]) -> str:
        """``%b::type[]`` per column (binary: fast)."""
        types = self._column_types(table)
        return ", ".join(f"%b::{types[c.lower()]}[]" for c in columns)

    def _execute_columns(self, text: str, rows: Sequence[Sequence[Any]]) -> PgCursor:
        """Run ``text`` with one array parameter per column of ``rows``."""
        params = [list(column) for column in zip(*rows, strict=True)]
        with _integrity_as_sqlite():
            cursor = self.raw.execute(text, params)
        return PgCursor(cursor, None)

    def _column_types(self, table: str) -> dict[str, str]:
        """Column -> SQL type name of ``table`` (read once per connection)."""
        if table not in self.column_types:
            rows = self.raw.execute(_COLUMN_TYPES, (table.lower(),)).fetchall()
            self.column_types[table] = {str(name): str(kind) for name, kind in rows}
        return self.column_types[table]

    def _returning(self, sql: str) -> str | None:
        match = _INSERT_INTO.match(sql)
        if not match or "RETURNING" in sql.upper():
            return None
        return self.identity.get(match.group(1).lower())


def _names(text: str, separator: str) -> list[str]:
    """The column names of ``a = ?, b = ?`` / ``a = ? AND b = ?`` or ``a, b``."""
    parts = re.split(rf"\s+{separator}\s+" if separator.isalpha() else separator, text)
    return [part.split("=")[0].strip() for part in parts]


@contextmanager
def _integrity_as_sqlite() -> Iterator[None]:
    try:
        yield
    except pg_errors.IntegrityError as exc:
        raise sqlite3.IntegrityError(str(exc)) from exc


class PostgresStore(SQLiteStore):
    """``Store`` on a PostgreSQL database named by a ``postgresql://`` URL; opening it
    migrates the schema. Raises StoreError if the server cannot be reached,
    MigrationError if the schema is newer than this code."""

    fold_beside_writer = True  # the fold has its own connection (see the module docstring)

    def __init__(
        self,
        url: str,
        *,
        history_max_series: int = MAX_SERIES_PER_HOST,
        connect_timeout_s: int = 10,
    ) -> None:
        self._url = url
        self._where = redact_url(url)
        self._connect_timeout_s = connect_timeout_s
        self._init_state(history_max_series)
        self._identity: dict[str, str] = {}  # table -> identity column, read once migrated
        self._writer = _Link(self._connect, self._where, self._connect())
        self._folder = _Link(self._connect, self._where)  # connected on the first fold
        try:
            migrate(_PgMigrator(self._write), load_migrations("postgresql"), self._where, wall_ms())
            with self._write() as db:
                cast(PgConnection, db).load_identity_columns()  # into self._identity
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        """The database URL, password redacted."""
        return self._where

    def fold_history(
        self, now_ms: int, from_agent: str = "", max_rows: int = 1000
    ) -> tuple[int, str | None]:
        with self._pg_transaction(self._folder, "BEGIN", (FOLD_LOCK_KEY,)) as db:
            return fold_history(db, now_ms, from_agent, max_rows)

    def _connect(self) -> PgConnection:
        try:
            conn = psycopg.connect(
                self._url, autocommit=True, connect_timeout=self._connect_timeout_s
            )
        except psycopg.ProgrammingError as exc:  # the URL itself is malformed
            raise ConfigError(
                f"store URL {self._where!r} is not a valid PostgreSQL URL ({exc}); "
                f"use postgresql://USER@HOST[:PORT]/DB"
            ) from exc
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {self._where}: {exc}; check that the "
                f"server runs, the database exists and this user may log in"
            ) from exc
        linked = PgConnection(conn)
        linked.identity = self._identity
        return linked

    # -- transactions -----------------------------------------------------------------

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._pg_transaction(self._writer, "BEGIN", (WRITE_LOCK_KEY,))

    def _history_write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._pg_transaction(self._writer, "BEGIN", (WRITE_LOCK_KEY, FOLD_LOCK_KEY))

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._pg_transaction(self._writer, "BEGIN ISOLATION LEVEL REPEATABLE READ", ())

    @contextmanager
    def _pg_transaction(
        self, link: _Link, begin: str, lock_keys: tuple[int, ...]
    ) -> Iterator[sqlite3.Connection]:
        """Run the body in one transaction on ``link``'s connection, holding the
        advisory locks ``lock_keys`` (in that order); commit, or roll back on any
        exception."""
        with link.lock:
            conn = link.live()
            try:
                conn.raw.execute(begin)
                for key in lock_keys:
                    conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
                try:
                    # The shared methods are typed against sqlite3; PgConnection is the
                    # slice of it they use (see the module docstring).
                    yield cast(sqlite3.Connection, conn)
                    conn.raw.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction and not conn.raw.broken:
                        conn.raw.execute("ROLLBACK")
                    raise
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL error on {self._where}: {exc}") from exc

    def close(self) -> None:
        for link in (self._writer, self._folder):
            link.close()


class _Link:
    """One connection and the lock its one transaction at a time holds; connected on
    first use and again after the server dropped it."""

    def __init__(
        self,
        connect: Callable[[], PgConnection],
        where: str,
        conn: PgConnection | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self._connect = connect
        self._where = where
        self._conn = conn
        self._closed = False

    def live(self) -> PgConnection:
        """The connection (call holding ``lock``). StoreError once closed."""
        if self._closed:
            raise StoreError(f"store {self._where} is closed; open it again")
        if self._conn is None or self._conn.raw.broken:  # e.g. the server restarted
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        with self.lock:
            conn, self._conn, self._closed = self._conn, None, True
        if conn is not None:
            conn.raw.close()


class _PgMigrator:
    """``MigrationTarget`` over the store's write transactions; one script per file."""

    def __init__(self, write: Any) -> None:
        self._write = write

    def applied_version(self) -> int:
        with self._write() as db:
            db.execute(VERSION_TABLE_DDL)
            return _applied_version(db)

    def apply(self, migration: Migration, now_ms: int) -> None:
        with self._write() as db:
            if _applied_version(db) >= migration.version:
                return  # another process got there first
            db.execute(";\n".join(migration.statements))
            db.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)",
                (migration.version, now_ms),
            )


def _applied_version(db: Any) -> int:
    row = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0]) if row and row[0] is not None else 0
