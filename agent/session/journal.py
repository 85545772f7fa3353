"""The customer's trace of remote sessions on the host: ``<state dir>/sessions.log``.

One JSON object per line (``{"time": ISO, "event": ..., ...}``), appended, mode
0600: tunnels opened, refused and ended (with the reason), channels opened (kind,
command, recording) and closed (bytes each way, exit). The collector keeps its own
audit log; this one stays with the customer. A journal that cannot be written is
logged as an error but never stops a session from being ended or served.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["JOURNAL_FILE", "SessionJournal"]

log = logging.getLogger(__name__)

JOURNAL_FILE = "sessions.log"


class SessionJournal:
    """Appends events to ``path``; ``clock`` is Unix seconds."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
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
            log.error("cannot write the session journal %s: %s", self.path, exc)
