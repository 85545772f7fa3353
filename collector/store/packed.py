"""Numbers stored as one little-endian array in a BLOB/BYTEA column (the metric
history's staged rows, an agent's latest values): a batch's 150 values in one field,
read and written without a per-value conversion."""

from __future__ import annotations

import array
import sys
from collections.abc import Sequence
from typing import Any

INT64, FLOAT64 = "q", "d"  # array type codes


def pack(code: str, numbers: Sequence[float] | Sequence[int]) -> bytes:
    """``numbers`` as little-endian ``code`` items."""
    packed = array.array(code, numbers)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def unpack(code: str, data: bytes) -> array.array[Any]:
    """The little-endian ``code`` items of ``data``."""
    unpacked = array.array(code)
    unpacked.frombytes(bytes(data))
    if sys.byteorder != "little":
        unpacked.byteswap()
    return unpacked
