"""What every builtin shares: the ``Host`` it looks at, argument checks, helper commands.

``Host`` names the places builtins read (/proc, /sys, /dev/kmsg, /etc, /var/log)
and where helper programs are looked up, so tests point builtins at fixtures and at
stand-in programs. ``run_command`` runs a helper program the way the executor runs a
step - no shell, its own process group, scrubbed environment, killed at the
deadline - and keeps at most a bounded amount of its output.

The ``*_arg`` checks turn step arguments (strings or integers; a duration is a
string such as "24h" or a number of seconds) into values, raising
BuiltinArgumentError with the argument's name and what it accepts.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.playbook.errors import BuiltinArgumentError, BuiltinError
from common.durations import parse_duration

SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
COMMAND_OUTPUT_LIMIT = 8 * 1024 * 1024
COMMAND_ENV = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
MARGIN = 0.3  # seconds kept in hand to format partial results before the deadline


@dataclass(frozen=True)
class Host:
    """Where builtins look; the defaults are the real host."""

    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    kmsg: Path = Path("/dev/kmsg")
    etc: Path = Path("/etc")
    var_log: Path = Path("/var/log")
    run: Path = Path("/run")
    var_lib: Path = Path("/var/lib")
    path: str = SAFE_PATH  # where helper programs are looked up
    adjtimex: Callable[[Any], int] | None = field(default=None, compare=False)

    def which(self, program: str) -> str | None:
        return shutil.which(program, path=self.path)

    def systemd_running(self) -> bool:
        return (self.run / "systemd" / "system").is_dir()


# --- arguments ------------------------------------------------------------------------


def int_arg(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,9}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BuiltinArgumentError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


def duration_arg(name: str, value: object, low: float, high: float) -> float:
    """Seconds from "500ms", "2s", "24h", "7d" ... or a number of seconds."""
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"invalid duration {value!r}")
        seconds = parse_duration(value)
    except ValueError as exc:
        raise BuiltinArgumentError(f"{name}: {exc}") from exc
    if not low <= seconds <= high:
        raise BuiltinArgumentError(f"{name} must be between {low:g}s and {high:g}s, got {value!r}")
    return seconds


def choice_arg(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise BuiltinArgumentError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def pattern_arg(name: str, value: object, pattern: str, what: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise BuiltinArgumentError(f"{name} must be {what}, got {value!r}")
    return value


# --- helper programs ------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    returncode: int | None  # None: killed at the deadline
    output: bytes  # stdout and stderr, merged
    truncated: bool


def run_command(
    argv: Sequence[str], deadline: float, *, limit: int = COMMAND_OUTPUT_LIMIT
) -> CommandResult:
    """Run ``argv`` (no shell) until it exits or ``deadline``; keep at most ``limit`` bytes.

    The program runs in its own process group, which is killed at the deadline or
    once ``limit`` bytes have been read. Raises BuiltinError if it cannot start.
    """
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=COMMAND_ENV,
            cwd="/",
            start_new_session=True,
        )
    except OSError as exc:
        raise BuiltinError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        _kill_group(process.pid)

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), kill)
    timer.daemon = True
    timer.start()
    try:
        assert process.stdout is not None
        output = process.stdout.read(limit + 1)
        truncated = len(output) > limit
        if truncated:
            _kill_group(process.pid)
        process.stdout.close()
        returncode = process.wait()
    finally:
        timer.cancel()
    return CommandResult(None if expired.is_set() else returncode, output[:limit], truncated)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def command_text(result: CommandResult, program: str) -> bytes:
    """A command's output with a note on how it ended, when that is not plain success."""
    text = result.output
    if text and not text.endswith(b"\n"):
        text += b"\n"
    if result.truncated:
        text += f"[{program}: output cut]\n".encode()
    if result.returncode is None:
        text += f"[{program}: stopped at the time limit]\n".encode()
    elif result.returncode != 0:
        text += f"[{program}: exit status {result.returncode}]\n".encode()
    return text


def bounded(call: Callable[[], Any], seconds: float) -> Any:
    """``call()``'s result or exception, or None if it did not finish in ``seconds``.

    For calls that cannot be interrupted (getaddrinfo, statvfs on a dead mount): the
    call runs on a daemon thread that is abandoned if it overruns.
    """
    box: list[Any] = []

    def work() -> None:
        try:
            box.append(call())
        except Exception as exc:
            box.append(exc)

    worker = threading.Thread(target=work, name="builtin-bounded", daemon=True)
    worker.start()
    worker.join(max(0.0, seconds))
    return box[0] if box else None


# --- reading and formatting -----------------------------------------------------------


def read_text(path: Path) -> str | None:
    """The file's text, or None if it cannot be read."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def table(path: Path, *, skip_header: bool = False) -> list[list[str]]:
    """Whitespace-separated fields of each non-empty line (a /proc table)."""
    text = read_text(path)
    lines = text.splitlines()[1 if skip_header else 0 :] if text else []
    return [line.split() for line in lines if line.strip()]


def human(size: float) -> str:
    """A size in bytes as "512B", "1.5K", "3.2G"."""
    for unit in ("B", "K", "M", "G", "T"):
        if abs(size) < 1024 or unit == "T":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    raise AssertionError("unreachable")


def lines_out(lines: Sequence[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def remaining(deadline: float) -> float:
    return deadline - time.monotonic()


def uptime(host: Host) -> float | None:
    """Seconds since boot, from ``/proc/uptime``."""
    fields = table(host.proc / "uptime")
    try:
        return float(fields[0][0])
    except (IndexError, ValueError):
        return None
