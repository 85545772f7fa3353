"""Space and inode usage of real filesystems: one ``statvfs`` probe per mountpoint.

``statvfs`` can block in the kernel indefinitely (a dead NFS server), so each
mountpoint is its own probe, keyed ``"filesystems:<mountpoint>"``: the runner gives
each its own time limit and never starts a second call while one is still stuck.

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
from collections.abc import Callable, Mapping
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


def select_mounts(
    mounts: list[Mount], excluded_fstypes: frozenset[str], excluded_mountpoints: re.Pattern[str]
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
    """Plans one probe per selected mount; ``statvfs`` and ``mounts`` are injectable."""

    name = "filesystems"

    def __init__(
        self,
        *,
        proc: str = PROC,
        statvfs: Statvfs = os.statvfs,
        mounts: Callable[[], list[Mount]] | None = None,
        excluded_fstypes: frozenset[str] = DEFAULT_EXCLUDED_FSTYPES,
        excluded_mountpoints: re.Pattern[str] = DEFAULT_EXCLUDED_MOUNTPOINTS,
    ) -> None:
        self._mounts_path = f"{proc}/self/mounts"
        self._statvfs = statvfs
        self._mounts = mounts if mounts is not None else self._read_mounts
        self._excluded_fstypes = excluded_fstypes
        self._excluded_mountpoints = excluded_mountpoints

    def plan(self) -> Mapping[str, Probe]:
        """``{"filesystems:<mountpoint>": probe}`` for each selected mount."""
        selected = select_mounts(self._mounts(), self._excluded_fstypes, self._excluded_mountpoints)
        return {f"{self.name}:{m.mountpoint}": partial(self._probe, m) for m in selected}

    def _read_mounts(self) -> list[Mount]:
        return parse_mounts(read_text(self._mounts_path))

    def _probe(self, mount: Mount) -> list[Sample]:
        return filesystem_samples(mount, self._statvfs(mount.mountpoint))
