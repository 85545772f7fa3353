"""The Store contract: every backend must pass this suite unchanged (see conftest.py)."""

from __future__ import annotations

import math
import sqlite3
import threading
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from collector.audit import GENESIS_HASH, verify_chain
from collector.errors import (
    ConfigError,
    Conflict,
    InvalidRequest,
    MigrationError,
    StoreError,
    TokenExpired,
    TokenUnknown,
    TokenUsed,
    UnknownAgent,
    UserExists,
)
from collector.store import (
    DB_FILE_NAME,
    AgentRecord,
    GapRecord,
    HelloRecord,
    SQLiteStore,
    Store,
    StoredFailure,
    StoredSample,
    open_store,
    open_store_url,
)
from collector.store import sqlite as sqlite_backend
from collector.store.migrate import Migration, MigrationTarget, load_migrations, split_statements
from tests.collector.conftest import StoreBackend

T0 = 1_700_000_000_000  # an arbitrary "now" in unix ms


def make_agent(agent_id: str = "a1", customer: str = "acme", hostname: str = "web1") -> AgentRecord:
    return AgentRecord(
        agent_id=agent_id,
        customer=customer,
        hostname=hostname,
        enrolled_ms=T0,
        cert_serial=f"serial-{agent_id}",
        cert_not_after_ms=T0 + 86_400_000,
    )


def sample(name: str, value: float, **labels: str) -> StoredSample:
    return StoredSample(name=name, labels=labels, value=value)


def gap(sequence: int, reported_ms: int = T0) -> GapRecord:
    return GapRecord(
        sequence=sequence,
        first_lost_sequence=sequence - 3,
        last_lost_sequence=sequence - 1,
        lost_batches=3,
        start_ms=T0 - 30_000,
        end_ms=T0 - 10_000,
        reason="spool full",
        reported_ms=reported_ms,
    )


@pytest.fixture
def agent_store(store: Store) -> Store:
    """A store with agent "a1" (customer acme) enrolled."""
    store.add_agent(make_agent())
    return store


def store_simple(store: Store, sequence: int, collected_ms: int, value: float = 1.0) -> bool:
    return store.store_batch(
        "a1", sequence, collected_ms, collected_ms + 5, [sample("load1", value)], []
    )


# -- join tokens ----------------------------------------------------------------------


def test_join_token_is_single_use(store: Store) -> None:
    store.create_join_token("h1", "acme", expires_ms=T0 + 60_000, created_by="root", now_ms=T0)
    assert store.consume_join_token("h1", now_ms=T0 + 1) == "acme"
    with pytest.raises(TokenUsed, match="create a new one"):
        store.consume_join_token("h1", now_ms=T0 + 2)


def test_join_token_expired(store: Store) -> None:
    store.create_join_token("h1", "acme", expires_ms=T0 + 60_000, created_by="root", now_ms=T0)
    with pytest.raises(TokenExpired) as caught:
        store.consume_join_token("h1", now_ms=T0 + 60_000)
    assert caught.value.expires_ms == T0 + 60_000
    assert "aftercare-collector token create" in str(caught.value)
    # An expired token stays expired (consuming it failed, so it was not marked used).
    with pytest.raises(TokenExpired):
        store.consume_join_token("h1", now_ms=T0 + 60_001)


def test_join_token_valid_until_just_before_expiry(store: Store) -> None:
    store.create_join_token("h1", "acme", expires_ms=T0 + 60_000, created_by="root", now_ms=T0)
    assert store.consume_join_token("h1", now_ms=T0 + 59_999) == "acme"


def test_join_token_unknown(store: Store) -> None:
    store.create_join_token("h1", "acme", expires_ms=T0 + 60_000, created_by="root", now_ms=T0)
    with pytest.raises(TokenUnknown):
        store.consume_join_token("other", now_ms=T0)


def test_join_token_consumed_once_under_concurrency(store_backend: StoreBackend) -> None:
    setup = store_backend.open()
    setup.create_join_token("h1", "acme", expires_ms=T0 + 60_000, created_by="root", now_ms=T0)
    stores = [store_backend.open() for _ in range(6)]
    results: list[str] = []
    barrier = threading.Barrier(len(stores))

    def consume(s: Store) -> None:
        barrier.wait()
        try:
            results.append(s.consume_join_token("h1", now_ms=T0 + 1))
        except TokenUsed:
            results.append("used")

    threads = [threading.Thread(target=consume, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["acme"] + ["used"] * (len(stores) - 1)


# -- users ----------------------------------------------------------------------------


def test_users_add_lookup_list(store: Store) -> None:
    eng = store.add_user("zoe", "engineer", None, token_hash="t-zoe", now_ms=T0)
    cust = store.add_user("bob", "customer", "acme", token_hash="t-bob", now_ms=T0 + 1)
    assert eng.name == "zoe" and eng.role == "engineer" and eng.customer is None
    assert eng.created_ms == T0
    assert store.user_by_token_hash("t-bob") == cust
    assert store.user_by_token_hash("t-zoe") == eng
    assert store.user_by_token_hash("nope") is None
    assert store.list_users() == [cust, eng]  # ordered by name


def test_user_duplicate_name_refused(store: Store) -> None:
    store.add_user("zoe", "admin", None, token_hash="t1", now_ms=T0)
    with pytest.raises(UserExists):
        store.add_user("zoe", "engineer", None, token_hash="t2", now_ms=T0)
    assert [u.role for u in store.list_users()] == ["admin"]
    assert store.user_by_token_hash("t2") is None


def test_customer_user_needs_customer(store: Store) -> None:
    with pytest.raises(InvalidRequest):
        store.add_user("bob", "customer", None, token_hash="t1", now_ms=T0)
    assert store.list_users() == []


# -- agents ---------------------------------------------------------------------------


def test_agent_add_get(store: Store) -> None:
    agent = make_agent()
    store.add_agent(agent)
    assert store.get_agent("a1") == agent
    assert store.get_agent("missing") is None


def test_agents_looked_up_together_in_one_read(store: Store) -> None:
    agents = [make_agent(f"a{n}", hostname=f"web{n}") for n in range(3)]
    for agent in agents:
        store.add_agent(agent)
    store.revoke_agent("a2", T0 + 1)
    found = store.get_agents(["a2", "missing", "a0", "a0"])
    assert found == [store.get_agent("a2"), None, agents[0], agents[0]]
    assert found[0] is not None and found[0].revoked_ms == T0 + 1
    assert store.get_agents([]) == []
    assert store.get_agents([f"x{n}" for n in range(1200)]) == [None] * 1200


def test_agent_duplicate_refused(store: Store) -> None:
    store.add_agent(make_agent())
    with pytest.raises(Conflict):
        store.add_agent(make_agent(hostname="other"))
    assert store.get_agent("a1") == make_agent()


def test_list_agents_ordered_and_filtered(store: Store) -> None:
    store.add_agent(make_agent("a1", "zeta", "db1"))
    store.add_agent(make_agent("a2", "acme", "web2"))
    store.add_agent(make_agent("a3", "acme", "web1"))
    assert [a.agent_id for a in store.list_agents()] == ["a3", "a2", "a1"]
    assert [a.agent_id for a in store.list_agents("acme")] == ["a3", "a2"]
    assert [a.agent_id for a in store.list_agents("zeta")] == ["a1"]
    assert store.list_agents("nobody") == []


def test_revoke_agent(store: Store) -> None:
    store.add_agent(make_agent())
    revoked = store.revoke_agent("a1", now_ms=T0 + 10)
    assert revoked.revoked_ms == T0 + 10
    assert store.get_agent("a1") == revoked
    # Revoking again keeps the original revocation time.
    assert store.revoke_agent("a1", now_ms=T0 + 20).revoked_ms == T0 + 10
    with pytest.raises(UnknownAgent):
        store.revoke_agent("missing", now_ms=T0)


def test_update_certificate_and_hello(agent_store: Store) -> None:
    agent_store.update_agent_certificate("a1", "serial-2", T0 + 999)
    agent_store.record_hello("a1", "web1.renamed", "1.2.3", now_ms=T0 + 50)
    agent = agent_store.get_agent("a1")
    assert agent is not None
    assert (agent.cert_serial, agent.cert_not_after_ms) == ("serial-2", T0 + 999)
    assert (agent.hostname, agent.agent_version, agent.last_seen_ms) == (
        "web1.renamed",
        "1.2.3",
        T0 + 50,
    )
    with pytest.raises(UnknownAgent):
        agent_store.update_agent_certificate("missing", "s", 1)
    with pytest.raises(UnknownAgent):
        agent_store.record_hello("missing", "h", "v", now_ms=T0)


def test_hellos_of_many_agents_in_one_transaction(store: Store) -> None:
    for n in (1, 2, 3):
        store.add_agent(make_agent(f"a{n}", hostname=f"web{n}"))
    store.store_batch("a2", 4, T0, T0, [sample("load1", 1.0)], [])
    hellos = [
        HelloRecord("a1", "first", "1.0", T0 + 1),
        HelloRecord("a2", "web2", "1.1", T0 + 2, "collector", "sha256:" + "ab" * 32),
        HelloRecord("ghost", "x", "1.0", T0 + 3),
        HelloRecord("a1", "second", "1.2", T0 + 4),  # the same agent again: the last wins
    ]
    assert store.record_hellos(hellos, replica="r1") == [0, 4, None, 0]
    first, second = store.get_agent("a1"), store.get_agent("a2")
    assert first is not None and second is not None
    assert (first.hostname, first.agent_version, first.last_seen_ms) == ("second", "1.2", T0 + 4)
    assert (second.session_approval, second.approval_root) == ("collector", "sha256:" + "ab" * 32)
    assert store.get_agent("ghost") is None
    store.beat_replica("r1", "", T0, 60_000)
    assert {loc.agent_id: loc.replica for loc in store.live_presence(T0 + 5)} == {
        "a1": "r1",
        "a2": "r1",
    }
    untouched = store.get_agent("a3")
    assert untouched is not None and untouched.last_seen_ms is None
    assert store.record_hellos([HelloRecord("a3", "web3", "1.0", T0 + 9)]) == [0]
    assert {loc.agent_id for loc in store.live_presence(T0 + 10)} == {"a1", "a2"}  # no replica


# -- ingest ---------------------------------------------------------------------------


def test_store_batch_sets_latest_and_last_seen(agent_store: Store) -> None:
    samples = [sample("load1", 0.5), sample("fs_used", 42.0, mount="/", device="sda1")]
    failures = [StoredFailure("smart", "smartctl not installed")]
    assert agent_store.store_batch("a1", 1, T0, T0 + 7, samples, failures) is True
    latest = agent_store.latest("a1")
    assert latest is not None
    assert (latest.sequence, latest.collected_ms) == (1, T0)
    assert latest.samples == samples  # order and labels preserved
    assert latest.failures == failures
    agent = agent_store.get_agent("a1")
    assert agent is not None and agent.last_seen_ms == T0 + 7
    assert agent_store.last_sequence("a1") == 1


def test_store_batch_is_exactly_once(agent_store: Store) -> None:
    assert store_simple(agent_store, 1, T0, value=1.0) is True
    before = agent_store.latest("a1")
    assert (
        agent_store.store_batch("a1", 1, T0 + 1000, T0 + 2000, [sample("load1", 9.0)], []) is False
    )
    assert agent_store.latest("a1") == before
    assert agent_store.stored_sequences("a1") == [1]
    agent = agent_store.get_agent("a1")
    assert agent is not None and agent.last_seen_ms == T0 + 5  # unchanged


def test_latest_is_replaced_and_vanished_series_disappear(agent_store: Store) -> None:
    agent_store.store_batch(
        "a1",
        1,
        T0,
        T0,
        [sample("up", 1.0), sample("fs_used", 10.0, mount="/data")],
        [StoredFailure("smart", "boom")],
    )
    agent_store.store_batch("a1", 2, T0 + 10_000, T0 + 10_000, [sample("up", 1.0)], [])
    latest = agent_store.latest("a1")
    assert latest is not None
    assert latest.sequence == 2
    assert latest.samples == [sample("up", 1.0)]
    assert latest.failures == []


def test_out_of_order_older_batch_does_not_override_latest(agent_store: Store) -> None:
    assert store_simple(agent_store, 5, T0 + 50_000, value=5.0)
    assert store_simple(agent_store, 3, T0 + 30_000, value=3.0)  # spooled, arrives late
    latest = agent_store.latest("a1")
    assert latest is not None
    assert (latest.sequence, latest.samples) == (5, [sample("load1", 5.0)])
    assert agent_store.stored_sequences("a1") == [3, 5]
    assert agent_store.last_sequence("a1") == 5


def test_newer_collection_wins_even_with_lower_sequence(agent_store: Store) -> None:
    # "Newest collected" decides, not the sequence number.
    assert store_simple(agent_store, 2, T0, value=2.0)
    assert store_simple(agent_store, 1, T0 + 1, value=1.0)
    latest = agent_store.latest("a1")
    assert latest is not None and latest.sequence == 1


def test_gaps_share_the_sequence_space(agent_store: Store) -> None:
    assert store_simple(agent_store, 1, T0)
    assert agent_store.store_gap("a1", gap(4)) is True
    assert agent_store.store_gap("a1", gap(4, reported_ms=T0 + 1)) is False  # duplicate
    assert store_simple(agent_store, 4, T0 + 1000) is False  # sequence taken by the gap
    assert agent_store.store_gap("a1", gap(1)) is False  # sequence taken by a batch
    assert agent_store.gaps("a1") == [gap(4)]
    assert agent_store.stored_sequences("a1") == [1]  # batches only
    assert agent_store.last_sequence("a1") == 4  # gaps count
    latest = agent_store.latest("a1")
    assert latest is not None and latest.sequence == 1


def test_gaps_ordered_by_sequence(agent_store: Store) -> None:
    agent_store.store_gap("a1", gap(9))
    agent_store.store_gap("a1", gap(5))
    assert [g.sequence for g in agent_store.gaps("a1")] == [5, 9]


def test_sequences_are_per_agent(agent_store: Store) -> None:
    agent_store.add_agent(make_agent("a2", hostname="web2"))
    assert agent_store.last_sequence("a1") == 0
    assert agent_store.latest("a1") is None
    assert store_simple(agent_store, 1, T0)
    assert agent_store.store_batch("a2", 1, T0, T0, [sample("x", 2.0)], []) is True
    assert agent_store.last_sequence("a2") == 1
    assert agent_store.stored_sequences("a2") == [1]
    latest = agent_store.latest("a2")
    assert latest is not None and latest.samples == [sample("x", 2.0)]


def test_store_batch_unknown_agent(store: Store) -> None:
    with pytest.raises(UnknownAgent):
        store.store_batch("ghost", 1, T0, T0, [sample("up", 1.0)], [])
    with pytest.raises(UnknownAgent):
        store.store_gap("ghost", gap(1))


def test_sequence_must_be_positive(agent_store: Store) -> None:
    with pytest.raises(InvalidRequest):
        store_simple(agent_store, 0, T0)
    assert agent_store.stored_sequences("a1") == []


def test_special_float_values_round_trip(agent_store: Store) -> None:
    samples = [sample("a", math.nan), sample("b", math.inf), sample("c", -0.25)]
    agent_store.store_batch("a1", 1, T0, T0, samples, [])
    latest = agent_store.latest("a1")
    assert latest is not None
    values = [s.value for s in latest.samples]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -0.25]


def test_large_batch_round_trips(agent_store: Store) -> None:
    samples = [sample("cpu_seconds", float(i), cpu=str(i), mode="user") for i in range(200)]
    assert agent_store.store_batch("a1", 1, T0, T0, samples, [])
    latest = agent_store.latest("a1")
    assert latest is not None and latest.samples == samples


def test_prune_batches_keeps_latest_highest_and_gaps(agent_store: Store) -> None:
    for seq in range(1, 6):  # received at T0+1005 .. T0+5005
        store_simple(agent_store, seq, T0 + seq * 1000)
    agent_store.store_gap("a1", gap(6, reported_ms=T0))
    assert agent_store.prune_batches(older_than_ms=T0 + 3500) == 3
    assert agent_store.stored_sequences("a1") == [4, 5]
    assert agent_store.gaps("a1") == [gap(6, reported_ms=T0)]
    assert agent_store.last_sequence("a1") == 6
    # The latest batch is kept however old it is.
    assert agent_store.prune_batches(older_than_ms=T0 + 10**9) == 1
    assert agent_store.stored_sequences("a1") == [5]
    latest = agent_store.latest("a1")
    assert latest is not None and latest.sequence == 5


def test_prune_keeps_highest_sequence_when_not_latest(agent_store: Store) -> None:
    store_simple(agent_store, 2, T0 + 2000)  # latest
    store_simple(agent_store, 3, T0 + 1000)  # highest sequence, older collection
    store_simple(agent_store, 1, T0)
    assert agent_store.prune_batches(older_than_ms=T0 + 10**9) == 1
    assert agent_store.stored_sequences("a1") == [2, 3]
    assert agent_store.last_sequence("a1") == 3


# -- persistence and several processes ------------------------------------------------


def test_state_survives_close_and_reopen(store_backend: StoreBackend) -> None:
    first = store_backend.open()
    first.add_agent(make_agent())
    first.add_user("zoe", "admin", None, token_hash="t1", now_ms=T0)
    first.store_batch("a1", 1, T0, T0, [sample("up", 1.0)], [])
    first.store_gap("a1", gap(2))
    first.append_audit("zoe", "agent.enrol", "a1", {"customer": "acme"}, at_ms=T0)
    first.close()
    first.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        first.get_agent("a1")

    again = store_backend.open()
    assert again.get_agent("a1") == replace(make_agent(), last_seen_ms=T0)
    user = again.user_by_token_hash("t1")
    assert user is not None and user.name == "zoe"
    latest = again.latest("a1")
    assert latest is not None and latest.samples == [sample("up", 1.0)]
    assert again.gaps("a1") == [gap(2)]
    assert again.store_batch("a1", 1, T0, T0, [], []) is False  # de-dup survives reopen
    entries = again.audit_entries()
    assert [(e.actor, e.details) for e in entries] == [("zoe", {"customer": "acme"})]


def test_two_stores_alternating_audit_appends_keep_chain(store_backend: StoreBackend) -> None:
    one, two = store_backend.open(), store_backend.open()
    for i in range(10):
        writer = one if i % 2 == 0 else two
        writer.append_audit(f"actor{i}", "user.add", f"target{i}", {"i": i}, at_ms=T0 + i)
    entries = one.audit_entries()
    assert [e.id for e in entries] == list(range(1, 11))
    assert entries[0].prev_hash == GENESIS_HASH
    assert two.audit_entries() == entries
    verdict = verify_chain(entries)
    assert verdict.ok, verdict.reason
    assert verdict.checked == 10


def test_concurrent_audit_appends_from_several_stores(store_backend: StoreBackend) -> None:
    stores = [store_backend.open() for _ in range(3)]

    def append_many(s: Store, n: int) -> None:
        for i in range(20):
            s.append_audit(f"w{n}", "playbook.run", "host", {"i": i}, at_ms=T0 + i)

    threads = [
        threading.Thread(target=append_many, args=(s, n))
        for n, s in enumerate(stores + stores)  # two threads per store object
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdict = verify_chain(stores[0].audit_entries())
    assert verdict.ok, verdict.reason
    assert verdict.checked == 120


def test_audit_entries_after_id(store: Store) -> None:
    appended = [store.append_audit("a", "x", "t", {"n": n}, at_ms=T0) for n in range(4)]
    assert store.audit_entries() == appended
    assert store.audit_entries(after_id=2) == appended[2:]
    assert verify_chain(store.audit_entries(after_id=2), prev_id=2, prev_hash=appended[1].hash).ok


def test_audit_details_must_be_json(store: Store) -> None:
    with pytest.raises(InvalidRequest):
        store.append_audit("a", "x", "t", {"bad": object()}, at_ms=T0)
    with pytest.raises(InvalidRequest):
        store.append_audit("a", "x", "t", {"bad": math.nan}, at_ms=T0)
    assert store.audit_entries() == []


# -- migrations -----------------------------------------------------------------------


def test_migration_versions_recorded_once(store_backend: StoreBackend) -> None:
    known = [m.version for m in load_migrations(store_backend.dialect)]
    store_backend.open()
    store_backend.open()  # reopening applies nothing twice
    rows = store_backend.query_raw(
        "SELECT version, applied_ms FROM schema_migrations ORDER BY version"
    )
    assert [version for version, _ in rows] == known
    assert all(applied_ms > T0 for _, applied_ms in rows)


def test_newer_schema_refused(store_backend: StoreBackend) -> None:
    store_backend.open().close()
    future = load_migrations(store_backend.dialect)[-1].version + 1
    store_backend.execute_raw(
        "INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)", (future, T0)
    )
    with pytest.raises(MigrationError, match="upgrade aftercare"):
        store_backend.open()


def test_concurrent_first_open_migrates_once(store_backend: StoreBackend) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        barrier.wait()
        try:
            store_backend.open()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = store_backend.query_raw("SELECT version FROM schema_migrations")
    assert sorted(v for (v,) in rows) == [m.version for m in load_migrations(store_backend.dialect)]


# -- backend-independent pieces and SQLite specifics ----------------------------------


def test_split_statements_drops_comments_and_blanks() -> None:
    sql = "-- head; comment\nCREATE TABLE a (x TEXT); -- tail\n\n;CREATE INDEX i ON a (x);\n"
    assert split_statements(sql) == ["CREATE TABLE a (x TEXT)", "CREATE INDEX i ON a (x)"]


def test_shipped_migrations_are_numbered_from_one() -> None:
    migrations = load_migrations("sqlite")
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "initial" and migrations[0].statements


def test_open_store_creates_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "var" / "collector"
    store = open_store(data_dir)
    try:
        store.add_agent(make_agent())
    finally:
        store.close()
    assert (data_dir / DB_FILE_NAME).is_file()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a.db")
    try:
        with closing(sqlite3.connect(tmp_path / "a.db")) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert raw.execute("PRAGMA foreign_key_list(ingest_log)").fetchall()
    finally:
        store.close()


def test_migration_rechecks_version_inside_its_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process migrates between our version read and our migration: the
    # migration must notice under the write lock and not run twice.
    path = tmp_path / "a.db"
    real_migrate = sqlite_backend.migrate

    class StaleRead:
        def __init__(self, target: MigrationTarget) -> None:
            self.target = target

        def applied_version(self) -> int:
            self.target.applied_version()
            SQLiteStore(path).close()  # the other process wins the race
            return 0

        def apply(self, migration: Migration, now_ms: int) -> None:
            self.target.apply(migration, now_ms)

    def racing_migrate(target: MigrationTarget, *args: Any) -> int:
        monkeypatch.setattr(sqlite_backend, "migrate", real_migrate)
        return real_migrate(StaleRead(target), *args)

    monkeypatch.setattr(sqlite_backend, "migrate", racing_migrate)
    SQLiteStore(path).close()
    with closing(sqlite3.connect(path)) as raw:
        versions = [v for (v,) in raw.execute("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in load_migrations("sqlite")]


def test_open_store_url(tmp_path: Path) -> None:
    store = open_store_url(f"sqlite:///{tmp_path}/x.db")  # absolute path: four slashes
    store.close()
    assert (tmp_path / "x.db").is_file()
    with pytest.raises(StoreError, match=r"cannot connect to PostgreSQL at .*:\*\*\*@"):
        open_store_url("postgresql://u:secret@127.0.0.1:1/aftercare")  # nothing listens
    with pytest.raises(ConfigError, match="unknown scheme"):
        open_store_url("mysql://db/aftercare")
    with pytest.raises(ConfigError, match="does not exist"):
        open_store_url(f"sqlite:///{tmp_path}/missing/x.db")
