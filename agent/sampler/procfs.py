"""Cheap readers for /proc-style files: kept-open files, raw bytes, ``key value`` tables.

Checks read kernel files with plain ``os`` calls, which cost far less than ``open()``
with its buffered text wrapper, and parse bytes where decoding would be wasted. Files
read every cycle stay open (``ProcFile``). Every check takes a ``proc`` root argument
so tests can point it at a fixture snapshot.
"""

from __future__ import annotations

import os
import weakref

PROC = "/proc"
_CHUNK = 65536
_RDONLY = os.O_RDONLY | os.O_CLOEXEC

TableKeys = tuple[tuple[str, bytes], ...]
"""``(key, b"\\n<key><separator> ")`` pairs made by ``table_keys``."""


def read_bytes(path: str) -> bytes:
    """Return the whole content of a (pseudo-)file; raises ``OSError`` like ``open``."""
    fd = os.open(path, _RDONLY)
    try:
        return _read_all(fd)
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    """Read ``fd`` from offset 0 to end of file.

    Only an empty read means the end: a /proc file generated record by record returns
    at most about a page per read, however large the buffer (/proc/self/mounts with a
    few dozen mounts, /proc/net/dev with many interfaces, /proc/vmstat on some kernels).
    """
    data = os.pread(fd, _CHUNK, 0)
    if not data:
        return data
    parts = [data]
    offset = len(data)
    while chunk := os.pread(fd, _CHUNK, offset):
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


def read_text(path: str) -> str:
    """Return a file's content decoded as UTF-8 (undecodable bytes escaped)."""
    return read_bytes(path).decode("utf-8", "surrogateescape")


class ProcFile:
    """A file opened once and read whole from offset 0 on every ``read()``.

    procfs and sysctl files generate their content afresh for each read from offset 0,
    so a kept descriptor reads the same as a fresh open, without the path walk and the
    open/close - most of what reading a small /proc file costs. Opens on first use;
    a failed read closes the descriptor so the next one reopens; the descriptor is
    closed when the object is garbage-collected.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None
        self._close: weakref.finalize[[int], ProcFile] | None = None

    def read(self) -> bytes:
        """The file's current content; raises ``OSError`` like ``open``."""
        if self._fd is None or self._close is None:
            self._fd = os.open(self._path, _RDONLY)
            self._close = weakref.finalize(self, os.close, self._fd)
        try:
            return _read_all(self._fd)
        except OSError:
            self._close()
            self._fd = self._close = None
            raise

    def read_text(self) -> str:
        """The content decoded as UTF-8 (undecodable bytes escaped)."""
        return self.read().decode("utf-8", "surrogateescape")


def table_keys(*keys: str, separator: str = "") -> TableKeys:
    """Keys for ``parse_table`` in a file of ``<key><separator> <value>`` lines.

    /proc/meminfo separates with ``":"`` (``MemTotal:   8000 kB``), /proc/vmstat with
    nothing but the blank (``pswpin 0``).
    """
    return tuple((key, f"\n{key}{separator} ".encode()) for key in keys)


def parse_table(data: bytes, keys: TableKeys) -> dict[str, int]:
    """Integer values of ``keys`` (from ``table_keys``) in ``data``; absent keys are absent.

    For /proc/meminfo (values in kB, unit left to the caller) and /proc/vmstat. A
    substring search per key costs far less than splitting their 50-200 lines or a
    regex pass over them.
    """
    data = b"\n" + data
    values: dict[str, int] = {}
    for key, needle in keys:
        start = data.find(needle)
        if start < 0:
            continue
        start += len(needle)
        end = data.find(b"\n", start)
        values[key] = int(data[start : end if end >= 0 else len(data)].split()[0])
    return values
