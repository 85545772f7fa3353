"""The audit chain's running accumulator, and the checkpoints and proofs sent to agents.

Pure (no SQL, no gRPC): the owner feeds it ``(id, prev_hash, hash)`` rows as the log
grows and passes a ``read_hashes(after_id, limit)`` callable for proofs. It remembers
the accumulator at every multiple of ``MAX_PROOF`` entries, so a witness far behind
gets intermediate checkpoints, each with at most ``MAX_PROOF`` hashes of proof.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from collector.errors import CollectorError
from common.audit_checkpoint import GENESIS, MAX_PROOF, fold

__all__ = ["AuditLedger", "LedgerBroken", "Offer"]

ReadHashes = Callable[[int, int], list[bytes]]
"""``read_hashes(after_id, limit)``: raw hashes of entries after_id+1 .. after_id+limit."""


class LedgerBroken(CollectorError):
    """The stored log no longer chains onto what the ledger folded (changed underneath)."""


@dataclass(frozen=True)
class Offer:
    """A checkpoint to sign (count, head, accumulator) and the proof that it extends
    the witness's count ``proof_from``."""

    count: int
    head: str
    accumulator: str
    proof_from: int
    proof: tuple[bytes, ...]


class AuditLedger:
    """Count, head and accumulator of the log as folded so far."""

    def __init__(self, step: int = MAX_PROOF) -> None:
        self.step = step
        self._state = (0, GENESIS, GENESIS)  # count, head, accumulator: replaced at once
        self._marks: dict[int, str] = {0: GENESIS}  # count (multiple of step) -> accumulator

    @property
    def count(self) -> int:
        return self._state[0]

    @property
    def head(self) -> str:
        return self._state[1]

    @property
    def accumulator(self) -> str:
        return self._state[2]

    def extend(self, rows: Iterable[tuple[int, str, str]]) -> int:
        """Fold in the next entries; returns how many. Raises LedgerBroken on an id gap
        or a ``prev_hash`` that is not the current head."""
        added = 0
        for entry_id, prev_hash, digest in rows:
            if entry_id != self.count + 1 or prev_hash != self.head:
                raise LedgerBroken(
                    f"audit entry {entry_id} does not follow entry {self.count} "
                    f"(head {self.head[:12]}): the log changed under the running collector"
                )
            accumulator = fold(self.accumulator, [bytes.fromhex(digest)])
            if entry_id % self.step == 0:
                self._marks[entry_id] = accumulator
            self._state = (entry_id, digest, accumulator)
            added += 1
        return added

    def offers(self, held_count: int, read_hashes: ReadHashes) -> list[Offer]:
        """What to send a witness holding ``held_count`` entries: one offer if it holds
        none, the current count or more (it will refuse a shorter log), else steps of at
        most ``step`` hashes ending at multiples of ``step`` and then the current count.
        Safe to call from another thread than ``extend``'s (it reads one snapshot)."""
        count, head, accumulator = self._state
        if held_count == 0 or held_count >= count:
            return [Offer(count, head, accumulator, held_count, ())]
        offers: list[Offer] = []
        start = held_count
        while start < count:
            end = min(count, (start // self.step + 1) * self.step)
            proof = tuple(read_hashes(start, end - start))
            if len(proof) != end - start:
                raise LedgerBroken(
                    f"entries {start + 1}..{end} are no longer in the store: the log "
                    "changed under the running collector"
                )
            acc = accumulator if end == count else self._marks[end]
            offers.append(Offer(end, proof[-1].hex(), acc, start, proof))
            start = end
        return offers
