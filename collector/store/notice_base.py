"""What the customer notices of approvals read from the store (collector/notices/).

Contracts (every backend):
- ``runs_waiting_approval(limit)``: runs the agent reported as waiting for the
  customer's approval (state ``waiting_approval``) that nobody approved through the
  collector yet, oldest first.
"""

from __future__ import annotations

from typing import Protocol

from collector.runs.model import RunRecord

__all__ = ["NoticeStore"]


class NoticeStore(Protocol):
    """Store reads for the approval notices (every backend implements them)."""

    def runs_waiting_approval(self, limit: int) -> list[RunRecord]:
        """Runs waiting for the customer's approval and not approved yet, oldest first."""
        ...
