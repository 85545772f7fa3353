"""The Store contract for remote sessions: every backend passes it unchanged."""

from __future__ import annotations

from dataclasses import replace

import pytest

from collector.errors import Conflict, InvalidRequest, NotFound, StoreError
from collector.sessions.errors import SessionNotFound
from collector.sessions.lifecycle import (
    approve,
    connected,
    deny,
    disconnected,
    expire_window_if_due,
    request,
    terminate,
)
from collector.sessions.model import NewSessionEvent, RemoteSession
from collector.store import Store
from collector.store.migrate import load_migrations
from tests.collector.conftest import StoreBackend

T0 = 1_700_000_000_000
MIN = 60_000
HOUR = 60 * MIN


def new(
    n: int = 1,
    customer: str = "acme",
    engineer: str = "erin",
    at_ms: int = T0,
    local: bool = False,
) -> tuple[RemoteSession, NewSessionEvent]:
    t = request(
        agent_id=f"{customer}-a1",
        customer=customer,
        hostname="web1",
        engineer=engineer,
        reason="disk keeps filling up",
        duration_ms=2 * HOUR,
        at_ms=at_ms,
        ticket_id=7,
        local_approval_required=local,
        session_id=f"ses-{n:012x}",
    )
    (event,) = t.events
    return t.session, event


def create(store: Store, n: int = 1, **kwargs: object) -> RemoteSession:
    session, event = new(n, **kwargs)  # type: ignore[arg-type]
    return store.create_session(session, event)


# -- create and read ------------------------------------------------------------------


def test_create_get_and_first_event(store: Store) -> None:
    session, event = new(local=True)
    stored = store.create_session(session, event)
    assert stored == session and stored.version == 1
    assert store.get_session(session.session_id) == session
    assert store.get_session("ses-ffffffffffff") is None
    (first,) = store.session_events(session.session_id)
    assert (first.session_id, first.kind, first.actor, first.at_ms) == (
        session.session_id,
        "requested",
        "user:erin",
        T0,
    )
    assert first.details == dict(event.details)
    assert first.id >= 1
    assert store.session_events("ses-ffffffffffff") == []


def test_create_stores_version_1(store: Store) -> None:
    session, event = new()
    assert store.create_session(replace(session, version=9), event).version == 1


def test_duplicate_session_id_conflicts(store: Store) -> None:
    first = create(store)
    session, event = new(customer="zeta")
    with pytest.raises(Conflict, match="already exists"):
        store.create_session(session, event)
    assert store.list_sessions() == [first]
    assert len(store.session_events(first.session_id)) == 1


def test_create_refuses_bad_input(store: Store) -> None:
    session, event = new()
    bad = [
        ("session_id", replace(session, session_id="s1"), event),
        ("customer", replace(session, customer=""), event),
        ("engineer", replace(session, engineer=""), event),
        ("reason", replace(session, reason=""), event),
        ("state", replace(session, state="lost"), event),  # type: ignore[arg-type]
        ("kind", session, replace(event, kind="exploded")),  # type: ignore[arg-type]
        ("JSON", session, replace(event, details={"x": object()})),
        ("actor", session, replace(event, actor="")),
    ]
    for match, s, e in bad:
        with pytest.raises(InvalidRequest, match=match):
            store.create_session(s, e)
    assert store.list_sessions() == []


# -- lists ----------------------------------------------------------------------------


@pytest.fixture
def several(store: Store) -> dict[int, RemoteSession]:
    """1: acme/erin pending (T0); 2: acme/bob approved (T0+1); 3: zeta/erin (T0+2);
    4: acme/erin denied (T0+3); 5 and 6: acme/erin pending, both at T0+3."""
    made = {
        1: create(store, 1, at_ms=T0),
        2: create(store, 2, engineer="bob", at_ms=T0 + 1),
        3: create(store, 3, customer="zeta", at_ms=T0 + 2),
        4: create(store, 4, at_ms=T0 + 3),
        6: create(store, 6, at_ms=T0 + 3),
        5: create(store, 5, at_ms=T0 + 3),
    }
    t = approve(made[2], "carol", "acme", T0 + 10)
    made[2] = store.update_session(t.session, t.events)
    t = deny(made[4], "carol", "acme", "change freeze", T0 + 10)
    made[4] = store.update_session(t.session, t.events)
    return made


def numbers(sessions: list[RemoteSession]) -> list[int]:
    return [int(s.session_id.removeprefix("ses-"), 16) for s in sessions]


def test_list_newest_first(store: Store, several: dict[int, RemoteSession]) -> None:
    assert numbers(store.list_sessions()) == [4, 5, 6, 3, 2, 1]
    assert store.list_sessions()[-1] == several[1]


def test_list_filters_and_limit(store: Store, several: dict[int, RemoteSession]) -> None:
    assert numbers(store.list_sessions(customer="acme")) == [4, 5, 6, 2, 1]
    assert numbers(store.list_sessions(engineer="erin")) == [4, 5, 6, 3, 1]
    assert numbers(store.list_sessions("acme", "erin")) == [4, 5, 6, 1]
    assert numbers(store.list_sessions(customer="acme", states=["pending"])) == [5, 6, 1]
    assert numbers(store.list_sessions(states={"approved", "denied"})) == [4, 2]
    assert store.list_sessions(states=[]) == []
    assert store.list_sessions(customer="nobody") == []
    assert numbers(store.list_sessions(limit=2)) == [4, 5]
    assert numbers(store.list_sessions(agent_id="zeta-a1")) == [3]
    assert numbers(store.list_sessions(states=["pending"], agent_id="acme-a1")) == [5, 6, 1]
    assert store.list_sessions(agent_id="acme-a2") == []
    with pytest.raises(InvalidRequest, match="limit"):
        store.list_sessions(limit=0)
    with pytest.raises(InvalidRequest, match="states"):
        store.list_sessions(states=["exploded"])  # type: ignore[list-item]


def test_list_default_limit_is_100(store: Store) -> None:
    for n in range(105):
        create(store, n, at_ms=T0 + n)
    sessions = store.list_sessions()
    assert len(sessions) == 100 and numbers(sessions)[0] == 104 and numbers(sessions)[-1] == 5


# -- updates --------------------------------------------------------------------------


def test_update_through_the_lifecycle(store: Store) -> None:
    session = create(store)
    t = approve(session, "carol", "acme", T0 + MIN)
    approved = store.update_session(t.session, t.events)
    assert approved == replace(t.session, version=2)
    t = connected(approved, T0 + 4 * MIN)
    live = store.update_session(t.session, t.events)
    assert (live.state, live.connected_ms, live.version) == ("active", T0 + 4 * MIN, 3)
    t = disconnected(live, T0 + 30 * MIN)
    still = store.update_session(t.session, t.events)
    assert (still.state, still.version) == ("active", 4)
    t = expire_window_if_due(still, T0 + 3 * HOUR)
    assert t is not None
    ended = store.update_session(t.session, t.events)
    assert store.get_session(session.session_id) == ended
    assert (ended.state, ended.end_reason, ended.version) == ("ended", "window expired", 5)
    events = store.session_events(session.session_id)
    assert [e.kind for e in events] == [
        "requested",
        "approved",
        "connected",
        "disconnected",
        "ended",
    ]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert events[2].details == {"first": True, "remote_response_ms": 3 * MIN}


def test_update_version_conflict_writes_nothing(store: Store) -> None:
    session = create(store)
    t = approve(session, "carol", "acme", T0 + MIN)
    stored = store.update_session(t.session, t.events)
    stale = deny(session, "dave", "acme", "no", T0 + 2 * MIN)  # from the old version
    with pytest.raises(Conflict, match="changed meanwhile"):
        store.update_session(stale.session, stale.events)
    assert store.get_session(session.session_id) == stored
    assert [e.kind for e in store.session_events(session.session_id)] == ["requested", "approved"]


def test_update_unknown_session(store: Store) -> None:
    session, _ = new()
    with pytest.raises(SessionNotFound, match="not found") as info:
        store.update_session(session, [])
    assert isinstance(info.value, NotFound)


def test_update_refuses_changing_fixed_fields(store: Store) -> None:
    session = create(store)
    for change in (
        {"customer": "zeta"},
        {"engineer": "mallory"},
        {"agent_id": "other"},
        {"requested_duration_ms": 12 * HOUR},
    ):
        with pytest.raises(InvalidRequest, match=next(iter(change))):
            store.update_session(replace(session, **change), [])
    t = terminate(approve(session, "carol", "acme", T0 + MIN).session, "erin", None, T0 + 2)
    with pytest.raises(InvalidRequest, match="kind"):
        store.update_session(t.session, [replace(t.events[0], kind="boom")])  # type: ignore[arg-type]
    assert store.get_session(session.session_id) == session
    assert len(store.session_events(session.session_id)) == 1


def test_update_without_events_bumps_version(store: Store) -> None:
    session = create(store)
    again = store.update_session(replace(session, ticket_id=9), [])
    assert (again.ticket_id, again.version) == (9, 2)
    assert len(store.session_events(session.session_id)) == 1


# -- persistence and schema -----------------------------------------------------------


def test_sessions_persist_across_reopen(store_backend: StoreBackend) -> None:
    store = store_backend.open()
    session = create(store, local=True)
    t = approve(create(store, 2), "carol", "acme", T0 + MIN)
    approved = store.update_session(t.session, t.events)
    events = store.session_events(session.session_id)
    store.close()
    again = store_backend.open()
    assert again.get_session(session.session_id) == session
    assert again.get_session(approved.session_id) == approved
    assert again.get_session(session.session_id).local_approval_required is True  # type: ignore[union-attr]
    assert again.session_events(session.session_id) == events
    assert numbers(again.list_sessions()) == [1, 2]
    with pytest.raises(Conflict, match="changed meanwhile"):
        again.update_session(t.session, t.events)  # version 1 again: stale


def test_sessions_migration_applied_once(store_backend: StoreBackend) -> None:
    migrations = {m.version: m.name for m in load_migrations(store_backend.dialect)}
    assert migrations[4] == "sessions"
    store_backend.open().close()
    store_backend.open().close()
    rows = store_backend.query_raw("SELECT version FROM schema_migrations WHERE version = 4")
    assert rows == [(4,)]
    assert store_backend.query_raw("SELECT COUNT(*) FROM sessions") == [(0,)]


def test_corrupt_session_row_is_a_store_error(store_backend: StoreBackend) -> None:
    store = store_backend.open()
    session = create(store)
    store_backend.execute_raw(
        "UPDATE sessions SET state = ? WHERE session_id = ?", ("gone", session.session_id)
    )
    with pytest.raises(StoreError, match="corrupt"):
        store.get_session(session.session_id)
    store_backend.execute_raw(
        "UPDATE session_events SET details = ? WHERE session_id = ?", ("[1]", session.session_id)
    )
    with pytest.raises(StoreError, match="details"):
        store.session_events(session.session_id)


def test_a_hosts_pending_sessions_are_read_by_index(store_backend: StoreBackend) -> None:
    if store_backend.dialect != "sqlite":
        pytest.skip("query plans are checked on SQLite")
    store_backend.open().close()
    query = (
        "SELECT session_id FROM sessions WHERE agent_id = 'acme-a1' AND state IN ('pending') "
        "ORDER BY requested_ms DESC, session_id LIMIT 1000"
    )
    plan = " ".join(str(row) for row in store_backend.query_raw("EXPLAIN QUERY PLAN " + query))
    assert "sessions_by_agent" in plan, plan


def test_pending_sessions_of_many_hosts_in_one_read(store: Store) -> None:
    older = create(store, 1)
    newer = create(store, 2, at_ms=T0 + 1)
    globex = create(store, 3, customer="globex")
    denied = create(store, 4, customer="initech")
    t = deny(denied, "carol", "initech", "change freeze", T0 + 10)
    store.update_session(t.session, t.events)
    hosts = ["globex-a1", "acme-a1", "initech-a1", "nobody-a1", "acme-a1"]
    found = store.pending_sessions_of(hosts)
    assert [[s.session_id for s in each] for each in found] == [
        [globex.session_id],
        [newer.session_id, older.session_id],
        [],
        [],
        [newer.session_id, older.session_id],
    ]
    assert store.pending_sessions_of([]) == []
    assert store.pending_sessions_of([f"h{n}" for n in range(1200)]) == [[]] * 1200
