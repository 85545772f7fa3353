"""Start-up repair of what a killed collector left open: torn recordings and
connections that never reported their end.

A collector killed mid-session (``kill -9``, a crash, the machine losing power)
leaves the recording part it was writing without an end, size or digest ("still
recording, 0 B" for ever) and the session's timeline with ``connected`` but no
``disconnected``. ``recover`` runs at start-up, before the gateway accepts anyone,
so every connection the store still counts as open died with the old process:

* each unfinished part is closed from its file: a torn last line (the write that
  was cut) is cut off so the file stays valid asciicast, then its size and SHA-256
  are recorded, and its end time is the file's last write;
* each connection without an end gets a ``disconnected`` event, reason
  ``collector restarted``, naming the parts closed.

Candidates are the sessions that were in use: every ``active`` one, and the newest
``RECENT_ENDED`` that ended or were terminated (one can end while its connections
are still closing). With several collector replicas sharing one store this must run
only where no replica serves the sessions (not built yet: SQLite only).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from collector.errors import CollectorError
from collector.sessions.model import RemoteSession
from collector.sessions.service import SessionService
from collector.store.base import RecordingRecord
from collector.store.writer import StoreThread

__all__ = ["RESTART_REASON", "recover"]

log = logging.getLogger(__name__)

RESTART_REASON = "collector restarted"
RECENT_ENDED = 200


async def recover(db: StoreThread, sessions: SessionService, data_dir: Path) -> int:
    """Close torn parts and dangling connections; returns how many sessions needed it."""
    store = db.store
    candidates = await db.call(store.list_sessions, None, None, {"active"}, 10_000)
    candidates += await db.call(
        store.list_sessions, None, None, {"ended", "terminated"}, RECENT_ENDED
    )
    repaired = 0
    for session in candidates:
        try:
            if await _recover_session(db, sessions, data_dir, session):
                repaired += 1
        except (CollectorError, OSError) as exc:  # one bad session must not stop the start
            log.error("could not close what session %s left open: %s", session.session_id, exc)
    if repaired:
        log.warning(
            "closed the recordings and connections of %d session(s) left open when the "
            "collector last stopped",
            repaired,
        )
    return repaired


async def _recover_session(
    db: StoreThread, sessions: SessionService, data_dir: Path, session: RemoteSession
) -> bool:
    store = db.store
    parts = await db.call(store.list_recordings, session.session_id)
    closed: list[int] = []
    for part in parts:
        if part.ended_ms is None:
            size, digest, ended_ms = close_torn_file(data_dir / part.path, part)
            await db.call(
                store.finish_recording, part.session_id, part.part, ended_ms, size, digest
            )
            closed.append(part.part)
    events = await db.call(store.session_events, session.session_id)
    open_connections = sum(e.kind == "connected" for e in events) - sum(
        e.kind == "disconnected" for e in events
    )
    for _ in range(max(0, open_connections)):
        await sessions.disconnected(
            session.session_id, reason=RESTART_REASON, recordings_closed=closed
        )
    if closed or open_connections > 0:
        log.info(
            "session %s: closed recording parts %s and %d connection(s): %s",
            session.session_id,
            closed or "none",
            max(0, open_connections),
            RESTART_REASON,
        )
    return bool(closed) or open_connections > 0


def close_torn_file(path: Path, record: RecordingRecord) -> tuple[int, str, int]:
    """Cut a torn last line off the asciicast file; (size, sha256 hex, end ms).

    A missing file is recorded as empty, ended when it started."""
    try:
        ended_ms = max(record.started_ms, int(path.stat().st_mtime * 1000))  # before the cut
        with path.open("r+b") as file:
            data = file.read()
            whole = data[: data.rfind(b"\n") + 1]
            if len(whole) != len(data):
                file.truncate(len(whole))
            file.flush()
            os.fsync(file.fileno())
    except FileNotFoundError:
        return 0, hashlib.sha256(b"").hexdigest(), record.started_ms
    return len(whole), hashlib.sha256(whole).hexdigest(), ended_ms
