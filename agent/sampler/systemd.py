"""Failed systemd units, from ``systemctl``, refreshed at most once a minute.

Only planned where systemd is the running init (``/run/systemd/system`` exists).
Starting ``systemctl`` costs far more than the rest of a cycle, so its answer - or
its error - is cached for ``refresh_seconds`` and replayed in between; the command
runs with a timeout. Whether systemd runs is looked up again as often (the init
system does not change under a running host). Yields ``systemd_units_failed`` and
``systemd_unit_failed{unit}``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

from agent.sampler.errors import SystemctlError
from agent.sampler.model import Probe, Sample, gauge
from agent.sampler.refresh import Refresh
from common.clock import Clock

RUN_DIR = "/run/systemd/system"
COMMAND = (
    "systemctl",
    "list-units",
    "--state=failed",
    "--all",
    "--plain",
    "--no-legend",
    "--no-pager",
)


def parse_failed_units(output: str) -> list[str]:
    """Unit names from ``systemctl list-units --plain --no-legend`` output."""
    units = []
    for line in output.splitlines():
        fields = line.split()
        if fields and fields[0] not in ("●", "*"):
            units.append(fields[0])
        elif len(fields) > 1:
            units.append(fields[1])
    return units


def run_systemctl(timeout: float, command: Sequence[str] = COMMAND) -> str:
    """Run ``command`` and return its stdout; raises ``SystemctlError`` on any failure."""
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
            env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
    except subprocess.TimeoutExpired as exc:
        raise SystemctlError(f"systemctl timed out after {timeout:.1f}s") from exc
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise SystemctlError(f"systemctl exited {exc.returncode}: {detail[0]}") from exc
    except OSError as exc:
        raise SystemctlError(f"cannot run systemctl: {exc}") from exc
    return done.stdout


class SystemdCheck:
    """Caches the failed-unit list; ``runner``, ``clock`` and ``present`` are injectable.

    ``timeout`` bounds one systemctl run.
    """

    name = "systemd"
    blocking = True  # runs systemctl

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        refresh_seconds: float = 60.0,
        runner: Callable[[float], str] = run_systemctl,
        clock: Clock = time.monotonic,
        present: Callable[[], bool] = lambda: os.path.isdir(RUN_DIR),
    ) -> None:
        self._timeout = timeout
        self._runner = runner
        self._present = present
        self._look = Refresh(refresh_seconds, clock)  # is systemd the init?
        self._is_present = False
        self._fetch = Refresh(refresh_seconds, clock)  # run systemctl again?
        self._units: list[str] = []
        self._error: str | None = None

    def plan(self) -> Mapping[str, Probe]:
        """One probe when systemd runs this host, none otherwise."""
        if self._look.due():
            self._is_present = self._present()
        return {self.name: self.collect} if self._is_present else {}

    def collect(self) -> list[Sample]:
        """Samples from the cached unit list, refreshing it first when stale."""
        if self._fetch.due():
            try:
                self._units, self._error = parse_failed_units(self._runner(self._timeout)), None
            except Exception as exc:
                self._error = str(exc) if isinstance(exc, SystemctlError) else repr(exc)
        if self._error is not None:
            raise SystemctlError(self._error)
        samples = [gauge("systemd_units_failed", len(self._units))]
        samples += [gauge("systemd_unit_failed", 1, unit=unit) for unit in self._units]
        return samples
