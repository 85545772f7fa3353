"""Host health sampler of the aftercare agent.

``Sampler.collect()`` returns a ``Cycle`` of ``Sample`` values (Prometheus-style
names, see docs/metrics.md) plus a ``CheckFailure`` for each check that raised or
overran its time limit. Modules, one concern each:

    model         value types, the ``Check`` protocol
    runner        ``Sampler``: inline and pooled probes, time limits, hung probes, cycles
    batch         one cycle's blocking probes, drained by as few threads as possible
    pool          persistent daemon worker threads
    checks        the default check set
    procfs        cheap /proc readers
    refresh       when a cached lookup (systemd, sensor presence) is due again
    cpu, system, memory, filesystems, disks, network, processes,
    temperatures, systemd, clock      one check family each
    errors        the package's exception tree
"""

from agent.sampler.checks import default_checks
from agent.sampler.errors import SamplerClosed, SamplerError, SystemctlError
from agent.sampler.model import Check, CheckFailure, Cycle, Probe, Sample, SimpleCheck
from agent.sampler.scheduler import Sampler

__all__ = [
    "Check",
    "CheckFailure",
    "Cycle",
    "Probe",
    "Sample",
    "Sampler",
    "SamplerClosed",
    "SamplerError",
    "SimpleCheck",
    "SystemctlError",
    "default_checks",
]
