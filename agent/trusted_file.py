"""Files the agent trusts — its config, the customer's policy, pinned vendor keys —
must not be changeable by anyone but root and the agent's own user.

One check, shared by every loader: a file writable by group or others, or owned by
another user, could be swapped by that user to widen what the agent accepts.
"""

from __future__ import annotations

import os
import stat

__all__ = ["ownership_problem"]


def ownership_problem(info: os.stat_result) -> str:
    """Why a file with this ``stat`` may not be trusted; "" if it may."""
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "is writable by group or others; run chmod go-w on it"
    if info.st_uid not in (0, os.geteuid()):
        return f"belongs to uid {info.st_uid}; it must belong to root or the agent's user"
    return ""
