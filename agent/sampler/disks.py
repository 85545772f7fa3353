"""Per-device disk I/O counters from /proc/diskstats.

Whole devices only: partitions and RAM/loop/floppy devices are skipped by name, as
node_exporter's default does (``DEFAULT_EXCLUDE``). Sectors in diskstats are always
512 bytes, whatever the device's real sector size.
"""

from __future__ import annotations

import re

from agent.sampler.model import Sample
from agent.sampler.procfs import PROC, ProcFile

DEFAULT_EXCLUDE = re.compile(r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]+|nvme\d+n\d+p|mmcblk\d+p)\d+$")
_SECTOR = 512

# (metric name, field index after the device name, scale)
_FIELDS = (
    ("disk_reads_total", 0, 1.0),
    ("disk_read_bytes_total", 2, float(_SECTOR)),
    ("disk_writes_total", 4, 1.0),
    ("disk_written_bytes_total", 6, float(_SECTOR)),
    ("disk_io_time_seconds_total", 9, 0.001),
)


class DiskCheck:
    """Reads /proc/diskstats each cycle, keeping devices whose name is not excluded."""

    def __init__(self, *, proc: str = PROC, exclude: re.Pattern[str] = DEFAULT_EXCLUDE) -> None:
        self._diskstats = ProcFile(f"{proc}/diskstats")
        self._exclude = exclude

    def __call__(self) -> list[Sample]:
        """Counters per device, labelled ``{device}``."""
        samples: list[Sample] = []
        for line in self._diskstats.read_text().splitlines():
            # "major minor name stats...": split the stats only for the devices kept
            head = line.split(None, 3)
            if len(head) < 4 or self._exclude.match(device := head[2]):
                continue
            stats = head[3].split()
            if len(stats) < 11:
                continue
            samples += [
                Sample(name, {"device": device}, int(stats[index]) * scale)
                for name, index, scale in _FIELDS
            ]
        return samples
