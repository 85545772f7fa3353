"""Leader election among collector replicas: which replica runs the once-only work.

Rule evaluation, SLA ticks, escalations, expiry, notifications and inspection
scheduling must run exactly once across replicas sharing one database. Each replica
asks ``Leadership.check`` before a cycle of that work; it holds a named lease in the
store (``LeaseStore.claim_lease``: atomic, at most one holder) and renews it every
cycle. A dead leader stops renewing; its lease expires after ``ttl_ms`` and the next
replica that checks takes it -- with ``ttl_ms`` below two evaluation intervals the
hand-over happens within one interval of the expiry. A replica that fails to renew
(its lease taken, or the store unreachable) stops leading at once, and a leader never
trusts a claim older than its lease, so two replicas never both act in one instant
as long as their clocks agree within ``ttl_ms`` minus an interval.

With SQLite there is one process, which always wins its claim: unchanged behaviour.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Callable

from collector.errors import StoreError
from collector.store.lease_base import LeaseStore

__all__ = ["EVALUATION_LEASE", "Leadership", "replica_id"]

# The lease of the rule evaluation loop (and everything it drives).
EVALUATION_LEASE = "evaluation"


def replica_id() -> str:
    """A name for this process that no other replica shares: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Leadership:
    """Whether this replica leads, per named lease, decided by claims in the store."""

    def __init__(
        self, store: LeaseStore, holder: str, ttl_ms: int, clock: Callable[[], int]
    ) -> None:
        """``clock`` returns epoch milliseconds; ``ttl_ms`` is how long a claim lasts."""
        if ttl_ms <= 0:
            raise ValueError(f"a lease's time to live must be positive, not {ttl_ms} ms")
        self.store = store
        self.holder = holder
        self.ttl_ms = ttl_ms
        self.clock = clock
        self._leading: set[str] = set()

    def check(self, lease: str = EVALUATION_LEASE) -> bool:
        """Take or renew ``lease``; True if this replica leads for the next ``ttl_ms``.

        A store error counts as not leading (the caller skips its once-only work).
        """
        try:
            held = self.store.claim_lease(lease, self.holder, self.clock(), self.ttl_ms)
        except StoreError:
            held = False
        if held:
            self._leading.add(lease)
        else:
            self._leading.discard(lease)
        return held

    def leads(self, lease: str = EVALUATION_LEASE) -> bool:
        """The outcome of the last ``check`` of ``lease`` (False before any)."""
        return lease in self._leading

    def resign(self) -> None:
        """Give every held lease up (a clean stop hands over without waiting for expiry)."""
        for lease in sorted(self._leading):
            with contextlib.suppress(StoreError):  # if it fails, the lease expires on its own
                self.store.release_lease(lease, self.holder)
        self._leading.clear()
