"""Approvals given on the host itself (``aftercare-agent approve RUN_ID [--for 1h]``).

Where the customer's policy lets approvals count locally (``approval = "local"`` or
``"either"``), a run waiting for approval may start once someone with root on the
host has approved *that run*. ``ApprovalBook`` keeps those approvals as small JSON
files ``<state dir>/approvals/<RUN_ID>`` (directory 0700, files 0600, written
atomically), each naming its run id, an expiry (Unix seconds), who approved, and
the **binding**: what exactly was approved (for a run, the digest of its playbook,
version and parameters; for a session, the engineer), so that a collector cannot
reuse the id for something else.

``approval(run_id, now, binding)`` counts only a file of exactly that run id whose
recorded run id and binding match and whose expiry is still ahead of ``now``;
anything else - another run's approval, an expired one, an unreadable,
foreign-owned or group/world-writable file - does not count. Run ids are restricted
to ``[A-Za-z0-9][A-Za-z0-9._-]*`` (max 128), so they can never name another path.
Clocks are passed in (``now``), so tests need no waiting.

The same book, in its own directory (``<state dir>/session-approvals``), keeps the
approvals of remote sessions given with ``aftercare-agent approve-session``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from agent.playbook.errors import ApprovalError
from common.atomic import write_atomic

__all__ = ["APPROVALS_DIR", "ApprovalBook", "LocalApproval", "valid_run_id"]

APPROVALS_DIR = "approvals"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def valid_run_id(run_id: str) -> bool:
    """Whether ``run_id`` can name an approval file (no path separators, no dot-dot)."""
    return bool(_RUN_ID.fullmatch(run_id)) and ".." not in run_id


@dataclass(frozen=True)
class LocalApproval:
    """One recorded approval: of ``run_id``, until ``until`` (Unix seconds), given ``by``."""

    run_id: str
    until: float
    by: str
    binding: str = ""


class ApprovalBook:
    """Local approvals under ``directory`` (usually ``<state dir>/approvals``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def approve(self, run_id: str, until: float, *, by: str = "", binding: str = "") -> Path:
        """Record that ``run_id`` (exactly ``binding``) may run until ``until`` (Unix s)."""
        self._check(run_id)
        record = {"run_id": run_id, "until": float(until), "by": by, "binding": binding}
        path = self.directory / run_id
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(path, json.dumps(record).encode("utf-8"))
        except OSError as exc:
            raise ApprovalError(f"cannot record the approval in {self.directory}: {exc}") from exc
        return path

    def is_approved(self, run_id: str, now: float, binding: str | None = None) -> bool:
        """True only for an approval of exactly ``run_id`` that counts at ``now``."""
        return self.approval(run_id, now, binding) is not None

    def approval(self, run_id: str, now: float, binding: str | None = None) -> LocalApproval | None:
        """The approval of exactly ``run_id`` (and ``binding``, unless None) at ``now``."""
        if not valid_run_id(run_id):
            return None
        found = self._load(self.directory / run_id, run_id)
        if found is None or now >= found.until:
            return None
        return found if binding is None or found.binding == binding else None

    def revoke(self, run_id: str) -> bool:
        """Remove ``run_id``'s approval; False if there was none."""
        self._check(run_id)
        try:
            (self.directory / run_id).unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ApprovalError(f"cannot remove the approval of {run_id}: {exc}") from exc
        return True

    def prune(self, now: float) -> int:
        """Delete expired or unreadable approvals; returns how many were removed."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise ApprovalError(f"cannot list {self.directory}: {exc}") from exc
        removed = 0
        for name in names:
            found = self._load(self.directory / name, name) if valid_run_id(name) else None
            if found is None or found.until <= now:
                with contextlib.suppress(OSError):
                    (self.directory / name).unlink()
                    removed += 1
        return removed

    @staticmethod
    def _check(run_id: str) -> None:
        if not valid_run_id(run_id):
            raise ApprovalError(
                f"{run_id!r} is not a run id (letters, digits, '.', '_', '-'; at most 128)"
            )

    @staticmethod
    def _load(path: Path, run_id: str) -> LocalApproval | None:
        """The approval recorded in ``path`` if it is a trustworthy approval of ``run_id``."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as file:
                info = os.fstat(file.fileno())
                data = file.read(4096)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        if info.st_uid not in (0, os.geteuid()):
            return None
        try:
            record = json.loads(data)
        except ValueError:
            return None
        if not isinstance(record, dict) or record.get("run_id") != run_id:
            return None
        until, by, binding = record.get("until"), record.get("by", ""), record.get("binding", "")
        if isinstance(until, bool) or not isinstance(until, int | float):
            return None
        if not isinstance(by, str) or not isinstance(binding, str):
            return None
        return LocalApproval(run_id, float(until), by, binding)
