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
    fd, temporary = _create_temporary(path)
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


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new file ``.NAME.RANDOM`` beside ``path``, mode 0600, opened for writing.

    ``tempfile.mkstemp`` does the same, but importing ``tempfile`` pulls in shutil,
    bz2 and lzma, which would stay resident in the agent (about 0.5 MiB).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        name = path.parent / f".{path.name}.{os.urandom(6).hex()}"
        try:
            return os.open(name, flags, 0o600), str(name)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def fsync_directory(directory: Path) -> None:
    """Make renames and removals in ``directory`` durable (fsync the directory). Raises OSError."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
