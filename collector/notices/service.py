"""The approval notices' duty in the evaluation cycle (the leader runs it), and their
sender on the collector's outbox (docs/notices.md, docs/notifications-outbox.md).

Each cycle ``ApprovalNotices.tick`` reads the pending session requests and the runs
waiting for approval (of the last ``STALE_RUN_MS``: an older unfinished run is failed
as stale), works out the due notices (approvals.py) for the customers that have
contacts (``customer_notices.customers`` in the tickets config), in each
customer's language (``aftercare customer settings C --language``; else zh-CN), and
stores them in the outbox (kind ``approval``, ``dedup`` the notice's key): a notice is
stored once, so it is sent once across cycles, restarts and leader hand-overs.

The outbox sends them with the other notices (retries with backoff, delivery id,
``aftercare-collector outbox``). Before each attempt the sender checks that the
session or run still waits for the customer (and the recipient is still one of the
customer's contacts); a notice for one approved, denied or expired meanwhile is
cancelled, not sent. A delivery is recorded in the audit log
(``customer.notice_sent``, target the notice's key) in the transaction that marks it
sent; the first failure likewise (``customer.notice_failed``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from collector.inspections.notify import Deliver
from collector.notice_texts import language_of
from collector.notices.approvals import (
    SESSION_EVENT,
    CustomerNotice,
    run_notices,
    run_waits,
    session_notices,
    session_waits,
)
from collector.outbox import Notice, Outbox, OutboxAudit, OutboxEntry, Sender
from collector.runs.service import STALE_RUN_MS
from collector.store.writer import StoreThread
from collector.tickets.escalation import Channel, Recipient

__all__ = ["FAILED_ACTION", "NOTICE_KIND", "SENT_ACTION", "ApprovalNotices"]

log = logging.getLogger(__name__)

NOTICE_KIND = "approval"  # the outbox kind of approval notices
SENT_ACTION = "customer.notice_sent"
FAILED_ACTION = "customer.notice_failed"
SCAN_LIMIT = 10_000  # pending sessions / waiting runs looked at per cycle


class NoticeMetrics(Protocol):
    """collector.metrics.CollectorMetrics provides it."""

    def notification(self, channel: str, ok: bool) -> None: ...


class ApprovalNotices:
    """Tells customers what waits for their approval; see the module docstring."""

    def __init__(
        self,
        db: StoreThread,
        contacts: Mapping[str, tuple[Recipient, ...]],
        outbox: Outbox,
        deliver: Deliver,
        metrics: NoticeMetrics,
        link_base: str = "",
    ) -> None:
        """Registers the sender of kind ``approval`` on ``outbox`` (whose ``send_due``
        sends them: the leader's cycle)."""
        self._db = db
        self._store = db.store
        self._contacts = contacts
        self._outbox = outbox
        self._deliver = deliver
        self._metrics = metrics
        self._link_base = link_base  # ServeConfig.link_base(): the portal, else CLI commands
        self._stored: set[str] = set()  # keys this process stored, of things still waiting
        sender = Sender(self._deliver_entry, audit=self._audit, still_due=self._still_due)
        outbox.register(NOTICE_KIND, sender)

    async def tick(self, now_ms: int) -> None:
        """Store every due notice in the outbox (once: see the module docstring)."""
        if not self._contacts:
            return
        due = await self._due(now_ms)
        if due:
            await self._outbox.enqueue([_outbox_notice(n) for n in due], now_ms)
            self._stored.update(notice.key for notice in due)

    async def _due(self, now_ms: int) -> list[CustomerNotice]:
        sessions = await self._db.call(
            self._store.list_sessions, None, None, {"pending"}, SCAN_LIMIT
        )
        runs = await self._db.call(
            self._store.runs_waiting_approval,
            list(self._contacts),
            now_ms - STALE_RUN_MS,
            SCAN_LIMIT,
        )
        languages: dict[str, str] = {}
        due: list[CustomerNotice] = []
        waiting: set[str] = set()
        for session in sessions:
            recipients = self._contacts.get(session.customer, ())
            if recipients:
                waiting.add(f"notice:session:{session.session_id}/")
                language = await self._language(session.customer, languages)
                due += session_notices(
                    session, recipients, language, self._link_base, self._stored, now_ms
                )
        for run in runs:
            recipients = self._contacts.get(run.customer, ())
            if recipients:
                waiting.add(f"notice:run:{run.run_id}/")
                language = await self._language(run.customer, languages)
                due += run_notices(run, recipients, language, self._link_base, self._stored, now_ms)
        # keys of what no longer waits are never due again: keep memory bounded
        self._stored = {key for key in self._stored if key.partition("/")[0] + "/" in waiting}
        return due

    async def _language(self, customer: str, known: dict[str, str]) -> str:
        if customer not in known:
            setting = await self._db.call(self._store.customer_language, customer)
            known[customer] = language_of(setting)
        return known[customer]

    # -- the outbox's sender ----------------------------------------------------------------

    async def _still_due(self, entry: OutboxEntry, now_ms: int) -> str | None:
        """None while the notice's session or run waits for the customer and its
        recipient is still one of the customer's contacts, else why not."""
        notice = entry.notice
        about, the_id = notice.meta.get("about"), str(notice.meta.get("id"))
        channel: Channel = "email" if notice.channel == "email" else "webhook"
        contacts = self._contacts.get(str(notice.meta.get("customer")), ())
        if Recipient(channel, notice.target) not in contacts:
            return f"{notice.target_label} is no longer a contact of the customer"
        if about == "session":
            session = await self._db.call(self._store.get_session, the_id)
            if session is None:
                return f"session {the_id} no longer exists"
            if not session_waits(session, now_ms):
                return f"session {the_id} no longer waits for approval ({session.state})"
            return None
        if about == "run":
            run = await self._db.call(self._store.get_run, the_id)
            if run is None:
                return f"run {the_id} no longer exists"
            if not run_waits(run):
                return f"run {the_id} no longer waits for approval ({run.state})"
            return None
        return f"an approval notice about {about!r}, which is neither a session nor a run"

    def _deliver_entry(self, entry: OutboxEntry) -> None:
        """Send one stored notice (on a thread) with its delivery id; raises DeliveryError."""
        notice = entry.notice
        channel: Channel = "email" if notice.channel == "email" else "webhook"
        recipient = Recipient(channel, notice.target, delivery_id=entry.delivery_id)
        try:
            self._deliver(recipient, notice.subject, notice.payload, notice.body)
        except Exception:
            self._metrics.notification(channel, False)
            raise
        self._metrics.notification(channel, True)

    def _audit(self, entry: OutboxEntry, error: str | None, at_ms: int) -> Sequence[OutboxAudit]:
        """The audit entry of a delivery (or of the first failure)."""
        notice = entry.notice
        details: dict[str, Any] = {
            **notice.meta,
            "channel": notice.channel,
            "target": notice.target_label,
            "language": notice.payload.get("language", ""),
            "link": notice.payload.get("link", ""),
            "delivery_id": entry.delivery_id,
        }
        if error is None:
            return [OutboxAudit(SENT_ACTION, notice.dedup, details, at_ms)]
        return [OutboxAudit(FAILED_ACTION, notice.dedup, {**details, "error": error}, at_ms)]


def _outbox_notice(notice: CustomerNotice) -> Notice:
    """``notice`` as the outbox stores it (``meta`` says what it is about)."""
    recipient = notice.recipient
    return Notice(
        kind=NOTICE_KIND,
        dedup=notice.key,
        channel=recipient.channel,
        target=recipient.target,
        subject=notice.subject,
        payload=notice.payload,
        body=notice.text,
        target_label=recipient.label,
        meta={
            "customer": notice.customer,
            "event": notice.event,
            "about": "session" if notice.event == SESSION_EVENT else "run",
            "id": notice.about,
        },
    )
