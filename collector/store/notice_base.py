"""What the customer notices of approvals read from the store (collector/notices/).

Contracts (every backend):
- ``runs_waiting_approval(customers, since_ms, limit)``: runs of ``customers``
  requested at ``since_ms`` or later that the agent reported as waiting for the
  customer's approval (state ``waiting_approval``) and nobody approved through the
  collector yet, oldest first -- read by a range of the (customer, requested_ms)
  index, so its cost follows the recent runs of those customers, not the table.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from collector.runs.model import RunRecord

__all__ = ["NoticeStore"]


class NoticeStore(Protocol):
    """Store reads for the approval notices (every backend implements them)."""

    def runs_waiting_approval(
        self, customers: Collection[str], since_ms: int, limit: int
    ) -> list[RunRecord]:
        """Runs of ``customers`` requested since ``since_ms`` waiting for the customer's
        approval and not approved yet, oldest first."""
        ...
