"""Benchmark: analyse and render one inspection report for a fleet of simulated hosts.

Not a pytest test; prints seconds per phase and the peak RSS (``--json`` for one
machine-readable JSON object). Target (issue 12): 1,000 hosts in <= 60 s in total.

    .venv/bin/python tests/bench/inspection_report.py [--hosts N | --quick] [--days D]
                                                      [--formats html,md,json,pdf] [--json]

1. Builds N hosts: each has a facts document (800 packages, 40 enabled units, 12
   listening ports, 3 filesystems, config checksums) and the previous inspection's
   (with a few upgraded packages, a new unit, a changed config file: drift), and D days
   (default 90) of history for memory, load and two filesystems at the step the
   collector's ``HostHistory`` reads it for an inspection (``auto_step`` with
   ``INSPECTION_MAX_POINTS``: hourly for a quarter, 4 x 2,160 points per host; the
   5-minute buckets are rolled up when read). The history points are real ``HistoryPoint`` objects;
   to keep the generator's memory bounded, hosts share 16 series shapes (flat, slow or
   fast growth, with noise), so the analysis does the full work per host while the
   points are built once. 3 % of hosts are offline, 5 % have a failed unit, 2 % report
   kernel I/O errors. 200 tickets (levels 1-4) and 50 alerts cover the period.
2. ``analyse()`` - timed.
3. ``render()`` for each format (default: html and md in both languages, json, and
   pdf in zh-CN) - each timed.

Reports seconds per phase, the report's size, the process's peak RSS (``ru_maxrss``,
which includes the generated input) and the largest PDF worker process's, and PASS when
analysing plus rendering took at most 60 s (the target for 1,000 hosts; ``--quick``
runs 100 hosts as a smoke test for CI), FAIL otherwise (the exit status is 0 either way).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make ``tests`` importable
    sys.path.insert(0, str(REPO))

from collector.history.model import HistoryPoint, HistorySeries  # noqa: E402
from collector.history.policy import auto_step  # noqa: E402
from collector.history.query import INSPECTION_MAX_POINTS  # noqa: E402
from collector.inspections.analysis import analyse  # noqa: E402
from collector.inspections.inputs import (  # noqa: E402
    AlertSummary,
    HostInput,
    InspectionInput,
    TicketSummary,
)
from collector.inspections.render import render  # noqa: E402
from tests.collector.inspection_fixtures import facts_document  # noqa: E402

DAY_MS = 86_400_000
FINE_MS = 300_000  # what the agents' samples are stored at
END_MS = 1_796_000_000_000
SHAPES = 16
TARGET_S = 60.0


def read_step(days: int) -> int:
    """The bucket the collector reads a ``days`` period's history at for an inspection."""
    return auto_step(0, days * DAY_MS, INSPECTION_MAX_POINTS)


def shape_points(
    shape: int, days: int, start_ms: int, base: float, growth: float
) -> list[HistoryPoint]:
    rng = random.Random(shape)
    step = read_step(days)
    count = days * DAY_MS // step
    samples = 30 * step // FINE_MS  # a sample every 10 s
    points = []
    for index in range(count):
        value = min(1.0, base + growth * index / count + rng.uniform(-0.02, 0.02))
        points.append(
            HistoryPoint(
                start_ms + index * step, step, samples, value * 0.95, value, min(1.0, value * 1.05)
            )
        )
    return points


def shared_shapes(days: int, start_ms: int) -> list[list[HistoryPoint]]:
    """Series shapes: flat, slow growth, fast growth (some predicted full in 90 days)."""
    growths = [0.0, 0.02, 0.05, 0.1, 0.3, 0.45]
    return [
        shape_points(shape, days, start_ms, 0.3 + 0.03 * (shape % 5), growths[shape % len(growths)])
        for shape in range(SHAPES)
    ]


def facts_for(index: int, previous: bool) -> dict[str, Any]:
    rng = random.Random(index * 2 + previous)
    packages = {
        f"pkg{n:03d}": f"1.{n % 7}.{(n + index) % 13}-{1 if previous and n % 97 == 0 else 2}"
        for n in range(800)
    }
    enabled = [f"svc{n:02d}.service" for n in range(40 - previous)]
    failed = ["backup.service"] if index % 20 == 0 and not previous else []
    mounts = [
        {
            "mountpoint": mp,
            "device": f"/dev/vd{c}1",
            "fstype": "ext4",
            "size_bytes": 100 * 2**30,
            "used_bytes": int(rng.uniform(0.2, 0.93) * 100 * 2**30),
            "inodes": 6_000_000,
            "inodes_used": 200_000,
        }
        for mp, c in (("/", "a"), ("/var", "b"), ("/srv", "c"))
    ]
    listening = [
        {"proto": "tcp", "address": "0.0.0.0", "port": 8000 + n, "process": f"app{n}"}
        for n in range(12)
    ]
    config = {
        f"/etc/app/{n}.conf": {"sha256": f"{(n + previous * (n == 0)):064x}"} for n in range(5)
    }
    io_errors = 3 if index % 50 == 7 else 0
    return facts_document(
        hostname=f"host-{index:05d}",
        packages={"manager": "dpkg", "items": packages, "count": len(packages), "truncated": False},
        units={"systemd": True, "enabled": enabled, "failed": failed},
        mounts=mounts,
        listening=listening,
        config_files=config,
        kernel_log={
            "readable": True,
            "since_s": 7948800.0,
            "oom_kills": 0,
            "io_errors": io_errors,
            "detail": "",
        },
    )


def build_hosts(count: int, days: int, start_ms: int) -> list[HostInput]:
    shapes = shared_shapes(days, start_ms)
    hosts = []
    for index in range(count):
        offline = index % 33 == 5
        history = {
            "memory_used_ratio": [HistorySeries("memory_used_ratio", {}, shapes[index % SHAPES])],
            "load_average": [
                HistorySeries("load_average", {"period": "5m"}, shapes[(index + 3) % SHAPES])
            ],
            "filesystem_used_ratio": [
                HistorySeries(
                    "filesystem_used_ratio", {"mountpoint": "/"}, shapes[(index + 5) % SHAPES]
                ),
                HistorySeries(
                    "filesystem_used_ratio", {"mountpoint": "/var"}, shapes[(index + 7) % SHAPES]
                ),
            ],
        }
        hosts.append(
            HostInput(
                agent_id=f"agent-{index:05d}",
                hostname=f"host-{index:05d}",
                outcome="offline" if offline else "collected",
                detail="not connected" if offline else "",
                run_id=None if offline else f"run-{index}",
                playbook_version="1.1.0",
                step_outputs={}
                if offline
                else {"facts": json.dumps(facts_for(index, False)) + "\n"},
                previous_step_outputs={"facts": json.dumps(facts_for(index, True)) + "\n"},
                previous_inspection_id="insp-0",
                history=history,
                connected_ms=days * DAY_MS - (index % 7) * 3_600_000,
            )
        )
    return hosts


def tickets_and_alerts(
    hosts: Sequence[HostInput], start_ms: int
) -> tuple[list[TicketSummary], list[AlertSummary]]:
    rng = random.Random(7)
    tickets = []
    for number in range(1, 201):
        created = start_ms + rng.randrange(0, END_MS - start_ms - DAY_MS)
        resolved = created + rng.randrange(600_000, 3 * DAY_MS) if number % 10 else None
        tickets.append(
            TicketSummary(
                id=number,
                level=str(1 + number % 4),
                title=f"fault {number}",
                state="closed" if resolved else "open",
                source="rule",
                hostname=hosts[number % len(hosts)].hostname,
                created_ms=created,
                acknowledged_ms=created + 600_000,
                resolved_ms=resolved,
                closed_ms=resolved,
                response_due_ms=created + 1_800_000,
                resolution_due_ms=created + DAY_MS,
                response_met=number % 9 != 0,
                resolution_met=None if resolved is None else number % 5 != 0,
                rule="filesystem_almost_full" if number % 2 else "systemd_unit_failed",
                dedup_key=f"{hosts[number % len(hosts)].hostname}|rule{number % 2}",
            )
        )
    alerts = [
        AlertSummary(
            f"alert{n}", hosts[n % len(hosts)].hostname, "3", start_ms + n * DAY_MS, 1 + n % 9
        )
        for n in range(50)
    ]
    return tickets, alerts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000, help="simulated hosts (default 1000)")
    parser.add_argument("--days", type=int, default=90, help="days of history (default 90)")
    parser.add_argument(
        "--formats",
        default="html:en,html:zh-CN,md:en,md:zh-CN,json:en,pdf:zh-CN",
        help="comma-separated FORMAT:LANG renderings to time",
    )
    parser.add_argument(
        "--quick", action="store_true", help="100 hosts (for CI; the target scales with hosts)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.hosts = 100
    if args.hosts < 1 or args.days < 2:
        parser.error("--hosts must be >= 1 and --days >= 2")
    phases: dict[str, float] = {}
    sizes: dict[str, int] = {}
    start_ms = END_MS - args.days * DAY_MS

    started = time.perf_counter()
    hosts = build_hosts(args.hosts, args.days, start_ms)
    tickets, alerts = tickets_and_alerts(hosts, start_ms)
    data = InspectionInput(
        "insp-bench", "acme", "ACME 有限公司", start_ms, END_MS, "erin", hosts, tickets, alerts
    )
    phases["generate (not counted)"] = time.perf_counter() - started

    started = time.perf_counter()
    report = analyse(data)
    phases["analyse"] = time.perf_counter() - started
    report.update(summary="bench", published={"by": "erin", "at_ms": END_MS}, signoff=None)

    for spec in filter(None, args.formats.split(",")):
        fmt, _, lang = spec.partition(":")
        started = time.perf_counter()
        sizes[spec] = len(render(report, fmt, lang or "en"))
        phases[f"render {spec}"] = time.perf_counter() - started

    total = sum(seconds for phase, seconds in phases.items() if not phase.startswith("generate"))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    target = TARGET_S  # for 1,000 hosts; a smaller fleet must fit it all the more
    findings = report["overview"]["findings"]
    result = {
        "hosts": args.hosts,
        "days": args.days,
        "history_points_per_host": 4 * args.days * DAY_MS // read_step(args.days),
        "phases_s": {phase: round(seconds, 3) for phase, seconds in phases.items()},
        "total_s": round(total, 3),
        "target_s": round(target, 3),
        "verdict": "PASS" if total <= target else "FAIL",
        "sizes_bytes": sizes,
        "findings": findings,
        "drift_changes": report["overview"]["drift_changes"],
        "peak_rss_mib": round(peak_mib, 1),
        "pdf_worker_peak_rss_mib": round(worker_peak_mib, 1),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"inspection report: {args.hosts} hosts, {args.days} days of history at "
        f"{read_step(args.days) // 60_000}-minute steps ({result['history_points_per_host']} "
        "points per host)"
    )
    for phase, seconds in phases.items():
        size = sizes.get(phase.removeprefix("render "))
        print(f"  {phase:<28} {seconds:8.2f} s" + (f"   {size / 1024:9.0f} KiB" if size else ""))
    label = "total (analyse + render)"
    print(f"  {label:<28} {total:8.2f} s   (target <= {target:.0f} s for 1,000 hosts)")
    print(f"  findings: {findings}; drift changes: {result['drift_changes']}")
    print(f"  peak RSS: {peak_mib:.0f} MiB; largest PDF worker process: {worker_peak_mib:.0f} MiB")
    print(f"  verdict: {result['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
