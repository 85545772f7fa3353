"""The collector's durable state: one ``Store`` interface, one backend per database.

``open_store(data_dir)`` is the default (SQLite file ``data_dir/aftercare.db``);
``open_store_url(url)`` picks the backend from a URL: ``sqlite:///PATH`` or
``postgresql://USER@HOST/DB`` (docs/store-postgresql.md). Both pass one contract suite.

    base.py              the ``Store`` protocol and the store's own records; the domain
                         records come from their packages (tickets/, runs/, sessions/, ...)
    *_base.py            protocol parts of one aggregate (inspections, portal)
    sqlite.py            the SQLite backend; *_sqlite.py its mixins for one aggregate
    postgres.py          the PostgreSQL backend (same SQL through a placeholder adapter)
    *_rows.py            backend-neutral row codecs of one aggregate (record <-> row),
                         row_checks.py the checks they share
    migrate.py           versioned migrations (migrations/sqlite, migrations/postgresql)
    writer.py            ``StoreThread``: every store call in order on one thread, off the loop
"""

from __future__ import annotations

from pathlib import Path

from collector.errors import ConfigError
from collector.store.base import (
    AgentRecord,
    AuditEntry,
    BatchOutcome,
    GapRecord,
    HelloRecord,
    IncomingBatch,
    LatestBatch,
    Role,
    SampleRow,
    Store,
    StoredFailure,
    StoredSample,
    User,
)
from collector.store.postgres import PostgresStore, redact_url
from collector.store.sqlite import SQLiteStore

__all__ = [
    "DB_FILE_NAME",
    "AgentRecord",
    "AuditEntry",
    "BatchOutcome",
    "GapRecord",
    "HelloRecord",
    "IncomingBatch",
    "LatestBatch",
    "PostgresStore",
    "Role",
    "SQLiteStore",
    "SampleRow",
    "Store",
    "StoredFailure",
    "StoredSample",
    "User",
    "open_store",
    "open_store_url",
]

DB_FILE_NAME = "aftercare.db"


def open_store(data_dir: Path) -> Store:
    """Open (creating if needed) the SQLite store in ``data_dir``."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return SQLiteStore(data_dir / DB_FILE_NAME)


def open_store_url(url: str) -> Store:
    """Open the store a URL names.

    ``sqlite:///PATH`` — the SQLite file at PATH (``sqlite:///var/a.db`` is relative,
    ``sqlite:////var/lib/aftercare/aftercare.db`` absolute: the SQLAlchemy convention).
    ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`` (or ``postgres://``) — a PostgreSQL
    database (libpq URL: ``?host=/run/postgresql`` reaches a unix socket, a password
    may come from ``~/.pgpass`` or ``PGPASSWORD``).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"store URL {url!r} has no scheme; use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    if scheme == "sqlite":
        return SQLiteStore(_sqlite_path(url, rest))
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    raise ConfigError(
        f"store URL {redact_url(url)!r}: unknown scheme {scheme!r}; "
        f"use sqlite:///PATH or postgresql://USER@HOST/DB"
    )


def _sqlite_path(url: str, rest: str) -> Path:
    if not rest.startswith("/") or rest == "/":
        raise ConfigError(f"store URL {url!r}: expected sqlite:///PATH (three slashes, no host)")
    path = Path(rest[1:])
    if not path.parent.is_dir():
        raise ConfigError(f"store URL {url!r}: directory {path.parent} does not exist; create it")
    return path
