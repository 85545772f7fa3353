"""Files every replica can serve: run outputs and session recordings, copied into the
shared store when complete.

A replica writes such files under its own data directory while they grow (the run's
agent or the engineer's SSH connection is on that replica); ``publish`` copies the
finished file into the store (``shared_files``, keyed by its path under the data
directory), and ``read`` returns the local file if this replica has it, else the
stored copy. With SQLite there is one process, and no copy is made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from collector.store.writer import StoreThread

__all__ = ["SharedFiles"]


class SharedFiles:
    """Publish finished files to the shared store; read them from here or there."""

    def __init__(self, db: StoreThread, data_dir: Path, clock_ms: Callable[[], int]) -> None:
        self._db = db
        self._root = data_dir
        self._clock_ms = clock_ms

    def relative(self, path: Path) -> str:
        """``path`` as stored: relative to the data directory (ValueError if outside)."""
        return path.resolve().relative_to(self._root.resolve()).as_posix()

    async def publish(self, path: Path) -> None:
        """Copy the (finished) file at ``path`` into the store; a missing file is skipped."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        digest = hashlib.sha256(data).hexdigest()
        await self._db.call(
            self._db.store.put_shared_file, self.relative(path), data, digest, self._clock_ms()
        )

    async def read(self, path: Path) -> bytes | None:
        """The file's bytes from this replica's disk, else from the store; None if neither."""
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return await self._db.call(self._db.store.get_shared_file, self.relative(path))
