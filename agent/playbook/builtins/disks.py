"""Disk builtins: ``largest_directories`` (a bounded ``du -x``) and ``deleted_open_files``."""

from __future__ import annotations

import heapq
import os
import stat
import time
from collections.abc import Iterator

from agent.playbook.builtins.common import MARGIN, Host, human, int_arg, lines_out
from agent.playbook.errors import BuiltinArgumentError, BuiltinError

_NEVER_WALK = ("/proc", "/sys", "/dev", "/run")


def largest_directories(
    host: Host,
    deadline: float,
    /,
    *,
    path: str = "/",
    depth: int | str = 3,
    limit: int | str = 20,
) -> bytes:
    """Directories under ``path`` (down to ``depth`` levels) with the most disk usage.

    Walks one filesystem only (like ``du -x``), never /proc, /sys, /dev, /run, and
    stops at the deadline with partial figures, saying so.
    """
    root = _directory_arg(path)
    count = int_arg("limit", limit, 1, 500)
    levels = int_arg("depth", depth, 0, 8)
    walk = _Walk(root, levels, deadline - MARGIN)
    walk.run()
    biggest = heapq.nlargest(count, walk.totals.items(), key=lambda item: item[1])
    lines = [
        f"largest directories under {root} (one filesystem, depth {levels}, disk usage)",
        f"{'SIZE':>8}  PATH",
        *(f"{human(size):>8}  {name}" for name, size in biggest),
        walk.summary(),
    ]
    return lines_out(lines)


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


def deleted_open_files(host: Host, deadline: float, /, *, limit: int | str = 20) -> bytes:
    """Files deleted but still held open (their space is not freed), largest first."""
    count = int_arg("limit", limit, 1, 1000)
    found: list[tuple[int, int, str, str, str]] = []
    complete = True
    for pid in _pids(host):
        if time.monotonic() > deadline - MARGIN:
            complete = False
            break
        found.extend(_deleted_fds(host, pid))
    total = sum(size for size, *_ in found)
    lines = [
        f"{len(found)} open descriptors of deleted files, {human(total)} in total"
        + ("" if complete else " (PARTIAL: time limit reached)"),
        f"{'SIZE':>8} {'PID':>7} {'FD':>4} {'COMMAND':<16} PATH",
    ]
    for size, pid, fd, command, target in heapq.nlargest(count, found):
        lines.append(f"{human(size):>8} {pid:>7} {fd:>4} {command[:16]:<16} {target}")
    return lines_out(lines)


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
