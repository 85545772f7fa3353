"""The default set of checks a ``Sampler`` runs, in report order."""

from __future__ import annotations

from functools import partial

from agent.sampler.clock import ClockCheck
from agent.sampler.cpu import CpuCheck
from agent.sampler.disks import DiskCheck
from agent.sampler.filesystems import FilesystemCheck
from agent.sampler.memory import memory
from agent.sampler.model import Check, SimpleCheck
from agent.sampler.network import NetworkCheck
from agent.sampler.processes import ProcessCheck
from agent.sampler.procfs import PROC
from agent.sampler.system import file_descriptors, load, uptime
from agent.sampler.systemd import SystemdCheck
from agent.sampler.temperatures import TemperatureCheck


def default_checks(*, check_timeout: float = 5.0, proc: str = PROC) -> list[Check]:
    """Fresh instances of every built-in check (stateful ones keep per-sampler state).

    systemctl gets 80 % of ``check_timeout`` so its own timeout error, not the
    runner's generic one, is what gets reported.
    """
    return [
        SimpleCheck("cpu", CpuCheck(proc=proc)),
        SimpleCheck("load", partial(load, proc=proc)),
        SimpleCheck("memory", partial(memory, proc=proc)),
        FilesystemCheck(proc=proc),
        SimpleCheck("disks", DiskCheck(proc=proc)),
        SimpleCheck("network", NetworkCheck(proc=proc)),
        SimpleCheck("processes", ProcessCheck(proc=proc)),
        SimpleCheck("file_descriptors", partial(file_descriptors, proc=proc)),
        SimpleCheck("uptime", uptime),
        SimpleCheck("temperatures", TemperatureCheck()),
        SystemdCheck(timeout=0.8 * check_timeout),
        SimpleCheck("clock", ClockCheck()),
    ]
