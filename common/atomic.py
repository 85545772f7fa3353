"""Replace a file atomically: readers see the old bytes or the new, never a mix."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["fsync_directory", "write_atomic"]


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` through a synced temporary file in the same directory.

    The file gets ``mode`` before it becomes visible. Raises OSError; a failed write
    leaves ``path`` as it was and no temporary file behind.
    """
    import tempfile  # here, not at the top: it pulls in shutil, bz2, lzma (0.6 MiB resident)

    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def fsync_directory(directory: Path) -> None:
    """Make renames and removals in ``directory`` durable (fsync the directory). Raises OSError."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
