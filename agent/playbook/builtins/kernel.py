"""Kernel log builtins: ``kernel_errors`` and ``oom_history``.

The kernel ring buffer is read from /dev/kmsg without blocking (one record per
read, EAGAIN at the end; a record overwritten while reading gives EPIPE and is
skipped), keeping only the newest ``limit`` matching records - memory stays
bounded however large the buffer. ``since`` is measured against the uptime in
/proc/uptime. Where /dev/kmsg cannot be read (``kernel.dmesg_restrict`` and no
CAP_SYSLOG), ``dmesg`` is tried instead.
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.playbook.builtins.common import (
    MARGIN,
    Host,
    choice_arg,
    duration_arg,
    int_arg,
    lines_out,
    run_command,
    table,
    uptime,
)
from agent.playbook.errors import BuiltinError

_KMSG_READ = 8192
_LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_ERR, _WARNING = 3, 4
_OOM = re.compile(
    r"Out of memory|oom-kill|oom_reaper|invoked oom-killer|Killed process"
    r"|Memory cgroup out of memory"
)
_HARDWARE = re.compile(
    r"(?i)machine check|\bmce\b|Hardware Error|EDAC|I/O error|blk_update_request"
    r"|critical (?:medium|target) error|\bata\d+(?:\.\d+)?: .*(?:error|exception|failed)"
    r"|nvme\d*.*(?:error|timeout|reset)|thermal|temperature above threshold|throttled"
    r"|PCIe Bus Error|\bAER\b|memory failure|soft offline"
)
_MAX_SINCE = 400 * 86400.0


@dataclass(frozen=True)
class KernelRecord:
    level: int  # syslog priority: 0 emerg .. 7 debug
    seconds: float  # since boot
    text: str


def kernel_records(host: Host, deadline: float) -> Iterator[KernelRecord]:
    """Records of the kernel ring buffer, oldest first; raises OSError if unreadable."""
    fd = os.open(host.kmsg, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        carry = b""
        while time.monotonic() < deadline:
            try:
                data = os.read(fd, _KMSG_READ)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    continue
                raise
            if not data:
                break
            *complete, carry = (carry + data).split(b"\n")
            yield from filter(None, map(_parse, complete))
        if carry and (record := _parse(carry)) is not None:
            yield record
    finally:
        os.close(fd)


def _parse(line: bytes) -> KernelRecord | None:
    """``"prio,seq,usec,flags;text"``; continuation lines (" KEY=value") give None."""
    header, sep, text = line.partition(b";")
    fields = header.split(b",")
    if not sep or line.startswith(b" ") or len(fields) < 3:
        return None
    try:
        priority, micros = int(fields[0]), int(fields[2])
    except ValueError:
        return None
    return KernelRecord(priority & 7, micros / 1e6, text.decode("utf-8", "replace"))


def kernel_errors(
    host: Host,
    deadline: float,
    /,
    *,
    since: str | float = "24h",
    limit: int | str = 200,
    kind: str = "all",
) -> bytes:
    """The newest ``limit`` kernel messages at err or worse (``kind="hardware"``: hardware
    messages at warning or worse) within ``since``."""
    window = duration_arg("since", since, 1, _MAX_SINCE)
    count = int_arg("limit", limit, 1, 5000)
    kind = choice_arg("kind", kind, ("all", "hardware"))
    if kind == "hardware":
        what = "hardware messages at level warning or worse"

        def keep(r: KernelRecord) -> bool:
            return r.level <= _WARNING and bool(_HARDWARE.search(r.text))
    else:
        what = "messages at level err or worse"

        def keep(r: KernelRecord) -> bool:
            return r.level <= _ERR

    levels = "emerg,alert,crit,err" + (",warn" if kind == "hardware" else "")
    return _report(host, deadline, window, count, keep, what, f"--level={levels}")


def oom_history(
    host: Host, deadline: float, /, *, since: str | float = "7d", limit: int | str = 20
) -> bytes:
    """The OOM killer's messages within ``since`` (victim, its memory, the cgroup), and
    the kernel's count of OOM kills since boot."""
    window = duration_arg("since", since, 1, _MAX_SINCE)
    count = int_arg("limit", limit, 1, 5000)
    counter = next(
        (int(f[1]) for f in table(host.proc / "vmstat") if len(f) == 2 and f[0] == "oom_kill"),
        None,
    )
    head = f"OOM kills since boot (/proc/vmstat oom_kill): {'?' if counter is None else counter}\n"

    def keep(r: KernelRecord) -> bool:
        return bool(_OOM.search(r.text))

    return head.encode() + _report(host, deadline, window, count, keep, "OOM killer messages", "")


def _report(
    host: Host,
    deadline: float,
    window: float,
    count: int,
    keep: Callable[[KernelRecord], bool],
    what: str,
    dmesg_option: str,
) -> bytes:
    up = uptime(host)
    cutoff = (up - window) if up is not None else None
    kept: deque[KernelRecord] = deque(maxlen=count)
    try:
        for record in kernel_records(host, deadline - MARGIN):
            if (cutoff is None or record.seconds >= cutoff) and keep(record):
                kept.append(record)
    except OSError as exc:
        problem = f"{host.kmsg}: {exc.strerror or exc}"
        return _dmesg(host, deadline, problem, dmesg_option, count, keep)
    boot = time.time() - up if up is not None else None
    period = f"in the last {_span(window)}" if cutoff is not None else "(uptime unknown: all)"
    header = f"{len(kept)} kernel {what} {period}, newest {count} kept"
    return lines_out([header, *(_format(r, boot) for r in kept)])


def _format(record: KernelRecord, boot: float | None) -> str:
    stamp = f"[{record.seconds:12.6f}]"
    if boot is not None:
        when = datetime.fromtimestamp(boot + record.seconds, UTC)
        stamp = f"{when:%Y-%m-%dT%H:%M:%SZ} {stamp}"
    return f"{stamp} {_LEVELS[record.level]}: {record.text}"


def _dmesg(
    host: Host,
    deadline: float,
    problem: str,
    option: str,
    count: int,
    keep: Callable[[KernelRecord], bool],
) -> bytes:
    """The same report from ``dmesg`` (not filtered by time) where /dev/kmsg is unreadable."""
    dmesg = host.which("dmesg")
    if dmesg is None:
        raise BuiltinError(f"kernel log not readable ({problem}) and dmesg is not installed")
    result = run_command([dmesg, *filter(None, [option])], deadline - MARGIN)
    if result.returncode != 0:
        detail = result.output.decode(errors="replace").strip()[-300:]
        raise BuiltinError(f"kernel log not readable ({problem}); dmesg: {detail}")
    lines = result.output.decode("utf-8", "replace").splitlines()
    lines = [line for line in lines if keep(KernelRecord(0, 0.0, line))]  # text filters
    return lines_out([f"kernel log via dmesg ({problem}); not filtered by time", *lines[-count:]])


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
