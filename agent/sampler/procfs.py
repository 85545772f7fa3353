"""Cheap readers for /proc-style files: raw bytes and ``key value`` tables.

Checks read kernel files through these helpers with plain ``os.open``/``os.read``,
which costs far less per call than ``open()`` with its buffered text wrapper. Every
check takes a ``proc`` root argument so tests can point it at a fixture snapshot.
"""

from __future__ import annotations

import os
import re

PROC = "/proc"
_CHUNK = 65536


def read_bytes(path: str) -> bytes:
    """Return the whole content of a (pseudo-)file; raises ``OSError`` like ``open``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _CHUNK)
        if len(data) < _CHUNK:
            return data
        parts = [data]
        while chunk := os.read(fd, _CHUNK):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def read_text(path: str) -> str:
    """Return a file's content decoded as UTF-8 (undecodable bytes escaped)."""
    return read_bytes(path).decode("utf-8", "surrogateescape")


def table_pattern(*keys: str) -> re.Pattern[bytes]:
    """A pattern for ``read_table`` that picks ``keys`` out of a ``key[:] value`` file."""
    names = b"|".join(re.escape(key.encode()) for key in keys)
    return re.compile(rb"^(" + names + rb"):?[ \t]+(\d+)", re.MULTILINE)


def read_table(path: str, pattern: re.Pattern[bytes]) -> dict[str, int]:
    """Integer values of the keys ``pattern`` (from ``table_pattern``) finds in ``path``.

    For /proc/meminfo (values in kB, unit left to the caller) and /proc/vmstat; one
    regex pass is much cheaper than splitting their 50-200 lines. Absent keys are absent.
    """
    return {key.decode(): int(value) for key, value in pattern.findall(read_bytes(path))}
