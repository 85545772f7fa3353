"""The notification outbox: store contract, sender, delivery ids, retries, the CLI.

Real objects: a SQLite store behind the single writer, a real HTTP receiver on
127.0.0.1 (``Receiver``) that records every POST with its headers, a fake clock.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from collector.datadir import DataDir, initialise
from collector.errors import InvalidRequest
from collector.notify import build_message, send_webhook
from collector.outbox import (
    DELIVERY_HEADER,
    Notice,
    Outbox,
    OutboxEntry,
    Sender,
    enqueue,
    retry_delay_ms,
)
from collector.store import open_store
from collector.store.writer import StoreThread
from collector.tickets.escalation import Notification
from collector.tickets.notify import make_deliverer

T0 = 1_767_225_600_000


class Receiver:
    """An HTTP server that records (path, delivery header, JSON body) per POST and
    answers ``status`` (200 by default)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, dict[str, Any]]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(
                    (self.path, self.headers.get(DELIVERY_HEADER, ""), json.loads(body))
                )
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None: ...

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StoreThread]:
    thread = StoreThread(open_store(tmp_path))
    yield thread
    thread.close()


def notice(dedup: str = "test:1", target: str = "http://127.0.0.1:9/secret", **kw: Any) -> Notice:
    return Notice(
        kind="test",
        dedup=dedup,
        channel="webhook",
        target=target,
        subject="s",
        payload={"event": dedup},
        target_label="http://127.0.0.1:9",
        **kw,
    )


def webhook_sender() -> Sender:
    def deliver(entry: OutboxEntry) -> None:
        headers = {DELIVERY_HEADER: entry.delivery_id}
        send_webhook(entry.notice.target, entry.notice.payload, headers=headers, timeout=5)

    return Sender(deliver)


def test_a_notice_is_stored_once_however_often_it_is_enqueued(db: StoreThread) -> None:
    assert asyncio.run(enqueue(db, [notice("a"), notice("b")], T0)) == 2
    assert asyncio.run(enqueue(db, [notice("a"), notice("c")], T0 + 1)) == 1
    entries = db.store.list_outbox(None, 10)
    assert [e.notice.dedup for e in entries] == ["a", "b", "c"]
    assert len({e.delivery_id for e in entries}) == 3
    assert all(e.state == "pending" and e.attempts == 0 for e in entries)


def test_a_claimed_notice_is_nobody_elses_until_the_claim_expires(db: StoreThread) -> None:
    db.store.enqueue_notices([notice()], T0)
    first = db.store.claim_notice(["test"], "replica-a", T0, 30_000)
    assert first is not None and first.claimed_by == "replica-a"
    assert db.store.claim_notice(["test"], "replica-b", T0 + 29_999, 30_000) is None
    assert db.store.claim_notice(["other"], "replica-b", T0 + 40_000, 30_000) is None
    again = db.store.claim_notice(["test"], "replica-b", T0 + 30_000, 30_000)
    assert again is not None and again.id == first.id  # the claimant died: not lost
    assert again.delivery_id == first.delivery_id  # a repeat carries the same id


def test_a_notice_is_marked_sent_once(db: StoreThread) -> None:
    db.store.enqueue_notices([notice()], T0)
    entry = db.store.claim_notice(["test"], "a", T0, 1000)
    assert entry is not None
    assert db.store.notice_sent(entry.id, T0 + 1) is True
    assert db.store.notice_sent(entry.id, T0 + 2) is False
    assert db.store.claim_notice(["test"], "a", T0 + 10_000, 1000) is None
    [sent] = db.store.list_outbox(["sent"], 10)
    assert sent.sent_ms == T0 + 1 and sent.attempts == 1


def test_send_due_delivers_each_notice_with_its_delivery_id(
    db: StoreThread, receiver: Receiver
) -> None:
    outbox = Outbox(db, "replica-a")
    outbox.register("test", webhook_sender())
    notices = [notice(f"n{i}", target=f"{receiver.url}/hook/{i}") for i in range(3)]
    asyncio.run(outbox.enqueue(notices, T0))
    assert asyncio.run(outbox.send_due(T0)) == 3
    assert asyncio.run(outbox.send_due(T0 + 60_000)) == 0  # nothing twice
    ids = {e.notice.dedup: e.delivery_id for e in db.store.list_outbox(["sent"], 10)}
    assert [(path, header) for path, header, _ in receiver.posts] == [
        (f"/hook/{i}", ids[f"n{i}"]) for i in range(3)
    ]


def test_a_failing_notice_backs_off_stays_visible_and_is_delivered_at_last(
    db: StoreThread, receiver: Receiver
) -> None:
    outbox = Outbox(db, "replica-a")
    outbox.register("test", webhook_sender())
    asyncio.run(outbox.enqueue([notice(target=f"{receiver.url}/hook")], T0))
    receiver.status = 503
    now = T0
    for failures in range(1, 8):
        assert asyncio.run(outbox.send_due(now)) == 0
        [entry] = db.store.list_outbox(["pending"], 10, failing_only=True)
        assert entry.attempts == failures and "503" in entry.last_error
        assert entry.next_attempt_ms == now + retry_delay_ms(failures)
        asyncio.run(outbox.send_due(entry.next_attempt_ms - 1))  # not due yet: no attempt
        assert len(receiver.posts) == failures
        now = entry.next_attempt_ms
    assert db.store.outbox_counts() == {"pending": 1, "sent": 0, "cancelled": 0, "failing": 1}
    receiver.status = 200
    assert asyncio.run(outbox.send_due(now)) == 1
    assert db.store.outbox_counts() == {"pending": 0, "sent": 1, "cancelled": 0, "failing": 0}
    assert len({header for _, header, _ in receiver.posts}) == 1  # one id for every attempt


def test_retry_delays_double_from_one_minute_to_an_hour() -> None:
    assert [retry_delay_ms(n) // 1000 for n in range(1, 9)] == [
        60,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
    ]
    with pytest.raises(ValueError):
        retry_delay_ms(0)


def test_bad_notices_are_refused_and_nothing_is_stored(db: StoreThread) -> None:
    with pytest.raises(ValueError, match="needs a target"):
        notice(target="")
    bad = Notice("test", "bad", "webhook", "http://x", payload={"n": float("nan")})
    with pytest.raises(InvalidRequest, match="plain JSON"):
        db.store.enqueue_notices([notice("good"), bad], T0)
    assert db.store.list_outbox(None, 10) == []  # one transaction: the good one too
    with pytest.raises(InvalidRequest, match="unknown outbox state"):
        db.store.list_outbox(["lost"], 10)
    outbox = Outbox(db, "a")
    with pytest.raises(ValueError, match="no sender"):
        asyncio.run(outbox.send_due(T0, ["nobody"]))
    outbox.register("test", webhook_sender())
    with pytest.raises(ValueError, match="already"):
        outbox.register("test", webhook_sender())


def test_ticket_deliveries_carry_the_delivery_id(receiver: Receiver) -> None:
    deliver = make_deliverer(None)
    notification = Notification(
        key="k",
        step=0,
        channel="webhook",
        target=f"{receiver.url}/t",
        subject="s",
        delivery_id="ab12",
    )
    deliver(notification)
    assert receiver.posts[0][1] == "ab12"
    message = build_message("aftercare@vendor.example", ["a@b.example"], "s", "b", "ab12")
    assert message["Message-ID"] == "<ab12@vendor.example>"
    assert build_message("x@y.example", ["a@b.example"], "s", "b")["Message-ID"] != (
        "<ab12@y.example>"
    )


def test_the_outbox_command_lists_failing_notices_without_secrets(tmp_path: Path) -> None:
    initialise(DataDir(tmp_path), T0)
    store = open_store(tmp_path)
    try:
        store.enqueue_notices([notice("t:1"), notice("t:2")], T0)
        entry = store.claim_notice(["test"], "a", T0, 1000)
        assert entry is not None
        store.notice_failed(entry.id, "webhook http://127.0.0.1:9 unreachable", T0 + 60_000)
    finally:
        store.close()
    command = [sys.executable, "-m", "collector.cli", "outbox", "--data-dir", str(tmp_path)]
    listed = subprocess.run([*command, "--failing", "--json"], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert report["counts"] == {"pending": 2, "sent": 0, "cancelled": 0, "failing": 1}
    [failing] = report["notices"]
    assert failing["dedup"] == "t:1" and failing["attempts"] == 1
    assert "unreachable" in failing["last_error"]
    text = subprocess.run(command, capture_output=True, text=True)
    assert text.returncode == 0 and "FAILING x1" in text.stdout
    assert "secret" not in listed.stdout + text.stdout


def test_send_now_sends_once_and_leaves_a_claimed_notice_to_its_claimant(
    db: StoreThread, receiver: Receiver
) -> None:
    a, b = Outbox(db, "replica-a"), Outbox(db, "replica-b")
    for outbox in (a, b):
        outbox.register("test", webhook_sender())
    first = notice("once", target=f"{receiver.url}/once")
    assert asyncio.run(a.send_now(first, T0)) is None
    assert asyncio.run(b.send_now(first, T0 + 1)) is None  # already sent: not again
    assert len(receiver.posts) == 1

    held = notice("held", target=f"{receiver.url}/held")
    db.store.enqueue_notices([held], T0)
    assert db.store.claim_notice(["test"], "replica-a", T0, 30_000) is not None
    busy = asyncio.run(b.send_now(held, T0 + 1))
    assert busy is not None and "replica-a" in busy
    assert len(receiver.posts) == 1

    receiver.status = 500
    failing = notice("failing", target=f"{receiver.url}/failing")
    error = asyncio.run(b.send_now(failing, T0))
    assert error is not None and "500" in error
    receiver.status = 200  # retried by the outbox later (and the held one, its claim over)
    assert asyncio.run(b.send_due(T0 + retry_delay_ms(1), ["test"])) == 2
    assert [path for path, _, _ in receiver.posts] == ["/once", "/failing", "/held", "/failing"]


def test_a_moot_notice_is_cancelled_before_its_attempt_and_never_sent(
    db: StoreThread, receiver: Receiver
) -> None:
    moot: set[str] = set()

    async def still_due(entry: OutboxEntry, now_ms: int) -> str | None:
        return "decided meanwhile" if entry.notice.dedup in moot else None

    outbox = Outbox(db, "replica-a")
    outbox.register("test", Sender(webhook_sender().deliver, still_due=still_due))
    asyncio.run(outbox.enqueue([notice(d, target=f"{receiver.url}/{d}") for d in "ab"], T0))
    receiver.status = 503
    assert asyncio.run(outbox.send_due(T0)) == 0  # both failed, retried after a minute
    moot.add("a")
    receiver.status = 200
    assert asyncio.run(outbox.send_due(T0 + retry_delay_ms(1))) == 1
    assert [path for path, _, _ in receiver.posts] == ["/a", "/b", "/b"]  # "a" not again
    [cancelled] = db.store.list_outbox(["cancelled"], 10)
    assert cancelled.notice.dedup == "a" and cancelled.last_error == "decided meanwhile"
    assert asyncio.run(outbox.send_now(notice("a"), T0 + 10**7)) == "cancelled: decided meanwhile"
    moot.add("c")
    assert asyncio.run(outbox.send_now(notice("c"), T0)) == "cancelled: decided meanwhile"
    assert len(receiver.posts) == 3
    assert db.store.outbox_counts() == {"pending": 0, "sent": 1, "cancelled": 2, "failing": 0}
