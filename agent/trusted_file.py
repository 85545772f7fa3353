"""Files the agent trusts — its config, the customer's policy, pinned vendor keys —
must not be changeable by anyone but root and the agent's own user.

One check, shared by every loader: a file writable by group or others, or owned by
another user, could be swapped by that user to widen what the agent accepts.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from agent.errors import ConfigError

__all__ = ["ownership_problem", "read_vendor_keys"]


def ownership_problem(info: os.stat_result) -> str:
    """Why a file with this ``stat`` may not be trusted; "" if it may."""
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "is writable by group or others; run chmod go-w on it"
    if info.st_uid not in (0, os.geteuid()):
        return f"belongs to uid {info.st_uid}; it must belong to root or the agent's user"
    return ""


def read_vendor_keys(paths: Iterable[str]) -> list[bytes]:
    """The pinned vendor keys (``playbooks.trusted_keys``), each file as it is.

    Raises ConfigError naming the key when one cannot be read or may not be trusted.
    """
    keys = []
    for path in paths:
        try:
            problem = ownership_problem(Path(path).stat())
            keys.append(Path(path).read_bytes())
        except OSError as exc:
            raise ConfigError(
                f"cannot read vendor key {path}: {exc.strerror or exc}",
                key="playbooks.trusted_keys",
            ) from exc
        if problem:
            raise ConfigError(f"vendor key {path} {problem}", key="playbooks.trusted_keys")
    return keys
