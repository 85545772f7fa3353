"""Per-interface network counters from /proc/net/dev (the agent's network namespace).

Loopback and container veth pairs are skipped by default (``DEFAULT_EXCLUDE``): they
say nothing about the host's health and on container hosts number in the hundreds.
"""

from __future__ import annotations

import re

from agent.sampler.model import Sample
from agent.sampler.procfs import PROC, ProcFile

DEFAULT_EXCLUDE = re.compile(r"^(lo|veth.*)$")

# (metric name, column index among the 16 counters)
_FIELDS = (
    ("network_receive_bytes_total", 0),
    ("network_receive_packets_total", 1),
    ("network_receive_errors_total", 2),
    ("network_receive_drops_total", 3),
    ("network_transmit_bytes_total", 8),
    ("network_transmit_packets_total", 9),
    ("network_transmit_errors_total", 10),
    ("network_transmit_drops_total", 11),
)


class NetworkCheck:
    """Reads /proc/net/dev each cycle, keeping interfaces whose name is not excluded."""

    def __init__(self, *, proc: str = PROC, exclude: re.Pattern[str] = DEFAULT_EXCLUDE) -> None:
        self._net_dev = ProcFile(f"{proc}/net/dev")
        self._exclude = exclude

    def __call__(self) -> list[Sample]:
        """Counters per interface, labelled ``{interface}``."""
        samples: list[Sample] = []
        for line in self._net_dev.read_text().splitlines()[2:]:
            interface, sep, rest = line.partition(":")
            interface = interface.strip()
            if not sep or self._exclude.match(interface):
                continue
            counters = rest.split()
            for name, index in _FIELDS:
                samples.append(Sample(name, {"interface": interface}, float(counters[index])))
        return samples
