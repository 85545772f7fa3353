"""Runs waiting for approval on this host, described for ``aftercare-agent approve``.

While a run waits, the agent writes ``<state dir>/waiting-runs/<RUN_ID>.json``
(directory 0700, file 0600): the playbook, its version, mode and description, the
digest of the playbook file, every parameter (secret values as ``***``), who asked,
the ticket, and the **binding** - the SHA-256 of exactly what is approved
(``run_binding``). ``aftercare-agent approve`` shows this and records an approval
bound to it, so an approval given on the host counts only for this playbook,
version and these parameter values. Only the agent writes these files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.playbook.approvals import valid_run_id
from agent.playbook.errors import ApprovalError
from common.approval_format import RunSubject, canonical
from common.atomic import write_atomic

__all__ = ["WAITING_DIR", "WaitingRun", "WaitingRuns", "run_binding"]

WAITING_DIR = "waiting-runs"


def run_binding(subject: RunSubject) -> str:
    """SHA-256 (hex) of the canonical run subject: what a local approval binds."""
    return hashlib.sha256(canonical(subject.to_json())).hexdigest()


@dataclass(frozen=True)
class WaitingRun:
    """What ``aftercare-agent approve`` shows before approving."""

    run_id: str
    playbook: str
    version: str
    mode: str
    description: str
    digest: str
    params: Mapping[str, str] = field(default_factory=dict)  # secret values as "***"
    requested_by: str = ""
    ticket_id: int = 0
    binding: str = ""


class WaitingRuns:
    """The waiting-run descriptions under ``<state dir>/waiting-runs``."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / WAITING_DIR

    def add(self, run: WaitingRun) -> None:
        """Describe ``run`` (raises ApprovalError if it cannot be written)."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            data = json.dumps(asdict(run), indent=2, sort_keys=True).encode("utf-8")
            write_atomic(self._path(run.run_id), data)
        except OSError as exc:
            raise ApprovalError(f"cannot describe waiting run {run.run_id}: {exc}") from exc

    def remove(self, run_id: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self._path(run_id))

    def get(self, run_id: str) -> WaitingRun | None:
        """The description of ``run_id``, or None if it does not wait (or is unreadable)."""
        if not valid_run_id(run_id):
            return None
        try:
            record = json.loads(self._path(run_id).read_bytes())
            return WaitingRun(**record)
        except (OSError, ValueError, TypeError):
            return None

    def _path(self, run_id: str) -> Path:
        return self.directory / f"{run_id}.json"
