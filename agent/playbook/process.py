"""How a step's program is set up and stopped: environment, user, process group.

``environment`` builds the scrubbed environment (``BASE_ENV`` plus the step's own
variables, which may not set PATH or LD_*); ``identity`` turns ``run_as`` into the
``user``/``group``/``extra_groups`` arguments of ``create_subprocess_exec`` (the
user's primary group, no supplementary groups; only root can switch users).
``group_members`` and ``session_members`` list the live processes of a process group
or session from /proc (zombies left to a non-reaping init do not count) and
``signal_group`` signals them all.
Problems that keep a step from starting raise SetupError, whose message becomes the
step's error.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
from collections.abc import Mapping
from typing import Any

__all__ = [
    "BASE_ENV",
    "SAFE_PATH",
    "SetupError",
    "environment",
    "group_members",
    "identity",
    "session_members",
    "signal_group",
    "signal_name",
]

SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV: Mapping[str, str] = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}


class SetupError(Exception):
    """A step cannot start; the message is the step's error."""


def environment(step_env: Mapping[str, str]) -> dict[str, str]:
    """``BASE_ENV`` plus ``step_env``; raises SetupError for PATH, LD_* or bad names."""
    for name in step_env:
        if not name or "=" in name or "\0" in name:
            raise SetupError(f"invalid environment variable name {name!r}")
        if name == "PATH" or name.startswith("LD_"):
            raise SetupError(f"environment variable {name} cannot be set by a playbook")
    return {**BASE_ENV, **step_env}


def identity(run_as: str | None) -> dict[str, Any]:
    """Keyword arguments of create_subprocess_exec that switch to user ``run_as``."""
    if run_as is None:
        return {}
    try:
        user = pwd.getpwnam(run_as)
    except KeyError as exc:
        raise SetupError(f"cannot run as {run_as!r}: no such user on this host") from exc
    if os.geteuid() != 0:
        if user.pw_uid == os.geteuid():
            return {}
        raise SetupError(f"cannot run as {run_as!r}: the agent is not running as root")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def group_members(group: int, proc: str = "/proc") -> list[int]:
    """Pids of live (non-zombie) processes in process group ``group``."""
    return _live_with(_PGRP, group, proc)


def session_members(session: int, proc: str = "/proc") -> list[int]:
    """Pids of live (non-zombie) processes whose session id is ``session``."""
    return _live_with(_SESSION, session, proc)


# Fields of /proc/PID/stat after the ")" closing the command name.
_STATE, _PGRP, _SESSION = 0, 2, 3


def _live_with(field: int, value: int, proc: str) -> list[int]:
    wanted = str(value).encode()
    members = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > field and fields[field] == wanted and fields[_STATE] != b"Z":
            members.append(int(entry))
    return members


def signal_group(group: int, signum: signal.Signals) -> None:
    """Send ``signum`` to every process in ``group``; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def signal_name(number: int) -> str:
    """ "SIGKILL" for 9; the number itself for an unknown signal."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
