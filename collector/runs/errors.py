"""Errors of playbook runs (part of the collector's exception tree, collector.errors)."""

from __future__ import annotations

from collector.errors import NotFound

__all__ = ["UnknownRun"]


class UnknownRun(NotFound):
    """No playbook run with this id exists."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"unknown run {run_id!r}; list runs to find its id")
