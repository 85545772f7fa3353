"""The customer's own record on the host: ``sessions.log`` and ``runs.log`` in the state dir.

One JSON object per line (``{"time": ISO, "event": ..., ...}``), appended, mode
0600. ``sessions.log``: tunnels opened, refused and ended (with the reason),
channels opened (kind, command, recording) and closed (bytes each way, exit).
``runs.log``: playbook runs received, refused (with the reason), waiting for
approval, approved (by whom, how), started and finished, and approvals refused.
The collector keeps its own audit log; these stay with the customer. A journal
that cannot be written is logged as an error but never stops work.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from pathlib import Path

from common.clock import Clock

__all__ = ["RUNS_JOURNAL_FILE", "SESSIONS_JOURNAL_FILE", "Journal"]

log = logging.getLogger(__name__)

SESSIONS_JOURNAL_FILE = "sessions.log"
RUNS_JOURNAL_FILE = "runs.log"


class Journal:
    """Appends events to ``path``; ``clock`` is Unix seconds."""

    def __init__(self, path: Path, clock: Clock = time.time) -> None:
        self.path = path
        self._clock = clock

    def write(self, event: str, **fields: object) -> None:
        """Append one event line (errors are logged, not raised)."""
        moment = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        record = {"time": moment.isoformat(timespec="milliseconds"), "event": event, **fields}
        line = json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("cannot write the journal %s: %s", self.path, exc)
