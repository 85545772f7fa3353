"""Giving freed heap memory back to the operating system (the agent's RSS).

CPython frees objects into glibc's heap, which keeps the pages: start-up (imports,
parsing the config, connecting) and a playbook run leave megabytes resident that the
agent no longer uses. ``release_free_memory`` runs a full garbage collection and then
glibc's ``malloc_trim(0)``, which returns free pages anywhere in the heap. Call it at
quiet moments (after the first cycle, after a playbook run), not every cycle: it walks
the whole heap. Elsewhere than glibc it only collects garbage.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:  # the process's own symbols: libc's, without searching for the library
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    return trim


_malloc_trim = _find_malloc_trim()


def release_free_memory() -> None:
    """Collect garbage, then give free heap pages back to the OS where glibc allows."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
