"""Session recordings: asciicast v2 files under the data directory, their store
records, and the live feed that ``aftercare session watch`` follows.

A ``ChannelRecording`` (gateway thread side) writes one channel's terminal to
``DATA_DIR/recordings/SESSION_ID/...cast``, registered in the store as the session's
next part when it starts and given its size and SHA-256 when it ends. Every event
it writes is also published to the ``WatchHub`` (event-loop side), which fans it out
to the session's watchers.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from collector.store.base import RecordingRecord
from collector.store.writer import StoreThread
from common.asciicast import CastWriter, Event, parse_cast

RECORDINGS_DIR = "recordings"


@dataclass(frozen=True)
class WatchItem:
    """One event for watchers: "o" output, "r" resize, "x" part ended, "end" session over."""

    part: int
    time: float
    type: str
    data: str = ""


class WatchHub:
    """Live recording events per session, fanned out to watchers. Event loop only."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Queue[WatchItem]]] = {}

    def subscribe(self, session_id: str) -> asyncio.Queue[WatchItem]:
        queue: asyncio.Queue[WatchItem] = asyncio.Queue(maxsize=10_000)
        self._watchers.setdefault(session_id, set()).add(queue)
        return queue

    def unsubscribe(self, session_id: str, queue: asyncio.Queue[WatchItem]) -> None:
        watchers = self._watchers.get(session_id)
        if watchers is not None:
            watchers.discard(queue)
            if not watchers:
                del self._watchers[session_id]

    def publish(self, session_id: str, item: WatchItem) -> None:
        """Give ``item`` to every watcher; a watcher too slow to keep up loses events."""
        for queue in self._watchers.get(session_id, ()):
            if not queue.full():
                queue.put_nowait(item)

    def end(self, session_id: str) -> None:
        """The session is over: every watcher gets a final "end" item."""
        for queue in self._watchers.get(session_id, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(WatchItem(0, 0.0, "end"))


def recorded_events(path: Path) -> list[Event]:
    """The events of an asciicast file so far: only its complete lines count (the
    gateway may be writing the next one); a missing or unreadable file has none."""
    try:
        data = path.read_bytes()
        return parse_cast(data[: data.rfind(b"\n") + 1])[1]
    except (OSError, ValueError):
        return []


async def replay_then_follow(
    hub: WatchHub,
    session_id: str,
    load: Callable[[], Awaitable[tuple[list[RecordingRecord], bool]]],
    data_dir: Path,
) -> AsyncIterator[WatchItem]:
    """What was shown so far (every part's output and resizes), then live events
    until the session is over. ``load`` returns the session's recordings and whether
    it is over; it is called after subscribing, so no event falls in between."""
    queue = hub.subscribe(session_id)
    try:
        seen: dict[int, float] = {}
        records, over = await load()
        for record in records:
            for time, kind, data in recorded_events(data_dir / record.path):
                if kind in ("o", "r"):
                    seen[record.part] = time
                    yield WatchItem(record.part, time, kind, data)
            if record.ended_ms is not None:
                yield WatchItem(record.part, seen.get(record.part, 0.0), "x")
        if over:
            yield WatchItem(0, 0.0, "end")
            return
        while True:
            item = await queue.get()
            if item.type in ("o", "r") and item.time <= seen.get(item.part, -1.0):
                continue  # already replayed from the file
            yield item
            if item.type == "end":
                return
    finally:
        hub.unsubscribe(session_id, queue)


class ChannelRecording:
    """One recorded channel (gateway thread side). ``publish`` hands watch items to
    the hub on the event loop; ``call`` runs store work there and waits."""

    def __init__(
        self,
        writer: CastWriter,
        record: RecordingRecord,
        publish: Callable[[WatchItem], None],
        finish: Callable[[RecordingRecord, int, str], None],
    ) -> None:
        self._writer = writer
        self.record = record
        self._publish = publish
        self._finish = finish
        self._last_time = 0.0
        self._closed = False

    def output(self, data: bytes) -> None:
        self._emit(self._writer.output(data), "o")

    def input(self, data: bytes) -> None:
        self._writer.input(data)

    def resize(self, cols: int, rows: int) -> None:
        self._emit(self._writer.resize(cols, rows), "r")

    def _emit(self, event: tuple[float, str] | None, kind: str) -> None:
        if event is not None:
            self._last_time = event[0]
            self._publish(WatchItem(self.record.part, event[0], kind, event[1]))

    def close(self) -> None:
        """Finish the file and its store record; idempotent."""
        if self._closed:
            return
        self._closed = True
        summary = self._writer.close()
        self._finish(self.record, summary.size, summary.sha256)
        self._publish(WatchItem(self.record.part, self._last_time, "x"))


def new_recording_path(session_id: str, started_ms: int) -> str:
    """A fresh path, relative to the data directory, for one recording of the session."""
    return f"{RECORDINGS_DIR}/{session_id}/{started_ms}-{secrets.token_hex(3)}.cast"


async def start_recording(
    db: StoreThread, record: RecordingRecord, data_dir: Path
) -> RecordingRecord:
    """Register the recording (the store numbers its part) and make its directory."""
    (data_dir / record.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return await db.call(db.store.add_recording, record)
