"""Read-only builtin functions that playbook ``builtin`` steps call; each returns text.

Every builtin is ``fn(host, deadline, /, **args) -> bytes``: ``host`` (bound by
``default_builtins``, never reachable from a playbook) says where to look - /proc,
/dev/kmsg, which programs exist - so tests point it at fixtures; ``deadline`` is a
``time.monotonic()`` value by which the function returns, with partial results if
need be; ``args`` are the step's arguments (ints may arrive as decimal strings) and
are validated here, raising BuiltinArgumentError. Other failures raise BuiltinError.

No builtin changes anything on the host, sends anything anywhere except what
``gateway_reachability`` (ping to the default gateway) and ``dns_resolve`` (the
host's configured resolver) are for, or returns unbounded output: limits are
clamped and commands' output is capped at ``COMMAND_OUTPUT_LIMIT``. Helper programs
(systemctl, journalctl, dmesg, smartctl, dpkg-query, rpm, ping, chronyc) run without
a shell, in their own process group, with the executor's scrubbed environment, and
are killed at the deadline; when a program is missing the builtin says so in its
output instead of failing.

The names in ``BUILTIN_NAMES`` are the function names playbooks may use.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import heapq
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from agent.playbook.errors import BuiltinArgumentError, BuiltinError

__all__ = [
    "BUILTIN_NAMES",
    "COMMAND_OUTPUT_LIMIT",
    "CommandResult",
    "Host",
    "default_builtins",
    "run_command",
]

SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
COMMAND_OUTPUT_LIMIT = 8 * 1024 * 1024
_COMMAND_ENV = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
_MARGIN = 0.3  # seconds kept in hand to format partial results before the deadline


@dataclass(frozen=True)
class Host:
    """Where builtins look; the defaults are the real host."""

    proc: Path = Path("/proc")
    kmsg: Path = Path("/dev/kmsg")
    etc: Path = Path("/etc")
    systemd_run_dir: Path = Path("/run/systemd/system")
    path: str = SAFE_PATH  # where helper programs are looked up
    adjtimex: Callable[[Any], int] | None = field(default=None, compare=False)

    def which(self, program: str) -> str | None:
        return shutil.which(program, path=self.path)

    def systemd_running(self) -> bool:
        return self.systemd_run_dir.is_dir()


# --- arguments ------------------------------------------------------------------------


def _int_arg(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,9}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BuiltinArgumentError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


def _choice_arg(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise BuiltinArgumentError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _pattern_arg(name: str, value: object, pattern: str, what: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise BuiltinArgumentError(f"{name} must be {what}, got {value!r}")
    return value


# --- commands and formatting ----------------------------------------------------------


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
            env=_COMMAND_ENV,
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


def _command_text(result: CommandResult, program: str) -> bytes:
    """A command's output with a note on how it ended, when that is not plain success."""
    text = (
        result.output
        if result.output.endswith(b"\n") or not result.output
        else result.output + b"\n"
    )
    if result.truncated:
        text += f"[{program}: output cut at {COMMAND_OUTPUT_LIMIT} bytes]\n".encode()
    if result.returncode is None:
        text += f"[{program}: stopped at the time limit]\n".encode()
    elif result.returncode != 0:
        text += f"[{program}: exit status {result.returncode}]\n".encode()
    return text


def _human(size: float) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if abs(size) < 1024 or unit == "T":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _lines(lines: Sequence[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def _remaining(deadline: float) -> float:
    return deadline - time.monotonic()


# --- processes ------------------------------------------------------------------------


def top_processes(host: Host, deadline: float, /, *, by: str = "cpu", limit: int = 15) -> bytes:
    """The ``limit`` processes using the most CPU (over a short sample) or memory (RSS)."""
    by = _choice_arg("by", by, ("cpu", "memory"))
    limit = _int_arg("limit", limit, 1, 100)
    processes = list(psutil.process_iter())
    if by == "cpu":
        for process in processes:
            _quietly(process.cpu_percent)
        time.sleep(max(0.0, min(1.0, _remaining(deadline) - 2 * _MARGIN)))
    rows = [row for p in processes if (row := _process_row(p)) is not None]
    key = 2 if by == "cpu" else 4
    top = heapq.nlargest(limit, rows, key=lambda row: float(row[key]))
    memory = psutil.virtual_memory()
    lines = [
        f"top {len(top)} of {len(rows)} processes by {by}; "
        f"memory {_human(memory.total)} total, {_human(memory.available)} available",
        f"{'PID':>7} {'USER':<12} {'%CPU':>6} {'%MEM':>5} {'RSS':>8}  COMMAND",
    ]
    for pid, user, cpu, mem, rss, command in top:
        lines.append(
            f"{pid:>7} {user[:12]:<12} {cpu:>6.1f} {mem:>5.1f} {_human(rss):>8}  {command}"
        )
    return _lines(lines)


def _process_row(process: psutil.Process) -> tuple[int, str, float, float, int, str] | None:
    try:
        with process.oneshot():
            cpu = process.cpu_percent()
            rss = process.memory_info().rss
            mem = process.memory_percent()
            user = process.username()
            command = " ".join(process.cmdline()) or f"[{process.name()}]"
    except (psutil.Error, OSError):
        return None
    return process.pid, user, cpu, mem, rss, command[:200]


def _quietly(call: Callable[[], object]) -> None:
    with contextlib.suppress(psutil.Error, OSError):
        call()


# --- disks ----------------------------------------------------------------------------

_NEVER_WALK = ("/proc", "/sys", "/dev", "/run")


def largest_directories(
    host: Host, deadline: float, /, *, path: str = "/", limit: int = 15, depth: int = 2
) -> bytes:
    """Directories under ``path`` (down to ``depth`` levels) with the most disk usage.

    Walks one filesystem only (like ``du -x``), never /proc, /sys, /dev, /run, and
    stops at the deadline with partial figures, saying so.
    """
    root = _directory_arg(path)
    limit = _int_arg("limit", limit, 1, 100)
    depth = _int_arg("depth", depth, 0, 6)
    walk = _Walk(root, depth, deadline - _MARGIN)
    walk.run()
    biggest = heapq.nlargest(limit, walk.totals.items(), key=lambda item: item[1])
    lines = [
        f"largest directories under {root} (one filesystem, depth {depth}, disk usage)",
        f"{'SIZE':>8}  PATH",
        *(f"{_human(size):>8}  {name}" for name, size in biggest),
        walk.summary(),
    ]
    return _lines(lines)


def _directory_arg(path: object) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path or len(path) > 4096:
        raise BuiltinArgumentError(f"path must be an absolute path, got {path!r}")
    root = os.path.normpath(path)
    if any(root == p or root.startswith(p + "/") for p in ("/proc", "/sys")):
        raise BuiltinArgumentError(f"path {root} is a kernel pseudo-filesystem")
    if not os.path.isdir(root):
        raise BuiltinArgumentError(f"path {root} is not a directory")
    return root


class _Walk:
    """A bounded, iterative ``du -x``: totals for directories down to ``depth``."""

    def __init__(self, root: str, depth: int, deadline: float) -> None:
        self.root = root
        self.depth = depth
        self.deadline = deadline
        self.totals: dict[str, int] = {}
        self.entries = 0
        self.unreadable = 0
        self.mounts_skipped = 0
        self.complete = True
        self.started = time.monotonic()
        self._device = os.stat(root).st_dev
        self._seen_links: set[tuple[int, int]] = set()

    def run(self) -> None:
        stack: list[tuple[str, tuple[str, ...]]] = [(self.root, (self.root,))]
        self._add((self.root,), os.lstat(self.root))
        while stack:
            if time.monotonic() > self.deadline:
                self.complete = False
                return
            directory, owners = stack.pop()
            for child in self._scan(directory, owners):
                stack.append(child)

    def _scan(
        self, directory: str, owners: tuple[str, ...]
    ) -> Iterator[tuple[str, tuple[str, ...]]]:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            self.unreadable += 1
            return
        for entry in entries:
            self.entries += 1
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                if info.st_dev != self._device or entry.path in _NEVER_WALK:
                    self.mounts_skipped += 1
                    continue
                child_owners = (*owners, entry.path) if len(owners) <= self.depth else owners
                self._add(child_owners, info)
                yield entry.path, child_owners
            else:
                self._add(owners, info)

    def _add(self, owners: tuple[str, ...], info: os.stat_result) -> None:
        if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
            key = (info.st_dev, info.st_ino)
            if key in self._seen_links:
                return
            if len(self._seen_links) < 200_000:
                self._seen_links.add(key)
        size = info.st_blocks * 512
        for owner in owners:
            self.totals[owner] = self.totals.get(owner, 0) + size

    def summary(self) -> str:
        seconds = time.monotonic() - self.started
        state = "complete" if self.complete else "PARTIAL (time limit reached)"
        return (
            f"{state}: {self.entries} entries in {seconds:.1f}s; "
            f"{self.unreadable} unreadable directories; "
            f"{self.mounts_skipped} other filesystems skipped"
        )


def deleted_open_files(host: Host, deadline: float, /, *, limit: int = 50) -> bytes:
    """Files deleted but still held open (their space is not freed), largest first."""
    limit = _int_arg("limit", limit, 1, 500)
    found: list[tuple[int, int, str, str, str]] = []
    complete = True
    for pid in _pids(host):
        if time.monotonic() > deadline - _MARGIN:
            complete = False
            break
        found.extend(_deleted_fds(host, pid))
    total = sum(size for size, *_ in found)
    lines = [
        f"{len(found)} open descriptors of deleted files, {_human(total)} in total"
        + ("" if complete else " (PARTIAL: time limit reached)"),
        f"{'SIZE':>8} {'PID':>7} {'FD':>4} {'COMMAND':<16} PATH",
    ]
    for size, pid, fd, command, target in heapq.nlargest(limit, found):
        lines.append(f"{_human(size):>8} {pid:>7} {fd:>4} {command[:16]:<16} {target}")
    return _lines(lines)


def _pids(host: Host) -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir(host.proc) if name.isdigit())
    except OSError as exc:
        raise BuiltinError(f"cannot list processes in {host.proc}: {exc.strerror}") from exc


def _deleted_fds(host: Host, pid: int) -> list[tuple[int, int, str, str, str]]:
    fd_dir = host.proc / str(pid) / "fd"
    try:
        names = os.listdir(fd_dir)
        command = (host.proc / str(pid) / "comm").read_text(errors="replace").strip()
    except OSError:
        return []
    found = []
    for name in names:
        try:
            target = os.readlink(fd_dir / name)
            if not target.endswith(" (deleted)") or target.startswith("/memfd:"):
                continue
            size = os.stat(fd_dir / name).st_size
        except OSError:
            continue
        found.append((size, pid, name, command, target))
    return found


# --- network --------------------------------------------------------------------------


def listening_sockets(host: Host, deadline: float, /) -> bytes:
    """TCP sockets in LISTEN state and bound UDP sockets, with the owning process."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError) as exc:
        raise BuiltinError(f"cannot list sockets: {exc}") from exc
    names: dict[int, str] = {}
    rows = []
    for conn in connections:
        tcp = conn.type == socket.SOCK_STREAM
        if (tcp and conn.status != psutil.CONN_LISTEN) or (not tcp and conn.raddr):
            continue
        if not conn.laddr:
            continue
        ip, port = conn.laddr.ip, conn.laddr.port
        proto = ("tcp" if tcp else "udp") + ("6" if conn.family == socket.AF_INET6 else "")
        pid = conn.pid
        rows.append((port, proto, f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}", pid))
        if pid is not None and pid not in names:
            names[pid] = _process_name(pid)
    rows.sort()
    lines = [
        f"{len(rows)} listening sockets",
        f"{'PROTO':<6} {'LOCAL ADDRESS':<40} {'PID':>7}  PROCESS",
    ]
    for _, proto, local, pid in rows[:2000]:
        owner = names.get(pid, "?") if pid is not None else "?"
        lines.append(f"{proto:<6} {local:<40} {pid if pid is not None else '-':>7}  {owner}")
    return _lines(lines)


def _process_name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except (psutil.Error, OSError):
        return "?"


_HOSTNAME = (
    r"(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?"
)


def dns_resolve(host: Host, deadline: float, /, *, name: str, timeout: int = 5) -> bytes:
    """Resolve ``name`` with the host's resolver (getaddrinfo), bounded by ``timeout`` s."""
    name = _pattern_arg("name", name, _HOSTNAME, "a host name such as example.com")
    timeout = _int_arg("timeout", timeout, 1, 30)
    lines = [f"resolver configuration ({host.etc / 'resolv.conf'}):"]
    lines += [f"  {line}" for line in _resolv_conf(host)] or ["  (none)"]
    limit = min(float(timeout), max(0.1, _remaining(deadline) - _MARGIN))
    started = time.monotonic()
    answer = _bounded(lambda: socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP), limit)
    took = (time.monotonic() - started) * 1000
    if answer is None:
        lines.append(f"{name}: no answer within {limit:.1f}s")
    elif isinstance(answer, BaseException):
        lines.append(f"{name}: resolution failed after {took:.0f}ms: {answer}")
    else:
        addresses = sorted({str(info[4][0]) for info in answer})
        lines.append(f"{name}: {len(addresses)} addresses in {took:.0f}ms")
        lines += [f"  {address}" for address in addresses]
    return _lines(lines)


def _resolv_conf(host: Host) -> list[str]:
    try:
        text = (host.etc / "resolv.conf").read_text(errors="replace")
    except OSError:
        return []
    wanted = ("nameserver", "search", "domain", "options")
    return [
        line.strip() for line in text.splitlines() if line.split()[:1] and line.split()[0] in wanted
    ]


def _bounded(call: Callable[[], Any], seconds: float) -> Any:
    """``call()``'s result or exception, or None if it did not finish in ``seconds``."""
    box: list[Any] = []

    def work() -> None:
        try:
            box.append(call())
        except Exception as exc:
            box.append(exc)

    worker = threading.Thread(target=work, name="builtin-bounded", daemon=True)
    worker.start()
    worker.join(seconds)
    return box[0] if box else None


RTF_UP = 0x0001
RTF_GATEWAY = 0x0002


def default_routes(host: Host) -> list[tuple[str, str, int]]:
    """``(gateway, interface, metric)`` of the IPv4 and IPv6 default routes."""
    routes = []
    for fields in _table(host.proc / "net" / "route", skip_header=True):
        if len(fields) >= 8 and fields[1] == "00000000" and fields[7] == "00000000":
            flags = int(fields[3], 16)
            if flags & RTF_UP and flags & RTF_GATEWAY:
                gateway = socket.inet_ntoa(struct.pack("<I", int(fields[2], 16)))
                routes.append((gateway, fields[0], int(fields[6])))
    for fields in _table(host.proc / "net" / "ipv6_route", skip_header=False):
        if len(fields) >= 10 and fields[0] == "0" * 32 and fields[1] == "00":
            flags = int(fields[8], 16)
            if flags & RTF_UP and flags & RTF_GATEWAY:
                gateway = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(fields[4]))
                routes.append((gateway, fields[9], int(fields[5], 16)))
    return routes


def _table(path: Path, *, skip_header: bool) -> list[list[str]]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line.split() for line in lines[1 if skip_header else 0 :] if line.strip()]


def gateway_reachability(host: Host, deadline: float, /, *, count: int = 3) -> bytes:
    """The default routes, and a ``ping`` to each gateway when ping is installed."""
    count = _int_arg("count", count, 1, 10)
    routes = default_routes(host)
    if not routes:
        return _lines(["no default route"])
    lines = [f"default route via {gw} dev {dev} metric {metric}" for gw, dev, metric in routes]
    ping = host.which("ping")
    if ping is None:
        lines.append("ping is not installed; reporting the route only")
        return _lines(lines)
    out = _lines(lines)
    for gateway, _, _ in routes:
        if _remaining(deadline) < 1:
            out += b"[time limit reached]\n"
            break
        argv = [ping, "-n", "-c", str(count), "-W", "2", gateway]
        if ":" in gateway:
            argv.insert(1, "-6")
        out += f"$ ping -n -c {count} -W 2 {gateway}\n".encode()
        out += _command_text(run_command(argv, deadline - _MARGIN, limit=64 * 1024), "ping")
    return out


# --- kernel log -----------------------------------------------------------------------

_KMSG_READ = 8192
_OOM = re.compile(
    r"Out of memory|oom-kill|oom_reaper|invoked oom-killer|Killed process"
    r"|Memory cgroup out of memory"
)
_LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


@dataclass(frozen=True)
class KernelRecord:
    level: int  # syslog priority: 0 emerg .. 7 debug
    seconds: float  # since boot
    text: str


def kernel_records(host: Host, deadline: float) -> Iterator[KernelRecord]:
    """Records of the kernel ring buffer, oldest first, from ``host.kmsg``.

    Reads without blocking (a real /dev/kmsg returns one record per read and
    EAGAIN at the end). Raises OSError if the log cannot be opened.
    """
    fd = os.open(host.kmsg, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        carry = b""
        while time.monotonic() < deadline:
            try:
                data = os.read(fd, _KMSG_READ)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten while we read: go on
                    continue
                raise
            if not data:
                break
            *complete, carry = (carry + data).split(b"\n")
            yield from filter(None, map(_kmsg_record, complete))
        if carry:
            record = _kmsg_record(carry)
            if record is not None:
                yield record
    finally:
        os.close(fd)


def _kmsg_record(line: bytes) -> KernelRecord | None:
    """Parse ``"prio,seq,usec,flags;text"``; continuation lines (" KEY=value") give None."""
    header, sep, text = line.partition(b";")
    fields = header.split(b",")
    if not sep or line.startswith(b" ") or len(fields) < 3:
        return None
    try:
        priority, micros = int(fields[0]), int(fields[2])
    except ValueError:
        return None
    return KernelRecord(priority & 7, micros / 1e6, text.decode("utf-8", "replace"))


def _format_record(record: KernelRecord, boot: float | None) -> str:
    stamp = f"[{record.seconds:12.6f}]"
    if boot is not None:
        when = datetime.fromtimestamp(boot + record.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        stamp = f"{when} {stamp}"
    return f"{stamp} {_LEVELS[record.level]}: {record.text}"


def _kernel_log(
    host: Host, deadline: float, keep: Callable[[KernelRecord], bool], limit: int
) -> tuple[list[KernelRecord] | None, str]:
    """The last ``limit`` records that ``keep`` accepts, or None and why the log is unreadable."""
    kept: deque[KernelRecord] = deque(maxlen=limit)
    try:
        kept.extend(r for r in kernel_records(host, deadline - _MARGIN) if keep(r))
    except OSError as exc:
        return None, f"{host.kmsg}: {exc.strerror or exc}"
    return list(kept), ""


def _boot_time() -> float | None:
    try:
        return float(psutil.boot_time())
    except (psutil.Error, OSError):
        return None


def kernel_errors(host: Host, deadline: float, /, *, limit: int = 50) -> bytes:
    """The last ``limit`` kernel messages of priority err, crit, alert or emerg."""
    limit = _int_arg("limit", limit, 1, 1000)
    records, problem = _kernel_log(host, deadline, lambda r: r.level <= 3, limit)
    if records is None:
        return _dmesg_fallback(host, deadline, problem, ["--level=emerg,alert,crit,err"], limit)
    boot = _boot_time()
    header = f"last {len(records)} kernel messages at level err or worse (from {host.kmsg})"
    return _lines([header, *(_format_record(r, boot) for r in records)])


def oom_history(host: Host, deadline: float, /, *, limit: int = 50) -> bytes:
    """Kernel log lines of the OOM killer, and the kernel's OOM kill counter."""
    limit = _int_arg("limit", limit, 1, 1000)
    counter = _vmstat(host, "oom_kill")
    head = (
        f"OOM kills since boot (/proc/vmstat oom_kill): {counter if counter is not None else '?'}"
    )
    records, problem = _kernel_log(host, deadline, lambda r: bool(_OOM.search(r.text)), limit)
    if records is None:
        out = _dmesg_fallback(host, deadline, problem, [], None)
        matching = [line for line in out.decode(errors="replace").splitlines() if _OOM.search(line)]
        return _lines([head, *matching[-limit:]])
    boot = _boot_time()
    found = f"{len(records)} OOM-related kernel messages still in the ring buffer"
    return _lines([head, found, *(_format_record(r, boot) for r in records)])


def _vmstat(host: Host, key: str) -> int | None:
    for fields in _table(host.proc / "vmstat", skip_header=False):
        if len(fields) == 2 and fields[0] == key and fields[1].isdigit():
            return int(fields[1])
    return None


def _dmesg_fallback(
    host: Host, deadline: float, problem: str, options: list[str], limit: int | None
) -> bytes:
    dmesg = host.which("dmesg")
    if dmesg is None:
        raise BuiltinError(f"kernel log not readable ({problem}) and dmesg is not installed")
    result = run_command([dmesg, *options], deadline - _MARGIN)
    if result.returncode != 0:
        raise BuiltinError(
            f"kernel log not readable ({problem}); dmesg: "
            + result.output.decode(errors="replace").strip()[-300:]
        )
    lines = result.output.decode("utf-8", "replace").splitlines()
    if limit is not None:
        lines = lines[-limit:]
    return _lines([f"kernel log via dmesg ({problem})", *lines])


# --- services -------------------------------------------------------------------------

_NO_SYSTEMD = b"systemd not available\n"
_UNIT = r"[A-Za-z0-9@_.:\\-]{1,255}"


def failed_units(host: Host, deadline: float, /) -> bytes:
    """systemd units in the failed state."""
    systemctl = host.which("systemctl")
    if systemctl is None or not host.systemd_running():
        return _NO_SYSTEMD
    argv = [
        systemctl,
        "list-units",
        "--state=failed",
        "--all",
        "--plain",
        "--no-legend",
        "--no-pager",
    ]
    result = run_command(argv, deadline - _MARGIN)
    units = [line for line in result.output.decode(errors="replace").splitlines() if line.strip()]
    if result.returncode == 0 and not units:
        return b"no failed units\n"
    return f"{len(units)} failed units\n".encode() + _command_text(result, "systemctl")


def unit_journal(host: Host, deadline: float, /, *, unit: str, lines: int = 50) -> bytes:
    """The last ``lines`` journal entries of systemd unit ``unit``."""
    unit = _pattern_arg("unit", unit, _UNIT, "a systemd unit name such as nginx.service")
    if unit.startswith("-"):
        raise BuiltinArgumentError(f"unit must not start with '-', got {unit!r}")
    count = _int_arg("lines", lines, 1, 1000)
    journalctl = host.which("journalctl")
    if journalctl is None:
        return _NO_SYSTEMD
    argv = [journalctl, "--no-pager", "--output=short-iso", f"--lines={count}", f"--unit={unit}"]
    return _command_text(run_command(argv, deadline - _MARGIN), "journalctl")


# --- pressure, clock, hardware --------------------------------------------------------


def pressure_stall(host: Host, deadline: float, /) -> bytes:
    """Pressure stall information (cpu, io, memory, irq) and the load average."""
    lines = []
    for resource in ("cpu", "memory", "io", "irq"):
        try:
            text = (host.proc / "pressure" / resource).read_text()
        except OSError:
            continue
        lines += [f"{resource}:", *(f"  {line}" for line in text.splitlines())]
    if not lines:
        lines = ["pressure stall information not available (kernel without PSI, or psi=0)"]
    with contextlib.suppress(OSError):
        lines.append("loadavg: " + (host.proc / "loadavg").read_text().strip())
    return _lines(lines)


_TIME_DAEMONS = (
    "chronyd",
    "ntpd",
    "openntpd",
    "systemd-timesyncd",
    "ptp4l",
    "phc2sys",
    "timemaster",
)
_STATUS_FLAGS = {0x0001: "PLL", 0x0040: "UNSYNC", 0x0100: "PPSSIGNAL", 0x2000: "NANO"}


def time_sync_status(host: Host, deadline: float, /) -> bytes:
    """Kernel clock discipline state (adjtimex, read-only), time daemons, chrony's view."""
    from agent.sampler.clock import STA_NANO, STA_UNSYNC, TIME_ERROR, Timex, libc_adjtimex

    adjtimex = host.adjtimex or libc_adjtimex()
    timex = Timex(modes=0)
    try:
        state = adjtimex(timex)
    except OSError as exc:
        raise BuiltinError(f"adjtimex failed: {exc.strerror or exc}") from exc
    synced = state != TIME_ERROR and not timex.status & STA_UNSYNC
    unit = 1e-9 if timex.status & STA_NANO else 1e-6
    flags = [name for bit, name in _STATUS_FLAGS.items() if timex.status & bit]
    running = sorted(
        {n for p in psutil.process_iter(["name"]) if (n := p.info["name"]) in _TIME_DAEMONS}
    )
    lines = [
        f"synchronized: {'yes' if synced else 'no'}",
        f"offset: {timex.offset * unit * 1000:.3f} ms",
        f"estimated error: {timex.esterror / 1000:.3f} ms",
        f"maximum error: {timex.maxerror / 1000:.3f} ms",
        f"status: 0x{timex.status:04x} {' '.join(flags)}".rstrip(),
        f"time daemons running: {', '.join(running) or 'none'}",
    ]
    out = _lines(lines)
    chronyc = host.which("chronyc")
    if chronyc is not None and "chronyd" in running:
        out += b"$ chronyc -n tracking\n" + _command_text(
            run_command([chronyc, "-n", "tracking"], deadline - _MARGIN), "chronyc"
        )
    return out


def sensors(host: Host, deadline: float, /) -> bytes:
    """Temperatures, fans and battery as the kernel exposes them (hwmon, via psutil)."""
    lines = []
    temperatures = psutil.sensors_temperatures()
    for chip, readings in sorted(temperatures.items()):
        for reading in readings:
            label = reading.label or chip
            limits = (
                f" (high {reading.high:.0f}, critical {reading.critical:.0f})"
                if reading.high and reading.critical
                else ""
            )
            lines.append(f"temperature {chip}/{label}: {reading.current:.1f} C{limits}")
    fans = psutil.sensors_fans()
    for chip, fan_readings in sorted(fans.items()):
        lines += [f"fan {chip}/{r.label or chip}: {r.current} RPM" for r in fan_readings]
    battery = psutil.sensors_battery()
    if battery is not None:
        plugged = "on AC" if battery.power_plugged else "on battery"
        lines.append(f"battery: {battery.percent:.0f}% {plugged}")
    return _lines(lines or ["no hardware sensors exposed by the kernel"])


_DEVICE = r"/dev/[A-Za-z0-9/_.:-]{1,64}"
_DEVICE_TYPE = r"[A-Za-z0-9,_+-]{1,32}"


def smart_health(host: Host, deadline: float, /) -> bytes:
    """SMART health and attributes of each disk smartctl finds (smartmontools)."""
    smartctl = host.which("smartctl")
    if smartctl is None:
        return b"smartctl is not installed (package smartmontools); SMART health not checked\n"
    scan = run_command([smartctl, "--scan"], deadline - _MARGIN, limit=64 * 1024)
    devices = _scanned_devices(scan.output.decode(errors="replace"))
    if not devices:
        return b"smartctl found no devices\n" + _command_text(scan, "smartctl --scan")
    out = b""
    for device, kind in devices[:32]:
        if _remaining(deadline) < 1:
            out += b"[time limit reached]\n"
            break
        out += f"=== {device} ({kind})\n".encode()
        argv = [smartctl, "-H", "-i", "-A", "-d", kind, device]
        out += _command_text(run_command(argv, deadline - _MARGIN, limit=64 * 1024), "smartctl")
    return out


def _scanned_devices(scan: str) -> list[tuple[str, str]]:
    devices = []
    for line in scan.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 3 and fields[1] == "-d":
            device, kind = fields[0], fields[2]
            if re.fullmatch(_DEVICE, device) and re.fullmatch(_DEVICE_TYPE, kind):
                devices.append((device, kind))
    return devices


# --- inventory ------------------------------------------------------------------------

_PACKAGE_QUERIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dpkg-query", ("-W", "-f=${db:Status-Abbrev}\t${binary:Package}\t${Version}\n")),
    ("rpm", ("-qa", "--queryformat", "ii \t%{NAME}.%{ARCH}\t%{VERSION}-%{RELEASE}\n")),
    ("apk", ("info", "-v")),
    ("pacman", ("-Q",)),
)


def package_inventory(host: Host, deadline: float, /) -> bytes:
    """Installed packages and versions, from dpkg, rpm, apk or pacman (first found)."""
    for program, options in _PACKAGE_QUERIES:
        path = host.which(program)
        if path is None:
            continue
        result = run_command([path, *options], deadline - _MARGIN)
        text = result.output.decode("utf-8", "replace")
        packages = sorted(_package_lines(program, text))
        head = f"{len(packages)} packages installed ({program})"
        note = _command_text(CommandResult(result.returncode, b"", result.truncated), program)
        return _lines([head, *packages]) + note
    return b"no package manager found (dpkg, rpm, apk, pacman)\n"


def _package_lines(program: str, text: str) -> Iterator[str]:
    for line in text.splitlines():
        if program in ("dpkg-query", "rpm"):
            status, _, rest = line.partition("\t")
            if status.startswith("ii"):
                yield rest.replace("\t", " ")
        elif line.strip():
            yield line.strip()


def system_summary(host: Host, deadline: float, /) -> bytes:
    """Host name, OS, kernel, uptime, CPU, memory, swap and filesystem totals."""
    uname = os.uname()
    boot = _boot_time()
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    lines = [
        f"hostname: {socket.gethostname()}",
        f"os: {_os_name(host)}",
        f"kernel: {uname.sysname} {uname.release} {uname.version} {uname.machine}",
    ]
    if boot is not None:
        booted = datetime.fromtimestamp(boot, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"uptime: {_duration(time.time() - boot)} (booted {booted})")
    logical, physical = psutil.cpu_count() or "?", psutil.cpu_count(logical=False) or "?"
    lines += [
        f"cpu: {logical} logical, {physical} physical; {_cpu_model(host)}",
        "load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        f"memory: {_human(memory.total)} total, {_human(memory.available)} available",
        f"swap: {_human(swap.total)} total, {_human(swap.used)} used",
        "filesystems:",
        *_filesystems(deadline),
    ]
    return _lines(lines)


def _os_name(host: Host) -> str:
    try:
        text = (host.etc / "os-release").read_text(errors="replace")
    except OSError:
        return "unknown"
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return values.get("PRETTY_NAME", values.get("NAME", "unknown")).strip().strip('"')


def _cpu_model(host: Host) -> str:
    try:
        text = (host.proc / "cpuinfo").read_text(errors="replace")
    except OSError:
        return "model unknown"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model"):
            return value.strip()
    return "model unknown"


_NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "fuse.sshfs", "glusterfs", "ceph")


def _filesystems(deadline: float) -> list[str]:
    lines = []
    for part in psutil.disk_partitions(all=False):
        if part.fstype in _NETWORK_FS:
            lines.append(f"  {part.mountpoint} ({part.fstype} from {part.device}): not measured")
            continue
        if _remaining(deadline) < _MARGIN:
            lines.append("  [time limit reached]")
            break
        measure = functools.partial(psutil.disk_usage, part.mountpoint)
        usage = _bounded(measure, min(2.0, _remaining(deadline)))
        if usage is None or isinstance(usage, BaseException):
            lines.append(f"  {part.mountpoint} ({part.fstype}): not measured")
            continue
        lines.append(
            f"  {part.mountpoint} ({part.fstype}): {_human(usage.total)} total, "
            f"{_human(usage.used)} used ({usage.percent:.0f}%)"
        )
    return lines


def _duration(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h {rest // 60}m"


# --- registry -------------------------------------------------------------------------

_FUNCTIONS: Mapping[str, Callable[..., bytes]] = {
    "top_processes": top_processes,
    "largest_directories": largest_directories,
    "deleted_open_files": deleted_open_files,
    "listening_sockets": listening_sockets,
    "kernel_errors": kernel_errors,
    "failed_units": failed_units,
    "unit_journal": unit_journal,
    "pressure_stall": pressure_stall,
    "dns_resolve": dns_resolve,
    "gateway_reachability": gateway_reachability,
    "time_sync_status": time_sync_status,
    "sensors": sensors,
    "smart_health": smart_health,
    "package_inventory": package_inventory,
    "system_summary": system_summary,
    "oom_history": oom_history,
}
BUILTIN_NAMES: tuple[str, ...] = tuple(sorted(_FUNCTIONS))


def default_builtins(host: Host | None = None) -> dict[str, Callable[..., bytes]]:
    """The builtin registry for ``Executor``: each function bound to ``host``."""
    bound = host or Host()
    return {name: functools.partial(function, bound) for name, function in _FUNCTIONS.items()}
