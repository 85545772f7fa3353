"""What only the PostgreSQL backend has: migration twins, the dialect bridge, the
cross-process write lock, the append-only audit log in PL/pgSQL, connection errors,
``migrate --store`` and binding a data directory to a store.

The shared behaviour is in the contract suites (test_store_*.py), parametrised over both
backends by conftest.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from importlib import resources
from pathlib import Path

import psycopg
import pytest

from collector.audit import verify_chain
from collector.datadir import DataDir, initialise
from collector.errors import ConfigError, MigrationError, StoreError
from collector.store import PostgresStore, open_store_url
from collector.store.migrate import load_migrations
from collector.store.postgres import DIALECT_REWRITES, redact_url, translate
from tests.pg_cluster import NO_POSTGRESQL, PgCluster, find_bin_dir

STORE_SOURCES = Path(__file__).resolve().parents[2] / "collector" / "store"


def test_every_sqlite_migration_has_a_postgresql_twin() -> None:
    sqlite = [(m.version, m.name) for m in load_migrations("sqlite")]
    postgresql = [(m.version, m.name) for m in load_migrations("postgresql")]
    missing = sorted(set(sqlite) - set(postgresql))
    assert not missing, (
        f"SQLite migrations without a PostgreSQL twin: {missing}; write "
        f"collector/store/migrations/postgresql/NNNN_name.sql (docs/store-postgresql.md)"
    )
    assert postgresql == sqlite


def test_migration_files_ship_in_the_package() -> None:
    folder = resources.files("collector.store").joinpath("migrations", "postgresql")
    assert any(item.name == "0001_initial.sql" for item in folder.iterdir())


def test_each_dialect_rewrite_still_matches_the_shared_sql() -> None:
    source = "".join(path.read_text() for path in STORE_SOURCES.glob("*.py"))
    source = source.replace('"\n    "', "")  # join implicitly concatenated literals
    stale = [sqlite for sqlite, _ in DIALECT_REWRITES if sqlite not in source]
    assert not stale, f"rewrites whose SQLite text no longer occurs in collector/store: {stale}"


def test_translate_placeholders_and_percent() -> None:
    assert translate("SELECT 1 WHERE a LIKE '5%' AND b = ?") == (
        "SELECT 1 WHERE a LIKE '5%%' AND b = %s"
    )


def test_redact_url_hides_the_password() -> None:
    assert redact_url("postgresql://u:s3cret@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL") as caught:
        PostgresStore("postgresql://u:s3cret@127.0.0.1:1/db", connect_timeout_s=2)
    assert "s3cret" not in str(caught.value)


def test_audit_log_rows_cannot_be_changed_or_deleted(pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database()
    store = PostgresStore(url)
    try:
        store.append_audit("admin", "user.added", "alice", {}, 1000)
    finally:
        store.close()
    refused = pytest.raises(psycopg.errors.RaiseException, match="append-only")
    # an operator's slip, or an attacker with SQL access
    with psycopg.connect(url) as conn, refused:
        conn.execute("UPDATE audit_log SET actor = 'mallory'")
    with psycopg.connect(url) as conn, refused:
        conn.execute("DELETE FROM audit_log")
    store = PostgresStore(url)
    try:
        assert [e.actor for e in store.audit_entries()] == ["admin"]
    finally:
        store.close()


def test_writers_in_two_processes_keep_one_audit_chain(pg_cluster: PgCluster) -> None:
    """Two stores (two connections, as two replicas or a CLI next to serve) appending
    at once: the write lock keeps the hash chain one unbroken chain."""
    url = pg_cluster.new_database()
    stores = [PostgresStore(url), PostgresStore(url)]
    errors: list[BaseException] = []

    def append(store: PostgresStore, who: str) -> None:
        try:
            for i in range(40):
                store.append_audit(who, "test.step", str(i), {}, 1000 + i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(s, f"w{n}")) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        entries = stores[0].audit_entries()
        assert len(entries) == 80
        assert verify_chain(entries).ok
    finally:
        for store in stores:
            store.close()


def test_newer_schema_is_refused(pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database()
    PostgresStore(url).close()
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO schema_migrations (version, applied_ms) VALUES (999, 0)")
    with pytest.raises(MigrationError, match="newer release"):
        PostgresStore(url)


def test_store_survives_a_server_side_disconnect(pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database()
    store = PostgresStore(url)
    try:
        store.append_audit("admin", "a", "t", {}, 1)
        database = url.rsplit("/", 1)[1]
        with psycopg.connect(pg_cluster.url(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
        with pytest.raises(StoreError):  # the call in flight fails clearly...
            store.append_audit("admin", "b", "t", {}, 2)
        store.append_audit("admin", "c", "t", {}, 3)  # ...and the next reconnects
        assert [e.action for e in store.audit_entries()] == ["a", "c"]
    finally:
        store.close()


def test_migrate_command(pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database()
    result = subprocess.run(
        [sys.executable, "-m", "collector.cli", "migrate", "--store", url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["schema_version"] == load_migrations("postgresql")[-1].version
    with psycopg.connect(url) as conn:
        (applied,) = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone() or (0,)
    assert applied == out["schema_version"]


def test_migrate_command_bad_url_says_what_to_do() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "collector.cli", "migrate", "--store", "mysql://h/db"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "postgresql://USER@HOST/DB" in result.stderr


def test_data_dir_bound_to_a_store_opens_it(pg_cluster: PgCluster, tmp_path: Path) -> None:
    url = pg_cluster.new_database()
    data_dir = DataDir(tmp_path / "data")
    initialise(data_dir, 1000, url)
    assert data_dir.store_url() == url
    assert (data_dir.store_url_file.stat().st_mode & 0o077) == 0  # may hold a password
    assert not (data_dir.root / "aftercare.db").exists()
    store = data_dir.open_store()  # what every admin command does
    try:
        assert isinstance(store, PostgresStore)
        assert store.get_user("admin") is not None
    finally:
        store.close()
    initialise(data_dir, 2000)  # a later start without --store keeps the bound store
    with pytest.raises(ConfigError, match="pass the same URL"):
        initialise(data_dir, 3000, pg_cluster.new_database())


def test_sqlite_data_dir_is_not_silently_switched(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "data")
    initialise(data_dir, 1000)
    with pytest.raises(ConfigError, match="export/import"):
        initialise(data_dir, 2000, "postgresql://u@127.0.0.1:1/db")


def test_open_store_url_postgres_scheme_aliases(pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database()
    for alias in (url, url.replace("postgresql://", "postgres://", 1)):
        store = open_store_url(alias)
        assert isinstance(store, PostgresStore)
        store.close()


def test_malformed_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a valid PostgreSQL URL"):
        PostgresStore("postgresql://u@127.0.0.1:1/db?bogus=1")


def test_postgresql_binaries_are_found_or_reported_missing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_bin_dir(path=str(empty), debian_root=empty) is None  # the suites skip
    for version in ("9", "15"):
        bin_dir = tmp_path / "pg" / version / "bin"
        bin_dir.mkdir(parents=True)
        for tool in ("initdb", "pg_ctl"):
            (bin_dir / tool).touch(mode=0o755)
    assert find_bin_dir(path=str(empty), debian_root=tmp_path / "pg") == (
        tmp_path / "pg" / "15" / "bin"
    )
    assert "install Debian's `postgresql`" in NO_POSTGRESQL
