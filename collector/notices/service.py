"""The approval notices' duty in the evaluation cycle (the leader runs it).

Each cycle ``ApprovalNotices.tick`` reads the pending session requests and the runs
waiting for approval, works out the due notices (approvals.py) for the customers that
have contacts (``customer_notices.customers`` in the tickets config), in each
customer's language (``aftercare customer settings C --language``; else zh-CN), and
hands each to ``send_notice``.

``send_notice`` is the one place a notice leaves: it delivers, then appends the audit
entry ``customer.notice_sent`` whose target is the notice's key. That entry is the
record that it was sent: the service follows the audit log from a watermark (by id),
so a notice is sent once across cycles, restarts and leader hand-overs. The one
window left open: the collector dying between the delivery and the audit append sends
that notice again from the next leader, with the same ``key`` in the payload.
A failed delivery is audited once (``customer.notice_failed``) and retried every
minute while the thing still waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from collector.notice_texts import language_of
from collector.notices.approvals import CustomerNotice, run_notices, session_notices
from collector.notify.errors import DeliveryError
from collector.store.writer import StoreThread
from collector.tickets.escalation import Recipient

__all__ = ["FAILED_ACTION", "SENT_ACTION", "ApprovalNotices", "Deliver", "send_notice"]

log = logging.getLogger(__name__)

SENT_ACTION = "customer.notice_sent"
FAILED_ACTION = "customer.notice_failed"
RETRY_FAILED_MS = 60_000
SCAN_LIMIT = 10_000  # pending sessions / waiting runs looked at per cycle
READ_BATCH = 5_000  # audit rows read per query while catching up

Deliver = Callable[[Recipient, str, Mapping[str, Any], str], None]  # inspections.notify


class NoticeMetrics(Protocol):
    """collector.metrics.CollectorMetrics provides it."""

    def notification(self, channel: str, ok: bool) -> None: ...


async def send_notice(
    db: StoreThread, deliver: Deliver, notice: CustomerNotice, now_ms: int
) -> None:
    """Deliver ``notice`` (blocking deliverer on a thread), then record it as sent in the
    audit log. Raises DeliveryError (nothing recorded) if it was not delivered."""
    recipient = notice.recipient
    await asyncio.to_thread(deliver, recipient, notice.subject, notice.payload, notice.text)
    await db.call(
        db.store.append_audit, "system", SENT_ACTION, notice.key, _details(notice), now_ms
    )


class ApprovalNotices:
    """Tells customers what waits for their approval; see the module docstring."""

    def __init__(
        self,
        db: StoreThread,
        contacts: Mapping[str, tuple[Recipient, ...]],
        deliver: Deliver,
        metrics: NoticeMetrics,
        link_base: str = "",
    ) -> None:
        self._db = db
        self._store = db.store
        self._contacts = contacts
        self._deliver = deliver
        self._metrics = metrics
        self._link_base = link_base  # ServeConfig.link_base(): the portal, else CLI commands
        self._sent: set[str] = set()  # keys recorded in the audit log up to _after_id
        self._after_id = 0
        self._failed: dict[str, int] = {}  # key -> last failed attempt

    async def tick(self, now_ms: int) -> None:
        """Send every due notice once (see the module docstring)."""
        if not self._contacts:
            return
        await self._catch_up()
        due = await self._due(now_ms)
        live = {notice.key for notice in due}
        self._failed = {k: at for k, at in self._failed.items() if k in live}
        for notice in due:
            await self._send(notice, now_ms)

    async def _catch_up(self) -> None:
        """Read the keys recorded since the watermark (other replicas' included)."""
        while True:
            rows = await self._db.call(
                self._store.audit_targets, SENT_ACTION, self._after_id, READ_BATCH
            )
            for entry_id, key in rows:
                self._sent.add(key)
                self._after_id = entry_id
            if len(rows) < READ_BATCH:
                return

    async def _due(self, now_ms: int) -> list[CustomerNotice]:
        sessions = await self._db.call(
            self._store.list_sessions, None, None, {"pending"}, SCAN_LIMIT
        )
        runs = await self._db.call(self._store.runs_waiting_approval, SCAN_LIMIT)
        languages: dict[str, str] = {}
        due: list[CustomerNotice] = []
        waiting: set[str] = set()
        for session in sessions:
            recipients = self._contacts.get(session.customer, ())
            if recipients:
                waiting.add(f"notice:session:{session.session_id}/")
                language = await self._language(session.customer, languages)
                due += session_notices(
                    session, recipients, language, self._link_base, self._sent, now_ms
                )
        for run in runs:
            recipients = self._contacts.get(run.customer, ())
            if recipients:
                waiting.add(f"notice:run:{run.run_id}/")
                language = await self._language(run.customer, languages)
                due += run_notices(run, recipients, language, self._link_base, self._sent, now_ms)
        # keys of what no longer waits are never due again: keep memory bounded
        self._sent = {key for key in self._sent if key.partition("/")[0] + "/" in waiting}
        return due

    async def _language(self, customer: str, known: dict[str, str]) -> str:
        if customer not in known:
            setting = await self._db.call(self._store.customer_language, customer)
            known[customer] = language_of(setting)
        return known[customer]

    async def _send(self, notice: CustomerNotice, now_ms: int) -> None:
        failed_at = self._failed.get(notice.key)
        if failed_at is not None and now_ms - failed_at < RETRY_FAILED_MS:
            return
        try:
            await send_notice(self._db, self._deliver, notice, now_ms)
        except DeliveryError as exc:
            self._metrics.notification(notice.recipient.channel, False)
            self._failed[notice.key] = now_ms
            log.warning("customer notice %s failed: %s", notice.key, exc)
            if failed_at is None:  # audit the first failure, not every retry
                details = {**_details(notice), "error": str(exc)}
                await self._db.call(
                    self._store.append_audit, "system", FAILED_ACTION, notice.key, details, now_ms
                )
            return
        self._failed.pop(notice.key, None)
        self._sent.add(notice.key)
        self._metrics.notification(notice.recipient.channel, True)


def _details(notice: CustomerNotice) -> dict[str, Any]:
    return {
        "customer": notice.customer,
        "event": notice.event,
        "about": notice.about,
        "channel": notice.recipient.channel,
        "target": notice.recipient.label,
        "language": notice.payload.get("language", ""),
        "link": notice.payload.get("link", ""),
    }
