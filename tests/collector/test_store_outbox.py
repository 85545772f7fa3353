"""The outbox aggregate of the store, on every backend (SQLite and PostgreSQL).

Contract: collector/outbox.py ``OutboxStore``. Several store objects on one database
stand for several replicas.
"""

from __future__ import annotations

import threading

import pytest

from collector.audit import verify_chain
from collector.errors import InvalidRequest
from collector.outbox import Notice, OutboxAudit
from collector.store import Store
from collector.tickets.model import NewEvent, NewTicket
from tests.collector.conftest import StoreBackend

T0 = 1_767_225_600_000


def notice(dedup: str, ticket_id: int | None = None) -> Notice:
    return Notice(
        kind="ticket",
        dedup=dedup,
        channel="webhook",
        target="https://hooks.example/secret",
        target_label="https://hooks.example",
        payload={"event": dedup, "n": 1},
        ticket_id=ticket_id,
        meta={"key": dedup},
    )


def a_ticket(store: Store) -> int:
    new = NewTicket(customer="acme", title="t", level="3", source="engineer")
    opened = NewEvent(at_ms=T0, actor="user:erin", kind="opened", details={})
    return store.create_ticket(new, opened).id


def test_notices_are_stored_once_with_their_content(store: Store) -> None:
    assert store.enqueue_notices([notice("a"), notice("b"), notice("a")], T0) == 2
    assert store.enqueue_notices([notice("b")], T0 + 5) == 0
    first, second = store.list_outbox(None, 10)
    assert first.notice == notice("a") and second.notice.dedup == "b"
    assert first.delivery_id != second.delivery_id and len(first.delivery_id) == 32
    assert (first.state, first.attempts, first.next_attempt_ms) == ("pending", 0, T0)
    assert store.outbox_counts() == {"pending": 2, "sent": 0, "cancelled": 0, "failing": 0}


def test_two_replicas_claiming_at_once_never_share_a_notice(
    store_backend: StoreBackend,
) -> None:
    stores = [store_backend.open() for _ in range(4)]
    stores[0].enqueue_notices([notice(f"n{i}") for i in range(20)], T0)
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def claim_all(store: Store, holder: str) -> None:
        while (entry := store.claim_notice(["ticket"], holder, T0, 60_000)) is not None:
            with lock:
                claimed.append((holder, entry.id))

    threads = [threading.Thread(target=claim_all, args=(s, f"r{i}")) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [entry_id for _, entry_id in claimed]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 20


def test_a_claim_expires_and_a_named_claim_respects_it(store: Store) -> None:
    store.enqueue_notices([notice("a")], T0)
    entry = store.claim_notice(["ticket"], "r1", T0, 1000)
    assert entry is not None and (entry.claimed_by, entry.claimed_until_ms) == ("r1", T0 + 1000)
    busy = store.claim_named_notice("a", "r2", T0 + 999, 1000)
    assert busy is not None and busy.claimed_by == "r1"  # returned as it is: not r2's
    mine = store.claim_named_notice("a", "r2", T0 + 1000, 1000)
    assert mine is not None and mine.claimed_by == "r2"
    assert store.claim_named_notice("nothing", "r2", T0, 1000) is None


def test_sent_marks_once_and_records_the_delivery_on_the_ticket_atomically(
    store: Store,
) -> None:
    ticket_id = a_ticket(store)
    store.enqueue_notices([notice("a", ticket_id)], T0)
    entry = store.claim_notice(["ticket"], "r1", T0, 1000)
    assert entry is not None
    delivered = NewEvent(T0 + 1, "system", "notification", {"key": "a", "delivered": True})
    assert store.notice_sent(entry.id, T0 + 1, [delivered]) is True
    assert store.notice_sent(entry.id, T0 + 2, [delivered]) is False  # no second event
    kinds = [e.kind for e in store.ticket_events(ticket_id)]
    assert kinds == ["opened", "notification"]
    assert verify_chain(store.audit_entries()).ok
    named = store.claim_named_notice("a", "r2", T0 + 5, 1000)
    assert named is not None and named.state == "sent" and named.claimed_by is None


def test_pruning_drops_old_sent_notices_only(store: Store) -> None:
    store.enqueue_notices([notice("old"), notice("new"), notice("stuck")], T0)
    for at in (T0 + 1, T0 + 100):
        entry = store.claim_notice(["ticket"], "r1", at, 1)
        assert entry is not None
        store.notice_sent(entry.id, at)
    assert store.prune_outbox(T0 + 100) == 1
    assert [e.notice.dedup for e in store.list_outbox(None, 10)] == ["new", "stuck"]
    assert store.prune_outbox(T0 + 10**9) == 1  # the pending one stays, however old
    assert [e.notice.dedup for e in store.list_outbox(None, 10)] == ["stuck"]


def test_a_failure_keeps_the_notice_pending_and_counts_it(store: Store) -> None:
    store.enqueue_notices([notice("a")], T0)
    entry = store.claim_notice(["ticket"], "r1", T0, 1000)
    assert entry is not None
    store.notice_failed(entry.id, "webhook answered 503", T0 + 60_000)
    assert store.claim_notice(["ticket"], "r1", T0 + 59_999, 1000) is None  # backing off
    [failing] = store.list_outbox(["pending"], 10, failing_only=True)
    assert (failing.attempts, failing.last_error, failing.claimed_by) == (
        1,
        "webhook answered 503",
        None,
    )
    assert store.outbox_counts() == {"pending": 1, "sent": 0, "cancelled": 0, "failing": 1}
    assert store.claim_notice(["ticket"], "r2", T0 + 60_000, 1000) is not None


def test_a_mark_writes_its_audit_entries_in_the_same_transaction(store: Store) -> None:
    store.enqueue_notices([notice("a"), notice("b")], T0)
    first = store.claim_notice(["ticket"], "r1", T0, 1000)
    assert first is not None
    failed = OutboxAudit("customer.notice_failed", "a", {"error": "503"}, T0)
    store.notice_failed(first.id, "503", T0 + 60_000, (), [failed])
    second = store.claim_notice(["ticket"], "r1", T0 + 1, 1000)
    assert second is not None and second.notice.dedup == "b"
    sent = OutboxAudit("customer.notice_sent", "b", {"channel": "webhook"}, T0 + 1)
    assert store.notice_sent(second.id, T0 + 1, (), [sent]) is True
    assert store.notice_sent(second.id, T0 + 2, (), [sent]) is False  # no second entry
    entries = [(e.actor, e.action, e.target, e.at_ms) for e in store.audit_entries()]
    assert entries == [
        ("system", "customer.notice_failed", "a", T0),
        ("system", "customer.notice_sent", "b", T0 + 1),
    ]
    assert verify_chain(store.audit_entries()).ok
    bad = OutboxAudit("customer.notice_sent", "a", {"v": float("nan")}, T0 + 3)
    again = store.claim_notice(["ticket"], "r1", T0 + 60_000, 1000)
    assert again is not None
    with pytest.raises(InvalidRequest):
        store.notice_sent(again.id, T0 + 60_000, (), [bad])
    assert [e.state for e in store.list_outbox(None, 10)] == ["pending", "sent"]  # rolled back


def test_a_cancelled_notice_is_never_claimed_and_is_pruned_like_a_sent_one(
    store: Store,
) -> None:
    store.enqueue_notices([notice("moot"), notice("due")], T0)
    entry = store.claim_notice(["ticket"], "r1", T0, 1000)
    assert entry is not None and entry.notice.dedup == "moot"
    assert store.notice_cancelled(entry.id, "session ses-1 was denied", T0 + 1) is True
    assert store.notice_cancelled(entry.id, "again", T0 + 2) is False
    assert store.notice_sent(entry.id, T0 + 3) is False  # cancelled: never sent
    [cancelled] = store.list_outbox(["cancelled"], 10)
    assert (cancelled.last_error, cancelled.sent_ms, cancelled.claimed_by) == (
        "session ses-1 was denied",
        T0 + 1,
        None,
    )
    named = store.claim_named_notice("moot", "r2", T0 + 5, 1000)
    assert named is not None and named.state == "cancelled" and named.claimed_by is None
    nxt = store.claim_notice(["ticket"], "r2", T0 + 10**6, 1000)
    assert nxt is not None and nxt.notice.dedup == "due"
    assert store.outbox_counts() == {"pending": 1, "sent": 0, "cancelled": 1, "failing": 0}
    assert store.prune_outbox(T0 + 2) == 1
    assert [e.notice.dedup for e in store.list_outbox(None, 10)] == ["due"]


def test_bad_input_is_refused_and_writes_nothing(store: Store) -> None:
    bad = Notice("ticket", "bad", "webhook", "https://x", payload={"v": float("inf")})
    with pytest.raises(InvalidRequest, match="plain JSON"):
        store.enqueue_notices([notice("good"), bad], T0)
    assert store.list_outbox(None, 10) == []
    with pytest.raises(InvalidRequest):
        store.claim_notice(["ticket"], "", T0, 1000)
    with pytest.raises(InvalidRequest):
        store.list_outbox(["gone"], 10)
    with pytest.raises(InvalidRequest):
        store.list_outbox(None, 0)
    store.enqueue_notices([notice("orphan")], T0)  # no ticket: events cannot go anywhere
    entry = store.claim_notice(["ticket"], "r1", T0, 1000)
    assert entry is not None
    event = NewEvent(T0, "system", "notification", {})
    with pytest.raises(InvalidRequest, match="no ticket"):
        store.notice_sent(entry.id, T0, [event])
    [still] = store.list_outbox(["pending"], 10)  # the mark rolled back with the events
    assert still.id == entry.id
