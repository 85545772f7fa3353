"""What the customer notices of approvals read from the store (collector/notices/).

Contracts (every backend):
- ``audit_targets(action, after_id, limit)``: the id and target of the audit entries
  with that action after ``after_id``, oldest first, at most ``limit`` -- read by
  primary key range, so following the log from a watermark costs only the new rows.
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

    def audit_targets(self, action: str, after_id: int, limit: int) -> list[tuple[int, str]]:
        """(id, target) of the audit entries with ``action`` and an id above ``after_id``."""
        ...

    def runs_waiting_approval(self, limit: int) -> list[RunRecord]:
        """Runs waiting for the customer's approval and not approved yet, oldest first."""
        ...
