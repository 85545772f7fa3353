"""Kernel clock discipline state via ``adjtimex(2)`` with ``modes = 0`` (read-only).

A read-only adjtimex needs no privilege; node_exporter's timex collector does the
same. ``clock_synchronized`` is 0 when the call returns TIME_ERROR or the status has
STA_UNSYNC set (no NTP/PTP daemon is disciplining the clock), else 1. The offset is
in microseconds, or nanoseconds when STA_NANO is set; the error bounds are always
microseconds. All are reported in seconds.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

from agent.sampler.model import Sample, gauge

TIME_ERROR = 5
STA_UNSYNC = 0x0040
STA_NANO = 0x2000
_MICRO = 1e-6
_NANO = 1e-9


class Timeval(ctypes.Structure):
    """``struct timeval``."""

    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class Timex(ctypes.Structure):
    """``struct timex`` from <sys/timex.h> (Linux, LP64 and ILP32 layouts alike)."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    )


Adjtimex = Callable[[Timex], int]
"""Fills a ``Timex`` and returns the clock state; raises ``OSError`` on failure."""


def libc_adjtimex() -> Adjtimex:
    """Bind ``adjtimex`` from the C library already loaded into this process."""
    function = ctypes.CDLL(None, use_errno=True).adjtimex
    function.argtypes = (ctypes.POINTER(Timex),)
    function.restype = ctypes.c_int

    def call(timex: Timex) -> int:
        state = int(function(ctypes.byref(timex)))
        if state < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
        return state

    return call


class ClockCheck:
    """Yields clock synchronisation gauges; ``adjtimex`` is injectable for tests."""

    def __init__(self, *, adjtimex: Adjtimex | None = None) -> None:
        self._adjtimex = adjtimex

    def __call__(self) -> list[Sample]:
        """Read the clock state with ``modes = 0``; never changes it."""
        if self._adjtimex is None:
            self._adjtimex = libc_adjtimex()
        timex = Timex(modes=0)
        state = self._adjtimex(timex)
        synced = state != TIME_ERROR and not timex.status & STA_UNSYNC
        offset_unit = _NANO if timex.status & STA_NANO else _MICRO
        return [
            gauge("clock_synchronized", 1 if synced else 0),
            gauge("clock_offset_seconds", timex.offset * offset_unit),
            gauge("clock_max_error_seconds", timex.maxerror * _MICRO),
            gauge("clock_estimated_error_seconds", timex.esterror * _MICRO),
        ]
