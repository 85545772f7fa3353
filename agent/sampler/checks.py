"""The default set of checks a ``Sampler`` runs, in report order."""

from __future__ import annotations

from agent.sampler.clock import ClockCheck
from agent.sampler.cpu import CpuCheck
from agent.sampler.disks import DiskCheck
from agent.sampler.filesystems import FilesystemCheck
from agent.sampler.memory import MemoryCheck
from agent.sampler.model import Check, SimpleCheck
from agent.sampler.network import NetworkCheck
from agent.sampler.processes import ProcessCheck
from agent.sampler.procfs import PROC
from agent.sampler.system import FileDescriptorCheck, LoadCheck, uptime
from agent.sampler.systemd import SystemdCheck
from agent.sampler.temperatures import TemperatureCheck


def default_checks(*, check_timeout: float = 5.0, proc: str = PROC) -> list[Check]:
    """Fresh instances of every built-in check (stateful ones keep per-sampler state).

    Checks that only read /proc files or kernel clocks are non-blocking (procfs content
    is generated from memory on read). Filesystems, temperatures (hwmon drivers may
    talk to slow buses) and systemd stay blocking. systemctl gets 80 % of
    ``check_timeout`` so its own timeout error, not the runner's generic one, is what
    gets reported.
    """
    return [
        SimpleCheck("cpu", CpuCheck(proc=proc), blocking=False),
        SimpleCheck("load", LoadCheck(proc=proc), blocking=False),
        SimpleCheck("memory", MemoryCheck(proc=proc), blocking=False),
        FilesystemCheck(proc=proc),
        SimpleCheck("disks", DiskCheck(proc=proc), blocking=False),
        SimpleCheck("network", NetworkCheck(proc=proc), blocking=False),
        SimpleCheck("processes", ProcessCheck(proc=proc), blocking=False),
        SimpleCheck("file_descriptors", FileDescriptorCheck(proc=proc), blocking=False),
        SimpleCheck("uptime", uptime, blocking=False),
        SimpleCheck("temperatures", TemperatureCheck()),
        SystemdCheck(timeout=0.8 * check_timeout),
        SimpleCheck("clock", ClockCheck(), blocking=False),
    ]
