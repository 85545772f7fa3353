"""Sends signed audit checkpoints to connected agents, which witness them.

After the hello of an agent that witnesses (capability ``audit-witness``) the
collector sends the current checkpoint with the proof from the count the agent holds;
then, every ``interval`` seconds when the log grew, to every such connected agent.
The agent answers with an AuditWitness (what it holds, and why it refused, if it
did); a refusal is logged as a warning here. The only place audit checkpoints meet
protobuf.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from collector.audit_checkpoint import AuditKey
from collector.audit_ledger import AuditLedger, LedgerBroken, Offer
from collector.server.streams import Streams
from collector.store.writer import StoreThread
from proto import agent_pb2

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_SECONDS = 30.0
READ_CHUNK = 10_000


class AuditCheckpoints:
    """The ledger of the store's audit log, kept current, and what agents hold."""

    def __init__(
        self,
        db: StoreThread,
        key: AuditKey,
        streams: Streams,
        clock_ms: Callable[[], int],
        interval: float = CHECKPOINT_INTERVAL_SECONDS,
    ) -> None:
        self._db = db
        self._key = key
        self._streams = streams
        self._clock_ms = clock_ms
        self._interval = interval
        self.ledger = AuditLedger()
        self._held: dict[str, int] = {}  # agent id -> the count it said it holds
        self._broken = ""  # why checkpoints stopped (the log changed underneath)

    async def refresh(self) -> int:
        """Fold in entries appended since the last call; returns how many."""
        added = 0
        while not self._broken:
            rows = await self._db.call(self._db.store.audit_hashes, self.ledger.count, READ_CHUNK)
            try:
                added += self.ledger.extend(rows)
            except LedgerBroken as exc:
                self._broken = str(exc)
                log.error("audit checkpoints stopped: %s", exc)
            if len(rows) < READ_CHUNK:
                break
        return added

    async def agent_connected(self, agent_id: str, count: int, head: str) -> None:
        """The agent's hello said it holds ``count``/``head``: send what extends it."""
        await self.refresh()
        self._held[agent_id] = count
        if 0 < count <= self.ledger.count:
            rows = await self._db.call(self._db.store.audit_hashes, count - 1, 1)
            if not rows or rows[0][2] != head:
                log.warning(
                    "agent %s witnessed audit entry %d with head %s, which this collector's "
                    "log does not contain: the audit log was cut or rewritten",
                    agent_id,
                    count,
                    head[:16],
                )
        elif count > self.ledger.count:
            log.warning(
                "agent %s witnessed %d audit entries, this collector's log has %d: "
                "the audit log was cut",
                agent_id,
                count,
                self.ledger.count,
            )
        await self._send(agent_id)

    def agent_disconnected(self, agent_id: str) -> None:
        self._held.pop(agent_id, None)

    def on_witness(self, agent_id: str, witness: agent_pb2.AuditWitness) -> None:
        """Remember what the agent holds; log its refusal."""
        self._held[agent_id] = witness.count
        if witness.refused:
            log.warning(
                "agent %s refused the audit checkpoint (it holds %d entries, head %s): %s",
                agent_id,
                witness.count,
                witness.head[:16],
                witness.refused,
            )

    async def run_forever(self) -> None:
        """Every interval, if the log grew, send the new checkpoint to every agent."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                if await self.refresh():
                    for agent_id in list(self._held):
                        await self._send(agent_id)
            except Exception:  # one failed round must not stop checkpoints for good
                log.exception("sending audit checkpoints failed; retrying next interval")

    async def _send(self, agent_id: str) -> None:
        if self._broken or not self._streams.connected(agent_id):
            return
        held = self._held.get(agent_id, 0)
        try:
            offers = await self._db.call(self.ledger.offers, held, self._read_hashes)
        except LedgerBroken as exc:
            self._broken = str(exc)
            log.error("audit checkpoints stopped: %s", exc)
            return
        for offer in offers:
            self._streams.send(agent_id, self._message(offer))

    def _read_hashes(self, after_id: int, limit: int) -> list[bytes]:
        """Raw entry hashes (runs on the store thread)."""
        hashes: list[bytes] = []
        while len(hashes) < limit:
            rows = self._db.store.audit_hashes(
                after_id + len(hashes), min(READ_CHUNK, limit - len(hashes))
            )
            hashes.extend(bytes.fromhex(row[2]) for row in rows)
            if len(rows) < READ_CHUNK:
                break
        return hashes

    def _message(self, offer: Offer) -> agent_pb2.CollectorMessage:
        signed = self._key.sign(offer.count, offer.head, offer.accumulator, self._clock_ms())
        return agent_pb2.CollectorMessage(
            audit_checkpoint=agent_pb2.AuditCheckpoint(
                checkpoint=signed.checkpoint.encode(),
                signature=signed.signature,
                proof_from=offer.proof_from,
                proof=list(offer.proof),
            )
        )
