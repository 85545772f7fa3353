"""Group commit of agent batches: the single store writer stores every batch queued by
every stream since its last commit in one transaction (``collector.store.group_call``),
and only then resolves each submitter's future (so an ack still means durable).
"""

from __future__ import annotations

from collector.store import BatchOutcome, IncomingBatch
from collector.store.group_call import GroupCall
from collector.store.writer import StoreThread

__all__ = ["MAX_GROUP_SAMPLES", "GroupCommitter"]

MAX_GROUP_SAMPLES = 100_000  # bound one transaction's size (and the writer's time in it)


class GroupCommitter(GroupCall[IncomingBatch, BatchOutcome]):
    """Agent batches stored in groups (``Store.store_batches``); a failed group gives
    each batch an outcome carrying the error, so each stream ends unacknowledged."""

    def __init__(self, db: StoreThread, max_group_samples: int = MAX_GROUP_SAMPLES) -> None:
        super().__init__(
            db,
            db.store.store_batches,
            "group-commit",
            max_group_samples,
            lambda exc, count: [BatchOutcome(False, error=exc)] * count,
        )
