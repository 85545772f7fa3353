"""The lease aggregate of the store: named leases that elect one leader among replicas.

Contract (every backend): ``claim_lease`` is atomic -- of any number of concurrent
claimants of one lease name, at most one holds it at any instant. A claim succeeds when
the lease is free, expired (``expires_ms <= now_ms``) or already held by the claimant
(a renewal); it then holds the lease until ``now_ms + ttl_ms``. ``release_lease`` gives a
lease up at once (a clean shutdown hands over without waiting for expiry); releasing a
lease one does not hold changes nothing.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["LeaseStore"]


class LeaseStore(Protocol):
    """Leases (leader election) of the store."""

    def claim_lease(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        """Take or renew lease ``name`` for ``holder`` until ``now_ms + ttl_ms``; True if held."""
        ...

    def release_lease(self, name: str, holder: str) -> None:
        """Give lease ``name`` up if ``holder`` holds it."""
        ...
