"""Versioned schema migrations, shared by the store backends.

Migrations are numbered SQL files shipped as package data:
``collector/store/migrations/<dialect>/NNNN_name.sql``, numbered 1, 2, 3, ... with no
gaps. Each is applied in its own transaction together with its row in
``schema_migrations(version, applied_ms)``. A database whose schema is newer than the
newest file this code ships is refused (an older collector must not write to it).

The runner is backend-neutral: a backend supplies a ``MigrationTarget`` that knows how
to read the applied version and apply one migration atomically. Files are split on
``;`` after removing ``--`` comments, so keep semicolons and ``--`` out of literals;
a ``CREATE TRIGGER`` statement's ``BEGIN ... END`` body stays one statement.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

from collector.errors import MigrationError

__all__ = [
    "VERSION_TABLE_DDL",
    "Migration",
    "MigrationTarget",
    "check_not_newer",
    "load_migrations",
    "migrate",
    "split_statements",
]

VERSION_TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)"
)

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_TRIGGER_START = re.compile(r"CREATE\s+(TEMP\s+|TEMPORARY\s+)?TRIGGER\b", re.IGNORECASE)
_TRIGGER_END = re.compile(r"(^|\s)END$", re.IGNORECASE)


@dataclass(frozen=True)
class Migration:
    """One numbered schema change."""

    version: int
    name: str
    statements: tuple[str, ...]


class MigrationTarget(Protocol):
    """What a backend provides so that ``migrate`` can bring its schema up to date."""

    def applied_version(self) -> int:
        """Create ``schema_migrations`` if missing; return the highest applied version."""
        ...

    def apply(self, migration: Migration, now_ms: int) -> None:
        """In one write transaction: re-read the applied version (another process may
        have migrated meanwhile); if still below ``migration.version``, run its
        statements and insert its ``schema_migrations`` row."""
        ...


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements (``--`` comments removed)."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    statements: list[str] = []
    open_trigger = False  # inside a CREATE TRIGGER body: join until its END
    for part in "\n".join(lines).split(";"):
        stmt = part.strip()
        if open_trigger:
            statements[-1] += ";\n" + stmt
            open_trigger = not _TRIGGER_END.search(stmt)
        elif stmt:
            statements.append(stmt)
            open_trigger = bool(_TRIGGER_START.match(stmt))
    return statements


def load_migrations(dialect: str) -> list[Migration]:
    """The migrations shipped for ``dialect`` (e.g. "sqlite"), in version order."""
    folder = resources.files("collector.store").joinpath("migrations", dialect)
    found: list[Migration] = []
    for item in folder.iterdir():
        match = _FILE_NAME.match(item.name)
        if match:
            statements = tuple(split_statements(item.read_text(encoding="utf-8")))
            found.append(Migration(int(match.group(1)), match.group(2), statements))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise MigrationError(
            f"migrations for {dialect!r} are not numbered 1..N without gaps "
            f"({[m.version for m in found]}); the installation is broken — reinstall aftercare"
        )
    return found


def check_not_newer(applied: int, known: int, where: str) -> None:
    """Refuse a schema newer than this code: writing to it could corrupt it."""
    if applied > known:
        raise MigrationError(
            f"database {where} has schema version {applied} but this aftercare knows only "
            f"up to {known}; it was written by a newer release — upgrade aftercare "
            f"(do not downgrade against an upgraded database; restore a backup instead)"
        )


def migrate(
    target: MigrationTarget, migrations: Sequence[Migration], where: str, now_ms: int
) -> int:
    """Apply every migration above the applied version; return the resulting version."""
    known = migrations[-1].version if migrations else 0
    applied = target.applied_version()
    check_not_newer(applied, known, where)
    for migration in migrations:
        if migration.version > applied:
            target.apply(migration, now_ms)
    return max(applied, known)
