"""The notification outbox: every notification is stored before it is sent, once.

Contract (docs/notifications-outbox.md):

- ``enqueue`` (one function, the only way in) stores notices in the outbox; callers
  that change state put the notices in the same store transaction as the change
  (``OutboxStore.enqueue_notices`` and the store's ``enqueue_in`` row helper). A
  notice's ``dedup`` names it: enqueueing the same notice again changes nothing, so
  a cycle repeated by a new leader adds no second copy.
- ``Outbox.send_due`` (run by the leader only) claims one due notice at a time for
  ``CLAIM_MS``, sends it through the sender registered for its kind, and marks it
  sent -- or failed, with the next attempt after a backoff (``retry_delay_ms``). A
  notice is never dropped: it stays pending, visible in ``aftercare-collector
  outbox`` and the ``aftercare_outbox_notices`` gauge, until it is delivered (or
  cancelled as moot, below).
- A kind whose notices can become moot (e.g. an approval notice for something approved
  meanwhile) gives its sender a ``still_due`` check: a notice that is no longer due
  when claimed is marked ``cancelled`` instead of sent (kept, like a sent one).
- Each notice has a ``delivery_id``, sent with it (webhook header
  ``X-Aftercare-Delivery``, e-mail ``Message-ID``). The one window that cannot be
  closed: a sender that dies after the receiver accepted a notice and before the mark
  committed; after its claim expires the next leader sends it again with the same
  ``delivery_id``, by which the receiver recognises the repeat.

Pure of gRPC and SQL: the store is passed in (``OutboxDb``), the clock too.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

__all__ = [
    "CLAIM_MS",
    "DELIVERY_HEADER",
    "Notice",
    "Outbox",
    "OutboxAudit",
    "OutboxDb",
    "OutboxEntry",
    "OutboxStore",
    "Sender",
    "enqueue",
    "new_delivery_id",
    "retry_delay_ms",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DELIVERY_HEADER = "X-Aftercare-Delivery"
CLAIM_MS = 30_000  # a claimed notice is left alone this long (> the 10 s webhook timeout)
FIRST_RETRY_MS = 60_000  # the first two retries wait a minute ...
MAX_RETRY_MS = 3_600_000  # ... later ones double, up to an hour
SEND_LIMIT = 200  # notices sent per ``send_due`` call at most (the rest: next cycle)
STATES = ("pending", "sent", "cancelled")
RETENTION_MS = 90 * 86_400_000  # sent (and cancelled) notices are kept this long, then pruned


def new_delivery_id() -> str:
    """A fresh delivery id: 32 hex digits, unique per notice."""
    return secrets.token_hex(16)


def retry_delay_ms(failures: int) -> int:
    """How long after its ``failures``-th failed attempt a notice is tried again:
    1 min, 1 min, 2 min, 4 min, ... at most 1 h."""
    if failures < 1:
        raise ValueError(f"a retry follows a failure; got {failures} failures")
    delay: int = FIRST_RETRY_MS * 2 ** max(0, failures - 2)
    return min(delay, MAX_RETRY_MS)


@dataclass(frozen=True)
class Notice:
    """One notification to send. ``kind`` picks the sender ("ticket", "inspection",
    "approval", ...); ``dedup`` names the notice (unique: enqueued once); ``target``
    is the full URL or address (may hold a secret), ``target_label`` its shown form;
    ``meta`` holds what the kind's sender needs besides (JSON data)."""

    kind: str
    dedup: str
    channel: str  # webhook | email
    target: str
    subject: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)
    body: str = ""
    target_label: str = ""
    ticket_id: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("kind", "dedup", "channel", "target"):
            if not getattr(self, name):
                raise ValueError(f"a notice needs a {name}")


@dataclass(frozen=True)
class OutboxEntry:
    """A stored notice and its delivery state."""

    id: int
    delivery_id: str
    notice: Notice
    created_ms: int
    state: str  # pending | sent | cancelled
    attempts: int
    next_attempt_ms: int
    last_error: str = ""  # cancelled: why
    sent_ms: int | None = None  # cancelled: when
    claimed_by: str | None = None
    claimed_until_ms: int | None = None


@dataclass(frozen=True)
class OutboxAudit:
    """An audit log entry (actor "system") written together with a notice's mark."""

    action: str
    target: str
    details: Mapping[str, Any]
    at_ms: int


class OutboxStore(Protocol):
    """The outbox table of the store (collector/store/outbox_sqlite.py)."""

    def enqueue_notices(self, notices: Sequence[Notice], at_ms: int) -> int:
        """Store the notices not stored yet (by ``dedup``) as pending, due at ``at_ms``;
        how many were new. One transaction."""
        ...

    def claim_notice(
        self, kinds: Collection[str], holder: str, now_ms: int, hold_ms: int
    ) -> OutboxEntry | None:
        """Claim the oldest pending notice of ``kinds`` due at ``now_ms`` and not
        claimed by anyone until after ``now_ms``: ``holder`` holds it until
        ``now_ms + hold_ms``. None if there is none."""
        ...

    def notice_sent(
        self,
        entry_id: int,
        at_ms: int,
        events: Sequence[Any] = (),
        audits: Sequence[OutboxAudit] = (),
    ) -> bool:
        """Mark the notice sent and, in the same transaction, add ``events`` to its
        ticket's timeline and ``audits`` to the audit log; False (and nothing written)
        if it was no longer pending."""
        ...

    def notice_failed(
        self,
        entry_id: int,
        error: str,
        retry_at_ms: int,
        events: Sequence[Any] = (),
        audits: Sequence[OutboxAudit] = (),
    ) -> None:
        """Count a failed attempt: keep the notice pending, due again at
        ``retry_at_ms``, released; ``events`` go on its ticket's timeline, ``audits``
        to the audit log."""
        ...

    def notice_cancelled(self, entry_id: int, reason: str, at_ms: int) -> bool:
        """Mark a pending notice ``cancelled`` (never to be sent: ``reason`` in its
        last error, ``at_ms`` in its sent time); False if it was no longer pending."""
        ...

    def claim_named_notice(
        self, dedup: str, holder: str, now_ms: int, hold_ms: int
    ) -> OutboxEntry | None:
        """Claim the notice named ``dedup`` now, whatever its next attempt time, if it
        is pending and nobody else holds it; else return it as it is (``state``
        "sent", or ``claimed_by`` another). None if no such notice is stored."""
        ...

    def list_outbox(
        self, states: Collection[str] | None, limit: int, failing_only: bool = False
    ) -> list[OutboxEntry]:
        """Stored notices, oldest first; ``failing_only``: pending ones that failed."""
        ...

    def outbox_counts(self) -> dict[str, int]:
        """Notices per state, plus "failing": pending notices with a failed attempt."""
        ...

    def prune_outbox(self, sent_before_ms: int) -> int:
        """Delete notices sent or cancelled before ``sent_before_ms`` (never pending
        ones); how many."""
        ...


class OutboxDb(Protocol):
    """The single store writer (``collector.store.writer.StoreThread``)."""

    @property
    def store(self) -> OutboxStore: ...

    def call(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]: ...


class OutboxMetrics(Protocol):
    """Gauges of the outbox (``collector.metrics.CollectorMetrics`` provides them)."""

    def set_outbox(self, counts: Mapping[str, int]) -> None: ...


@dataclass(frozen=True)
class Sender:
    """How one kind of notice is sent: ``deliver(entry)`` blocks and raises on failure
    (run on a thread); ``outcome(entry, error, at_ms)`` gives the ticket events that
    record the delivery (error None) or its first failure, written with the mark;
    ``audit(entry, error, at_ms)`` likewise the audit entries. ``still_due(entry,
    now_ms)``, if given, is awaited before each attempt: None to send, else why the
    notice is moot (it is then cancelled, not sent)."""

    deliver: Callable[[OutboxEntry], None]
    outcome: Callable[[OutboxEntry, str | None, int], Sequence[Any]] = lambda *_: ()
    audit: Callable[[OutboxEntry, str | None, int], Sequence[OutboxAudit]] = lambda *_: ()
    still_due: Callable[[OutboxEntry, int], Awaitable[str | None]] | None = None


async def enqueue(db: OutboxDb, notices: Sequence[Notice], at_ms: int) -> int:
    """Store ``notices`` for sending (those already stored are left as they are);
    how many were new. Use the store's ``enqueue_in`` inside a store method instead
    when the notice must commit together with a state change."""
    if not notices:
        return 0
    return await db.call(db.store.enqueue_notices, list(notices), at_ms)


class Outbox:
    """Sends stored notices through one ``Sender`` per kind (call on the leader only)."""

    def __init__(
        self,
        db: OutboxDb,
        holder: str,
        metrics: OutboxMetrics | None = None,
        hold_ms: int = CLAIM_MS,
    ) -> None:
        self._db = db
        self.holder = holder
        self._metrics = metrics
        self._hold_ms = hold_ms
        self._senders: dict[str, Sender] = {}
        # kind -> the earliest time a notice of it this process stored or saw fail may
        # be due ("may_have_due"); notices stored by other processes are found by the
        # leader's sweep of every kind each cycle
        self._hint_ms: dict[str, int] = {}

    def register(self, kind: str, sender: Sender) -> None:
        """Send notices of ``kind`` through ``sender`` (one sender per kind)."""
        if kind in self._senders:
            raise ValueError(f"notices of kind {kind!r} already have a sender")
        self._senders[kind] = sender

    async def enqueue(self, notices: Sequence[Notice], at_ms: int) -> int:
        """``enqueue`` through this outbox's store."""
        added = await enqueue(self._db, notices, at_ms)
        if added:
            for notice in notices:
                self._hint(notice.kind, at_ms)
        return added

    def may_have_due(self, kind: str, now_ms: int) -> bool:
        """Whether a notice of ``kind`` that this process stored, or saw fail, may be
        due at ``now_ms`` (a cheap check that saves a store round trip per cycle)."""
        hint = self._hint_ms.get(kind)
        return hint is not None and hint <= now_ms

    def _hint(self, kind: str, at_ms: int) -> None:
        self._hint_ms[kind] = min(at_ms, self._hint_ms.get(kind, at_ms))

    async def send_due(self, now_ms: int, kinds: Collection[str] | None = None) -> int:
        """Send every due notice of ``kinds`` (default: every registered kind), oldest
        first, at most ``SEND_LIMIT``; how many were delivered."""
        chosen = sorted(self._senders if kinds is None else kinds)
        unknown = [kind for kind in chosen if kind not in self._senders]
        if unknown:
            raise ValueError(f"no sender registered for notices of kind {unknown[0]!r}")
        for kind in chosen:
            self._hint_ms.pop(kind, None)
        delivered = 0
        for _ in range(SEND_LIMIT):
            entry = await self._db.call(
                self._db.store.claim_notice, chosen, self.holder, now_ms, self._hold_ms
            )
            if entry is None:
                break
            delivered += await self._send(entry, now_ms) is None
        else:
            for kind in chosen:  # the limit was reached: more may be due now
                self._hint(kind, now_ms)
        await self.refresh_metrics()
        return delivered

    async def send_now(self, notice: Notice, now_ms: int) -> str | None:
        """Store ``notice`` (if new) and send it at once, whatever its backoff: None once
        it is delivered (now or before: nothing is sent twice), else why not (the
        notice stays pending; ``send_due`` retries it)."""
        if notice.kind not in self._senders:
            raise ValueError(f"no sender registered for notices of kind {notice.kind!r}")
        await self.enqueue([notice], now_ms)
        entry = await self._db.call(
            self._db.store.claim_named_notice, notice.dedup, self.holder, now_ms, self._hold_ms
        )
        if entry is None:  # pragma: no cover - stored just above, never deleted
            raise AssertionError(f"notice {notice.dedup} vanished from the outbox")
        if entry.state == "sent":
            return None
        if entry.state == "cancelled":
            return f"cancelled: {entry.last_error}"
        if entry.claimed_by != self.holder:
            return f"being sent by {entry.claimed_by} (the outbox retries it)"
        return await self._send(entry, now_ms)

    async def refresh_metrics(self) -> None:
        """Set the outbox gauges from the store."""
        if self._metrics is not None:
            self._metrics.set_outbox(await self._db.call(self._db.store.outbox_counts))

    async def _send(self, entry: OutboxEntry, now_ms: int) -> str | None:
        """Send a claimed notice and mark it; None if delivered, else the error (or why
        it was cancelled)."""
        sender = self._senders[entry.notice.kind]
        if sender.still_due is not None:
            moot = await sender.still_due(entry, now_ms)
            if moot is not None:
                log.info("notice %d (%s) cancelled: %s", entry.id, entry.notice.dedup, moot)
                await self._db.call(self._db.store.notice_cancelled, entry.id, moot, now_ms)
                return f"cancelled: {moot}"
        try:
            await asyncio.to_thread(sender.deliver, entry)
        except Exception as exc:  # delivery errors are recorded and retried, never fatal
            error = str(exc) or type(exc).__name__
            failures = entry.attempts + 1
            first = entry.attempts == 0  # the first failure is recorded, not every retry
            events = sender.outcome(entry, error, now_ms) if first else ()
            audits = sender.audit(entry, error, now_ms) if first else ()
            retry_at = now_ms + retry_delay_ms(failures)
            self._hint(entry.notice.kind, retry_at)
            log.warning(
                "notice %d (%s) failed (attempt %d, next in %d s): %s",
                entry.id,
                entry.notice.dedup,
                failures,
                (retry_at - now_ms) // 1000,
                error,
            )
            await self._db.call(
                self._db.store.notice_failed, entry.id, error, retry_at, events, audits
            )
            return error
        events = sender.outcome(entry, None, now_ms)
        audits = sender.audit(entry, None, now_ms)
        await self._db.call(self._db.store.notice_sent, entry.id, now_ms, events, audits)
        return None
