"""The Store contract for tickets and their timelines: every backend passes it unchanged."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from collector.errors import Conflict, InvalidRequest, NotFound, StoreError
from collector.store import SQLiteStore, Store
from collector.store import sqlite as sqlite_backend
from collector.store.migrate import VERSION_TABLE_DDL, load_migrations
from collector.tickets.errors import TicketNotFound
from collector.tickets.model import Level, NewEvent, NewTicket, Ticket
from tests.collector.conftest import StoreBackend

T0 = 1_700_000_000_000  # an arbitrary "now" in unix ms


def new_ticket(
    customer: str = "acme",
    dedup_key: str | None = "web1/disk_full/mount=/",
    level: Level = "2",
    **changes: Any,
) -> NewTicket:
    base = NewTicket(
        customer=customer,
        title="Filesystem / almost full",
        level=level,
        source="rule",
        description="95% used",
        agent_id="a1",
        hostname="web1",
        rule="filesystem_almost_full",
        dedup_key=dedup_key,
        labels={"mount": "/", "device": "sda1"},
    )
    return replace(base, **changes)


def event(at_ms: int, kind: Any = "comment", actor: str = "user:erin", **details: Any) -> NewEvent:
    return NewEvent(at_ms=at_ms, actor=actor, kind=kind, details=details)


def opened(at_ms: int = T0) -> NewEvent:
    return event(at_ms, "opened", "rule:filesystem_almost_full", value=95.2)


def close(store: Store, ticket: Ticket, at_ms: int) -> Ticket:
    closed = replace(ticket, state="closed", closed_ms=at_ms, close_reason="confirmed")
    return store.update_ticket(closed, [event(at_ms, "closed", "user:bob")])


def run_together(count: int, work: Callable[[int], None]) -> None:
    """Start ``count`` threads at once (a barrier) and wait for them."""
    barrier = threading.Barrier(count)

    def body(n: int) -> None:
        barrier.wait()
        work(n)

    threads = [threading.Thread(target=body, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# -- create and read ------------------------------------------------------------------


def test_create_and_get(store: Store) -> None:
    ticket = store.create_ticket(new_ticket(), opened())
    assert ticket.id >= 1
    assert (ticket.state, ticket.version) == ("open", 1)
    assert (ticket.created_ms, ticket.updated_ms) == (T0, T0)
    assert (ticket.customer, ticket.level, ticket.source) == ("acme", "2", "rule")
    assert (ticket.agent_id, ticket.hostname, ticket.rule) == (
        "a1",
        "web1",
        "filesystem_almost_full",
    )
    assert ticket.labels == {"mount": "/", "device": "sda1"}
    assert ticket.resolution == {} and ticket.assignee is None
    assert ticket.acknowledged_ms is None and ticket.closed_ms is None
    assert ticket.waiting_on_customer is False and ticket.reopen_count == 0
    assert store.get_ticket(ticket.id) == ticket
    assert store.get_ticket(ticket.id + 1000) is None
    [first] = store.ticket_events(ticket.id)
    assert (first.ticket_id, first.at_ms, first.kind) == (ticket.id, T0, "opened")
    assert (first.actor, first.details) == ("rule:filesystem_almost_full", {"value": 95.2})


def test_ticket_ids_are_distinct_and_increasing(store: Store) -> None:
    ids = [store.create_ticket(new_ticket(dedup_key=f"k{n}"), opened()).id for n in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_manual_tickets_without_dedup_key_never_collide(store: Store) -> None:
    manual = new_ticket(dedup_key=None, source="customer", level="consult", rule=None)
    one = store.create_ticket(manual, event(T0, "opened", "user:bob"))
    two = store.create_ticket(manual, event(T0 + 1, "opened", "user:bob"))
    assert one.id != two.id
    assert one.dedup_key is None and one.level == "consult"


def test_create_refuses_bad_input(store: Store) -> None:
    with pytest.raises(InvalidRequest, match="level"):
        store.create_ticket(new_ticket(level="5"), opened())  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="customer"):
        store.create_ticket(new_ticket(customer=""), opened())
    with pytest.raises(InvalidRequest, match="labels"):
        store.create_ticket(new_ticket(labels={"n": 1}), opened())
    with pytest.raises(InvalidRequest, match="kind"):
        store.create_ticket(new_ticket(), event(T0, "exploded"))
    with pytest.raises(InvalidRequest, match="JSON"):
        store.create_ticket(new_ticket(), event(T0, "opened", bad=object()))
    assert store.list_tickets() == []


# -- lists ----------------------------------------------------------------------------


@pytest.fixture
def several(store: Store) -> dict[str, Ticket]:
    """acme: a1 (level 1, open), a2 (level 3, acknowledged), a3 (level 1, closed);
    zeta: z1 (level 1, open) — created in this order."""
    made = {
        "a1": store.create_ticket(new_ticket(dedup_key="k1", level="1"), opened(T0)),
        "a2": store.create_ticket(new_ticket(dedup_key="k2", level="3"), opened(T0 + 1)),
        "a3": store.create_ticket(new_ticket(dedup_key="k3", level="1"), opened(T0 + 2)),
        "z1": store.create_ticket(new_ticket("zeta", "k1", level="1"), opened(T0 + 3)),
    }
    made["a2"] = store.update_ticket(
        replace(made["a2"], state="acknowledged", acknowledged_ms=T0 + 10),
        [event(T0 + 10, "acknowledged")],
    )
    made["a3"] = close(store, made["a3"], T0 + 20)
    return made


def names(tickets: list[Ticket], made: dict[str, Ticket]) -> list[str]:
    by_id = {t.id: name for name, t in made.items()}
    return [by_id[t.id] for t in tickets]


def test_list_newest_first(store: Store, several: dict[str, Ticket]) -> None:
    assert names(store.list_tickets(), several) == ["z1", "a3", "a2", "a1"]
    assert store.list_tickets()[1] == several["a3"]  # the stored state, not a summary


def test_list_filters(store: Store, several: dict[str, Ticket]) -> None:
    assert names(store.list_tickets(customer="acme"), several) == ["a3", "a2", "a1"]
    assert names(store.list_tickets(customer="nobody"), several) == []
    assert names(store.list_tickets(states=["open"]), several) == ["z1", "a1"]
    assert names(store.list_tickets(states={"open", "acknowledged"}), several) == [
        "z1",
        "a2",
        "a1",
    ]
    assert names(store.list_tickets(level="1"), several) == ["z1", "a3", "a1"]
    assert names(store.list_tickets("acme", ["open", "closed"], "1"), several) == ["a3", "a1"]
    assert store.list_tickets(states=[]) == []
    assert names(store.list_tickets(limit=2), several) == ["z1", "a3"]


def test_list_refuses_bad_filters(store: Store) -> None:
    with pytest.raises(InvalidRequest, match="states"):
        store.list_tickets(states=["pending"])  # type: ignore[list-item]
    with pytest.raises(InvalidRequest, match="level"):
        store.list_tickets(level="9")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="limit"):
        store.list_tickets(limit=0)


# -- de-duplication -------------------------------------------------------------------


def test_find_by_dedup_returns_the_newest(store: Store) -> None:
    first = store.create_ticket(new_ticket(), opened(T0))
    assert store.find_ticket_by_dedup("acme", first.dedup_key or "") == first
    closed = close(store, first, T0 + 100)
    assert store.find_ticket_by_dedup("acme", first.dedup_key or "") == closed  # any state
    second = store.create_ticket(new_ticket(), opened(T0 + 200))  # recurrence, new ticket
    assert store.find_ticket_by_dedup("acme", first.dedup_key or "") == second
    assert store.find_ticket_by_dedup("zeta", first.dedup_key or "") is None
    assert store.find_ticket_by_dedup("acme", "other") is None


def test_find_many_by_dedup_gives_the_newest_per_fault_and_only_its_customers(
    store: Store,
) -> None:
    first = store.create_ticket(new_ticket(), opened(T0))
    closed = close(store, first, T0 + 100)
    second = store.create_ticket(new_ticket(), opened(T0 + 200))
    other = store.create_ticket(new_ticket(dedup_key="web1/load"), opened(T0 + 300))
    zeta = store.create_ticket(new_ticket("zeta"), opened(T0 + 400))
    key = first.dedup_key or ""
    found = store.find_tickets_by_dedup(
        [("acme", key), ("acme", "web1/load"), ("acme", "none"), ("zeta", key), ("acme", key)]
    )
    assert found == {("acme", key): second, ("acme", "web1/load"): other, ("zeta", key): zeta}
    assert closed.id != second.id
    assert store.find_tickets_by_dedup([]) == {}
    many = [(f"c{n % 3}", f"web{n}/disk") for n in range(1200)]  # more than one IN list
    assert store.find_tickets_by_dedup(many) == {}


def test_create_many_stores_all_with_their_events_and_audit(store: Store) -> None:
    items = [(new_ticket(dedup_key=f"web{n}/disk"), opened(T0 + n)) for n in range(3)]
    items.append((new_ticket("zeta"), opened(T0 + 3)))
    tickets = store.create_tickets(items)
    assert [t.dedup_key for t in tickets] == [
        "web0/disk",
        "web1/disk",
        "web2/disk",
        new_ticket().dedup_key,
    ]
    assert len({t.id for t in tickets}) == 4
    for ticket, (_, event_) in zip(tickets, items, strict=True):
        assert store.get_ticket(ticket.id) == ticket
        [stored] = store.ticket_events(ticket.id)
        assert (stored.kind, stored.at_ms) == ("opened", event_.at_ms)
    targets = {entry.target for entry in store.audit_entries()}
    assert {f"ticket:{t.id}" for t in tickets} <= targets


def test_create_many_is_all_or_nothing(store: Store) -> None:
    active = store.create_ticket(new_ticket(), opened(T0))
    with pytest.raises(Conflict, match=f"ticket {active.id} is already active"):
        store.create_tickets(
            [(new_ticket(dedup_key="web9/disk"), opened(T0 + 1)), (new_ticket(), opened(T0 + 2))]
        )
    with pytest.raises(Conflict):  # twice the same fault in one group
        store.create_tickets([(new_ticket(dedup_key="web8/disk"), opened(T0 + 3))] * 2)
    assert [t.id for t in store.list_tickets()] == [active.id]
    assert store.create_tickets([]) == []


def test_second_active_ticket_for_a_dedup_key_refused(store: Store) -> None:
    first = store.create_ticket(new_ticket(), opened(T0))
    with pytest.raises(Conflict, match=f"ticket {first.id} is already active"):
        store.create_ticket(new_ticket(title="again"), opened(T0 + 1))
    # Any state but closed counts as active.
    resolved = store.update_ticket(replace(first, state="resolved", resolved_ms=T0 + 2), [])
    with pytest.raises(Conflict):
        store.create_ticket(new_ticket(), opened(T0 + 3))
    # Another customer's fault with the same key is a different fault.
    assert store.create_ticket(new_ticket("zeta"), opened(T0 + 4)).customer == "zeta"
    close(store, resolved, T0 + 5)
    assert store.create_ticket(new_ticket(), opened(T0 + 6)).state == "open"
    assert len(store.list_tickets(customer="acme")) == 2


def test_concurrent_creates_for_one_fault_open_one_ticket(store_backend: StoreBackend) -> None:
    stores = [store_backend.open() for _ in range(6)]
    results: list[str] = []

    def create(n: int) -> None:
        try:
            stores[n].create_ticket(new_ticket(), opened(T0 + n))
            results.append("created")
        except Conflict:
            results.append("conflict")

    run_together(len(stores), create)
    assert sorted(results) == ["conflict"] * (len(stores) - 1) + ["created"]
    assert len(stores[0].list_tickets()) == 1
    [ticket] = stores[0].list_tickets()
    assert len(stores[0].ticket_events(ticket.id)) == 1


def test_reopening_an_old_ticket_beside_a_newer_active_one_refused(store: Store) -> None:
    old = close(store, store.create_ticket(new_ticket(), opened(T0)), T0 + 1)
    store.create_ticket(new_ticket(), opened(T0 + 2))
    with pytest.raises(Conflict, match="already active"):
        store.update_ticket(replace(old, state="reopened"), [event(T0 + 3, "reopened")])
    assert store.get_ticket(old.id) == old
    assert [e.kind for e in store.ticket_events(old.id)] == ["opened", "closed"]


# -- updates --------------------------------------------------------------------------


def test_update_stores_mutable_fields_and_appends_events(store: Store) -> None:
    ticket = store.create_ticket(new_ticket(), opened(T0))
    changed = replace(
        ticket,
        title="Filesystem / full",
        description="100% used",
        level="1",
        state="resolved",
        hostname="web1.example",
        labels={"mount": "/"},
        assignee="erin",
        acknowledged_ms=T0 + 10,
        resolved_ms=T0 + 50,
        waiting_on_customer=True,
        reopen_count=2,
        resolution={"cause": "log rotation stopped", "actions": "rotated", "prevention": "alert"},
    )
    events = [event(T0 + 50, "resolved"), event(T0 + 40, "comment", text="cleaned /var/log")]
    stored = store.update_ticket(changed, events)
    assert stored == replace(changed, version=2, updated_ms=T0 + 50)
    assert store.get_ticket(ticket.id) == stored
    timeline = store.ticket_events(ticket.id)
    assert [(e.kind, e.at_ms) for e in timeline] == [
        ("opened", T0),
        ("resolved", T0 + 50),
        ("comment", T0 + 40),
    ]
    assert timeline[2].details == {"text": "cleaned /var/log"}


def test_update_without_events_keeps_updated_ms(store: Store) -> None:
    ticket = store.create_ticket(new_ticket(), opened(T0))
    stored = store.update_ticket(replace(ticket, assignee="erin"), [])
    assert (stored.version, stored.updated_ms, stored.assignee) == (2, T0, "erin")
    # Events older than the last update never move updated_ms backwards.
    later = store.update_ticket(stored, [event(T0 + 100, "comment")])
    assert store.update_ticket(later, [event(T0 + 5, "comment")]).updated_ms == T0 + 100


def test_update_with_stale_version_conflicts_and_writes_nothing(store: Store) -> None:
    ticket = store.create_ticket(new_ticket(), opened(T0))
    fresh = store.update_ticket(replace(ticket, assignee="erin"), [event(T0 + 1, "assigned")])
    with pytest.raises(Conflict, match=f"ticket {ticket.id} changed meanwhile; retry"):
        store.update_ticket(replace(ticket, state="acknowledged"), [event(T0 + 2, "acknowledged")])
    assert store.get_ticket(ticket.id) == fresh
    assert [e.kind for e in store.ticket_events(ticket.id)] == ["opened", "assigned"]


def test_update_with_a_bad_event_writes_nothing(store: Store) -> None:
    ticket = store.create_ticket(new_ticket(), opened(T0))
    good, bad = event(T0 + 1, "comment", text="ok"), event(T0 + 2, "comment", bad={1, 2})
    with pytest.raises(InvalidRequest, match=r"events\[1\]\.details"):
        store.update_ticket(replace(ticket, state="acknowledged"), [good, bad])
    assert store.get_ticket(ticket.id) == ticket
    assert len(store.ticket_events(ticket.id)) == 1


def test_update_unknown_ticket(store: Store) -> None:
    ticket = store.create_ticket(new_ticket(), opened(T0))
    with pytest.raises(TicketNotFound, match="not found"):
        store.update_ticket(replace(ticket, id=ticket.id + 1000), [event(T0, "comment")])
    assert len(store.ticket_events(ticket.id)) == 1


def test_update_cannot_move_a_ticket_to_another_customer(store: Store) -> None:
    ticket = store.create_ticket(new_ticket(), opened(T0))
    for change in ({"customer": "zeta"}, {"source": "engineer"}, {"created_ms": T0 - 1}):
        with pytest.raises(InvalidRequest, match="cannot change"):
            store.update_ticket(replace(ticket, **change), [])
    with pytest.raises(InvalidRequest, match="state"):
        store.update_ticket(replace(ticket, state="gone"), [])  # type: ignore[arg-type]
    assert store.get_ticket(ticket.id) == ticket


def test_concurrent_updates_of_one_version_one_wins(store_backend: StoreBackend) -> None:
    stores = [store_backend.open() for _ in range(5)]
    ticket = stores[0].create_ticket(new_ticket(), opened(T0))
    results: list[str] = []

    def update(n: int) -> None:
        try:
            stores[n].update_ticket(
                replace(ticket, assignee=f"eng{n}"), [event(T0 + 1, "assigned", n=n)]
            )
            results.append("updated")
        except Conflict:
            results.append("conflict")

    run_together(len(stores), update)
    assert sorted(results) == ["conflict"] * (len(stores) - 1) + ["updated"]
    stored = stores[0].get_ticket(ticket.id)
    assert stored is not None and stored.version == 2
    events = stores[0].ticket_events(ticket.id)
    assert [e.kind for e in events] == ["opened", "assigned"]
    assert stored.assignee == f"eng{events[1].details['n']}"


# -- timeline -------------------------------------------------------------------------


def test_add_events_leaves_the_ticket_alone(store: Store) -> None:
    ticket = store.create_ticket(new_ticket(), opened(T0))
    added = store.add_ticket_events(
        ticket.id,
        [
            event(T0 + 5, "notification", "system", channel="webhook", level=1),
            event(T0 + 6, "escalation", "system", to=["ops@example.com"]),
        ],
    )
    assert [e.kind for e in added] == ["notification", "escalation"]
    assert added[0].id < added[1].id and {e.ticket_id for e in added} == {ticket.id}
    assert store.ticket_events(ticket.id)[1:] == added
    assert store.get_ticket(ticket.id) == ticket  # version and updated_ms unchanged
    assert store.add_ticket_events(ticket.id, []) == []


def test_add_events_unknown_ticket(store: Store) -> None:
    with pytest.raises(NotFound):  # TicketNotFound is one
        store.add_ticket_events(42, [event(T0, "comment")])
    assert store.ticket_events(42) == []


def test_timelines_are_per_ticket(store: Store) -> None:
    one = store.create_ticket(new_ticket(dedup_key="k1"), opened(T0))
    two = store.create_ticket(new_ticket(dedup_key="k2"), opened(T0 + 1))
    store.add_ticket_events(one.id, [event(T0 + 2, "comment", text="one")])
    store.add_ticket_events(two.id, [event(T0 + 3, "comment", text="two")])
    assert [e.details.get("text") for e in store.ticket_events(one.id)] == [None, "one"]
    assert [e.details.get("text") for e in store.ticket_events(two.id)] == [None, "two"]


# -- JSON, persistence, schema --------------------------------------------------------


def test_json_round_trip_with_unicode(store: Store) -> None:
    labels = {"机房": "上海-2", "mount": "/数据", "emoji": "🔥", "quote": "a\"b'c\\"}
    ticket = store.create_ticket(
        new_ticket(labels=labels, title="磁盘空间不足", description="剩余 3%"), opened(T0)
    )
    resolution = {"cause": "日志轮转停止", "actions": "清理 /var/log", "prevention": "监控"}
    details = {"文本": "客户已确认", "nested": {"list": [1, 2.5, None, True, "二"]}, "n": -7}
    stored = store.update_ticket(
        replace(ticket, resolution=resolution, state="resolved"),
        [NewEvent(T0 + 1, "user:erin", "comment", details)],
    )
    again = store.get_ticket(ticket.id)
    assert again == stored
    assert again.labels == labels and again.resolution == resolution
    assert (again.title, again.description) == ("磁盘空间不足", "剩余 3%")
    assert store.ticket_events(ticket.id)[-1].details == details


def test_tickets_survive_close_and_reopen(store_backend: StoreBackend) -> None:
    first = store_backend.open()
    ticket = first.create_ticket(new_ticket(labels={"机房": "北京"}), opened(T0))
    ticket = first.update_ticket(
        replace(ticket, state="acknowledged"), [event(T0 + 1, "acknowledged")]
    )
    timeline = first.ticket_events(ticket.id)
    first.close()
    again = store_backend.open()
    assert again.get_ticket(ticket.id) == ticket
    assert again.ticket_events(ticket.id) == timeline
    assert again.find_ticket_by_dedup("acme", ticket.dedup_key or "") == ticket
    with pytest.raises(Conflict):  # the one-active-ticket rule survives too
        again.create_ticket(new_ticket(), opened(T0 + 2))
    assert again.create_ticket(new_ticket(dedup_key="k2"), opened(T0 + 3)).id > ticket.id


def test_tickets_migration_applied_once(store_backend: StoreBackend) -> None:
    migrations = {m.version: m.name for m in load_migrations(store_backend.dialect)}
    assert migrations[2] == "tickets"
    store_backend.open().close()
    store_backend.open().close()
    rows = store_backend.query_raw("SELECT version FROM schema_migrations WHERE version = 2")
    assert rows == [(2,)]
    for table in ("tickets", "ticket_events"):
        assert store_backend.query_raw(f"SELECT COUNT(*) FROM {table}") == [(0,)]


def test_corrupt_ticket_row_is_a_store_error(store_backend: StoreBackend) -> None:
    store = store_backend.open()
    ticket = store.create_ticket(new_ticket(), opened(T0))
    store_backend.execute_raw("UPDATE tickets SET level = ? WHERE id = ?", ("9", ticket.id))
    with pytest.raises(StoreError, match="corrupt"):
        store.get_ticket(ticket.id)
    store_backend.execute_raw(
        "UPDATE tickets SET level = '1', labels = ? WHERE id = ?", ("[1]", ticket.id)
    )
    with pytest.raises(StoreError, match="labels"):
        store.get_ticket(ticket.id)


# -- SQLite specifics -----------------------------------------------------------------


def test_sqlite_index_enforces_one_active_ticket_without_the_precheck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two writers may both pass the "is one active?" check (PostgreSQL, read committed):
    # the partial unique index must still refuse the second insert, as a Conflict.
    monkeypatch.setattr(sqlite_backend, "_refuse_second_active", lambda *args: None)
    store = SQLiteStore(tmp_path / "a.db")
    try:
        first = store.create_ticket(new_ticket(), opened(T0))
        with pytest.raises(Conflict, match="one fault, one ticket"):
            store.create_ticket(new_ticket(), opened(T0 + 1))
        assert store.list_tickets() == [first]
        assert len(store.ticket_events(first.id)) == 1
    finally:
        store.close()


def test_kind_and_urgency_are_stored_checked_and_fixed(store: Store) -> None:
    inquiry = store.create_ticket(
        new_ticket(dedup_key=None, kind="inquiry", urgency="pressing"), opened(T0)
    )
    assert store.get_ticket(inquiry.id) == inquiry
    assert (inquiry.kind, inquiry.urgency) == ("inquiry", "pressing")
    assert store.create_ticket(new_ticket(), opened(T0)).kind == "fault"
    for change in ({"kind": "complaint"}, {"urgency": "urgent"}):
        with pytest.raises(InvalidRequest, match="cannot change"):
            store.update_ticket(replace(inquiry, **change), [])
    with pytest.raises(InvalidRequest, match="kind"):
        store.create_ticket(new_ticket(kind="praise"), opened(T0))  # type: ignore[arg-type]
    assert store.get_ticket(inquiry.id) == inquiry


def test_tickets_from_before_kinds_become_faults(tmp_path: Path) -> None:
    """A database at migration 0010 with a ticket upgrades (0011): the ticket is a fault."""
    path = tmp_path / "aftercare.db"
    with sqlite3.connect(path) as db:
        db.execute(VERSION_TABLE_DDL)
        for migration in load_migrations("sqlite"):
            if migration.version > 10:
                continue
            for statement in migration.statements:
                db.execute(statement)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (migration.version, T0))
        db.execute(
            "INSERT INTO tickets (customer, title, level, state, source, created_ms, updated_ms) "
            "VALUES ('acme', 'old', '3', 'open', 'engineer', ?, ?)",
            (T0, T0),
        )
    store = SQLiteStore(path)
    try:
        [old] = store.list_tickets("acme")
        assert (old.title, old.kind, old.urgency) == ("old", "fault", "")
    finally:
        store.close()


def test_ticket_events_many_reads_each_timeline_in_one_call(store: Store) -> None:
    ids = [store.create_ticket(new_ticket(dedup_key=f"k{n}"), opened()).id for n in range(3)]
    store.add_ticket_events(ids[1], [event(T0 + 1, note="b1"), event(T0 + 2, note="b2")])
    store.add_ticket_events(ids[0], [event(T0 + 3, note="a1")])
    timelines = store.ticket_events_many([*ids, 999_999])
    assert sorted(timelines) == sorted([*ids, 999_999])
    for ticket_id in ids:
        assert timelines[ticket_id] == store.ticket_events(ticket_id)
    assert [e.details.get("note") for e in timelines[ids[1]]] == [None, "b1", "b2"]
    assert timelines[999_999] == []
    assert store.ticket_events_many([]) == {}
