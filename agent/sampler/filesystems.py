"""Space and inode usage of real filesystems: one ``statvfs`` probe per mountpoint.

``statvfs`` can block in the kernel indefinitely (a dead NFS server), so each
mountpoint is its own probe, keyed ``"filesystems:<mountpoint>"``: the runner gives
each its own time limit and never starts a second call while one is still stuck.

The mount table is re-read and the probes re-planned only when the kernel reports a
mount or unmount (``MountTable``); other cycles plan from the previous reading.

Which mounts count (see docs/metrics.md): everything in /proc/self/mounts except
the pseudo and volatile filesystem types in ``DEFAULT_EXCLUDED_FSTYPES`` (tmpfs
included - RAM-backed, not capacity) and mountpoints under /proc, /sys, /dev and
container runtimes' private trees (``DEFAULT_EXCLUDED_MOUNTPOINTS``). The root
filesystem is always kept, whatever its type (overlay in a container). When several
mounts share a mountpoint only the last (the visible one) is kept.

``filesystem_free_bytes`` is the space available to unprivileged users (f_bavail);
``filesystem_used_ratio`` follows df: used / (used + available), so it reaches 1
when only the root reserve is left. ``filesystem_inodes_used_ratio`` is omitted on
filesystems with no fixed inode table (total 0, e.g. btrfs).
"""

from __future__ import annotations

import os
import re
import select
import weakref
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import NamedTuple

from agent.sampler.model import Probe, Sample, ratio
from agent.sampler.procfs import PROC, read_text

DEFAULT_EXCLUDED_FSTYPES = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs",
        "devpts", "devtmpfs", "efivarfs", "erofs", "fuse.gvfsd-fuse", "fuse.lxcfs",
        "fuse.portal", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nfsd", "nsfs",
        "overlay", "proc", "pstore", "ramfs", "rpc_pipefs", "securityfs", "selinuxfs",
        "squashfs", "sysfs", "tmpfs", "tracefs",
    }
)  # fmt: skip
DEFAULT_EXCLUDED_MOUNTPOINTS = re.compile(
    r"^/(dev|proc|sys|run/credentials/.+|var/lib/docker/.+|var/lib/containers/storage/.+"
    r"|var/lib/kubelet/pods/.+|snap/.+)($|/)"
)
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")

Statvfs = Callable[[str], os.statvfs_result]


class Mount(NamedTuple):
    """One line of /proc/self/mounts, escapes decoded."""

    device: str
    mountpoint: str
    fstype: str


def _unescape(field: str) -> str:
    """Decode the kernel's octal escapes (``\\040`` for a space) in a mounts field."""
    if "\\" not in field:
        return field
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[Mount]:
    """Parse /proc/self/mounts content (``device mountpoint fstype options ...``)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            mounts.append(Mount(_unescape(fields[0]), _unescape(fields[1]), fields[2]))
    return mounts


class MountTable:
    """Reads a mount table file, again only after the kernel flags a change.

    An open descriptor of /proc/self/mounts polls POLLPRI | POLLERR after every mount
    or unmount in the namespace (proc(5)); polling takes that flag down. So each call
    polls first and re-reads if flagged (or if the last read failed): a change after
    the poll flags the next call. Any other file (a test fixture) polls POLLOUT, so it
    is re-read on every call. The descriptor closes when the table is collected.
    """

    _WATCHED = select.POLLPRI | select.POLLOUT

    def __init__(self, path: str) -> None:
        self._path = path
        self._poll: select.poll | None = None
        self._stale = True
        self._mounts: list[Mount] = []

    def __call__(self) -> list[Mount]:
        """The mounts, parsed anew if the table changed since the previous call."""
        if self._poll is None:
            fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            weakref.finalize(self, os.close, fd)
            self._poll = select.poll()
            self._poll.register(fd, self._WATCHED)
        if self._poll.poll(0):
            self._stale = True
        if self._stale:
            self._mounts = parse_mounts(read_text(self._path))
            self._stale = False
        return self._mounts


def select_mounts(
    mounts: Sequence[Mount], excluded_fstypes: frozenset[str], excluded_mountpoints: re.Pattern[str]
) -> list[Mount]:
    """Drop excluded mounts (never "/"); keep the last mount on each mountpoint."""
    visible: dict[str, Mount] = {}
    for mount in mounts:
        visible.pop(mount.mountpoint, None)
        visible[mount.mountpoint] = mount
    return [
        m
        for m in visible.values()
        if m.mountpoint == "/"
        or (m.fstype not in excluded_fstypes and not excluded_mountpoints.match(m.mountpoint))
    ]


def filesystem_samples(mount: Mount, st: os.statvfs_result) -> list[Sample]:
    """Turn one ``statvfs`` result into the filesystem gauges for ``mount``."""
    size = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    values = [
        ("filesystem_size_bytes", size),
        ("filesystem_free_bytes", free),
        ("filesystem_used_ratio", ratio(used, used + free)),
        ("filesystem_inodes_total", st.f_files),
        ("filesystem_inodes_free", st.f_ffree),
        ("filesystem_readonly", 1 if st.f_flag & os.ST_RDONLY else 0),
    ]
    if st.f_files > 0:
        values.append(("filesystem_inodes_used_ratio", 1.0 - ratio(st.f_ffree, st.f_files)))
    labels = {"mountpoint": mount.mountpoint, "device": mount.device, "fstype": mount.fstype}
    return [Sample(name, dict(labels), float(value)) for name, value in values]


class FilesystemCheck:
    """Plans one probe per selected mount; ``statvfs`` and ``mounts`` are injectable.

    The probes are re-planned only when ``mounts()`` returns a different list.
    """

    name = "filesystems"
    blocking = True  # statvfs on a network filesystem can hang

    def __init__(
        self,
        *,
        proc: str = PROC,
        statvfs: Statvfs = os.statvfs,
        mounts: Callable[[], Sequence[Mount]] | None = None,
        excluded_fstypes: frozenset[str] = DEFAULT_EXCLUDED_FSTYPES,
        excluded_mountpoints: re.Pattern[str] = DEFAULT_EXCLUDED_MOUNTPOINTS,
    ) -> None:
        self._statvfs = statvfs
        self._mounts = mounts if mounts is not None else MountTable(f"{proc}/self/mounts")
        self._excluded_fstypes = excluded_fstypes
        self._excluded_mountpoints = excluded_mountpoints
        self._planned: list[Mount] | None = None
        self._probes: dict[str, Probe] = {}

    def plan(self) -> Mapping[str, Probe]:
        """``{"filesystems:<mountpoint>": probe}`` for each selected mount."""
        mounts = list(self._mounts())
        if mounts != self._planned:
            selected = select_mounts(mounts, self._excluded_fstypes, self._excluded_mountpoints)
            self._probes = {
                f"{self.name}:{m.mountpoint}": partial(self._probe, m) for m in selected
            }
            self._planned = mounts
        return dict(self._probes)

    def _probe(self, mount: Mount) -> list[Sample]:
        return filesystem_samples(mount, self._statvfs(mount.mountpoint))
