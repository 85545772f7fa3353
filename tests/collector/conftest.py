"""Store fixtures: the contract suite runs once per store backend.

Each backend is a ``StoreBackend``: it opens Store objects on one database (each open
is a separate connection, standing in for a separate process) and can reach the
database behind the store's back (tampering, faking a newer schema). ``PostgresBackend``
gives each test a fresh database in the session's throwaway cluster (tests/pg_cluster.py)
and skips where no PostgreSQL is installed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from collector.store import PostgresStore, SQLiteStore, Store
from collector.store.postgres import translate

BACKENDS = ["sqlite", "postgres"]


class StoreBackend(Protocol):
    dialect: str

    def open(self) -> Store:
        """A new Store object (own connection) on this backend's database."""
        ...

    def execute_raw(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement directly on the database, committed (``?`` placeholders)."""
        ...

    def query_raw(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one query directly on the database."""
        ...

    def close_all(self) -> None:
        """Close every Store this backend opened."""
        ...


class SQLiteBackend:
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._opened: list[Store] = []

    def open(self) -> Store:
        store = SQLiteStore(self.path)
        self._opened.append(store)
        return store

    def execute_raw(self, sql: str, params: Sequence[Any] = ()) -> None:
        with closing(sqlite3.connect(self.path)) as conn, conn:
            conn.execute(sql, tuple(params))

    def query_raw(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.path)) as conn:
            return list(conn.execute(sql, tuple(params)).fetchall())

    def close_all(self) -> None:
        for store in self._opened:
            store.close()


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self._opened: list[Store] = []

    def open(self) -> Store:
        store = PostgresStore(self.url)
        self._opened.append(store)
        return store

    def execute_raw(self, sql: str, params: Sequence[Any] = ()) -> None:
        with psycopg.connect(self.url) as conn:
            conn.execute(translate(sql), tuple(params))

    def query_raw(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return list(conn.execute(translate(sql), tuple(params)).fetchall())

    def close_all(self) -> None:
        for store in self._opened:
            store.close()


@pytest.fixture(params=BACKENDS)
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    backend: StoreBackend
    if request.param == "sqlite":
        backend = SQLiteBackend(tmp_path / "aftercare.db")
    elif request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        backend = PostgresBackend(cluster.new_database())
    else:  # pragma: no cover - a backend listed without a factory
        raise AssertionError(f"no factory for store backend {request.param!r}")
    yield backend
    backend.close_all()


@pytest.fixture
def store(store_backend: StoreBackend) -> Store:
    """A fresh, migrated store; closed after the test."""
    return store_backend.open()
