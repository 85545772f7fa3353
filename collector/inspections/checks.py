"""The finding rules ("checks") the recommendation catalogue can name (pure).

A check looks at one host - its inspection outcome, its facts, its capacity trends
and availability - and returns a ``Hit`` per subject at fault (a mountpoint, a unit,
or "" for the host as a whole), with the values its catalogue texts may use
(``{subject}``, ``{count}``, ``{percent}``, ``{date}``, ...) and the evidence.
Which checks exist, and their parameters: ``catalogue.CHECKS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from collector.inspections.capacity import DAY_MS, CapacityTrend
from collector.inspections.facts import HostFacts
from collector.inspections.inputs import HostInput

__all__ = ["CHECK_FUNCTIONS", "Availability", "Hit", "HostView", "day", "percent", "span"]


@dataclass(frozen=True)
class Availability:
    """How much of the period the host was connected, and its data gaps."""

    period_ms: int
    connected_ms: int
    gap_count: int
    gap_ms: int

    @property
    def ratio(self) -> float | None:
        return None if self.period_ms <= 0 else min(1.0, self.connected_ms / self.period_ms)


@dataclass(frozen=True)
class HostView:
    """Everything the checks may look at for one host."""

    host: HostInput
    facts: HostFacts | None
    facts_problem: str  # why ``facts`` is None ("" when it is not)
    trends: Sequence[CapacityTrend]
    availability: Availability
    now_ms: int  # the end of the period


@dataclass(frozen=True)
class Hit:
    """A check found something on ``subject``."""

    subject: str
    evidence: list[str]
    values: dict[str, str] = field(default_factory=dict)


Check = Callable[[HostView, Mapping[str, float]], list[Hit]]


def percent(ratio: float) -> str:
    return f"{ratio * 100:.1f}%"


def day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def span(ms: int) -> str:
    minutes = ms // 60000
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 2 * 1440:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} d"


def host_unreachable(view: HostView, params: Mapping[str, float]) -> list[Hit]:
    host = view.host
    if host.outcome == "collected":
        return []
    evidence = [f"outcome: {host.outcome}"] + ([f"detail: {host.detail}"] if host.detail else [])
    return [Hit("", evidence, {"outcome": host.outcome})]


def no_facts(view: HostView, params: Mapping[str, float]) -> list[Hit]:
    if view.host.outcome != "collected" or view.facts is not None:
        return []
    return [Hit("", [f"no data: {view.facts_problem}"], {"reason": view.facts_problem})]


def filesystem_predicted_full(view: HostView, params: Mapping[str, float]) -> list[Hit]:
    horizon = view.now_ms + int(params["within_days"] * DAY_MS)
    hits = []
    for trend in view.trends:
        full = trend.predicted_full_ms
        if trend.resource != "filesystem" or full is None or full > horizon:
            continue
        growth = percent(trend.growth_per_day or 0.0)
        evidence = [
            f"{trend.subject}: {percent(trend.last)} used now, growing {growth} per day "
            f"(linear fit over {trend.points} history points)",
            f"{trend.subject}: predicted full on {day(full)}",
        ]
        values = {"date": day(full), "percent": percent(trend.last)}
        hits.append(Hit(trend.subject, evidence, values))
    return hits


def filesystem_usage(view: HostView, params: Mapping[str, float]) -> list[Hit]:
    return _filesystem_ratio(view, params["above"], inodes=False)


def filesystem_inodes(view: HostView, params: Mapping[str, float]) -> list[Hit]:
    return _filesystem_ratio(view, params["above"], inodes=True)


def _filesystem_ratio(view: HostView, above: float, *, inodes: bool) -> list[Hit]:
    what = "inodes" if inodes else "space"
    current: dict[str, tuple[float, str]] = {}
    if view.facts is not None:
        for mount in view.facts.mounts:
            ratio = mount.inodes_ratio if inodes else mount.used_ratio
            if ratio is not None:
                current[mount.mountpoint] = (ratio, f"{mount.device} ({mount.fstype})")
    elif not inodes:  # no facts: the collector's own history still says how full it was
        for trend in view.trends:
            if trend.resource == "filesystem":
                current[trend.subject] = (trend.last, "from the metric history")
    hits = []
    for mountpoint, (ratio, where) in sorted(current.items()):
        if ratio > above:
            evidence = [
                f"{mountpoint} {where}: {percent(ratio)} of {what} used (> {percent(above)})"
            ]
            hits.append(Hit(mountpoint, evidence, {"percent": percent(ratio)}))
    return hits


def failed_units(view: HostView, params: Mapping[str, float]) -> list[Hit]:
    if view.facts is None:
        return []
    return [Hit(unit, [f"{unit}: failed"]) for unit in view.facts.failed_units]


def kernel_io_errors(view: HostView, params: Mapping[str, float]) -> list[Hit]:
    count = view.facts.io_errors if view.facts is not None else None
    if count is None or count < params["at_least"]:
        return []
    return [Hit("", [f"{count} kernel I/O error messages in the period"], {"count": str(count)})]


def oom_kills(view: HostView, params: Mapping[str, float]) -> list[Hit]:
    count = view.facts.oom_kills if view.facts is not None else None
    if count is None or count < params["at_least"]:
        return []
    return [
        Hit(
            "", [f"{count} processes killed by the OOM killer in the period"], {"count": str(count)}
        )
    ]


def memory_high(view: HostView, params: Mapping[str, float]) -> list[Hit]:
    hits = []
    for trend in view.trends:
        if trend.resource == "memory" and trend.p95 > params["p95_above"]:
            evidence = [f"memory used: p95 {percent(trend.p95)}, max {percent(trend.max)}"]
            hits.append(Hit("", evidence, {"percent": percent(trend.p95)}))
    return hits[:1]


def clock_unsynchronised(view: HostView, params: Mapping[str, float]) -> list[Hit]:
    if view.facts is None or view.facts.time_synchronized is not False:
        return []
    offset = view.facts.time_offset_ms
    evidence = ["the kernel reports the clock unsynchronised (adjtimex)"]
    if offset is not None:
        evidence.append(f"offset {offset:.3f} ms")
    return [Hit("", evidence)]


def reboot_required(view: HostView, params: Mapping[str, float]) -> list[Hit]:
    if view.facts is None or view.facts.reboot_required is not True:
        return []
    return [Hit("", ["/run/reboot-required is present"])]


def security_updates(view: HostView, params: Mapping[str, float]) -> list[Hit]:
    count = view.facts.security_updates if view.facts is not None else None
    if count is None or count < params["at_least"]:
        return []
    return [Hit("", [f"{count} security updates pending (package manager)"], {"count": str(count)})]


def data_gaps(view: HostView, params: Mapping[str, float]) -> list[Hit]:
    availability = view.availability
    if availability.gap_count == 0 or availability.gap_ms < params["at_least_minutes"] * 60000:
        return []
    evidence = [
        f"{availability.gap_count} gaps, {span(availability.gap_ms)} without data",
        *(
            f"{day(g.start_ms)}: {span(g.end_ms - g.start_ms)} ({g.reason})"
            for g in view.host.gaps[:10]
        ),
    ]
    values = {"count": str(availability.gap_count), "duration": span(availability.gap_ms)}
    return [Hit("", evidence, values)]


CHECK_FUNCTIONS: Mapping[str, Check] = {
    "host_unreachable": host_unreachable,
    "no_facts": no_facts,
    "filesystem_predicted_full": filesystem_predicted_full,
    "filesystem_usage": filesystem_usage,
    "filesystem_inodes": filesystem_inodes,
    "failed_units": failed_units,
    "kernel_io_errors": kernel_io_errors,
    "oom_kills": oom_kills,
    "memory_high": memory_high,
    "clock_unsynchronised": clock_unsynchronised,
    "reboot_required": reboot_required,
    "security_updates": security_updates,
    "data_gaps": data_gaps,
}
