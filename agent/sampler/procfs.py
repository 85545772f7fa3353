"""Cheap readers for /proc-style files: raw bytes and ``key value`` tables.

Checks read kernel files through these helpers with plain ``os.open``/``os.read``,
which costs far less per call than ``open()`` with its buffered text wrapper. Every
check takes a ``proc`` root argument so tests can point it at a fixture snapshot.
"""

from __future__ import annotations

import os

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


def read_table(path: str) -> dict[str, int]:
    """Parse ``key value [unit]`` or ``key: value [unit]`` lines into integers.

    Used for /proc/meminfo (values in kB, unit left to the caller) and /proc/vmstat.
    Lines whose second field is not an integer are skipped.
    """
    table: dict[str, int] = {}
    for line in read_text(path).splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        try:
            table[fields[0].rstrip(":")] = int(fields[1])
        except ValueError:
            continue
    return table
