"""Benchmark: rule evaluation cost per host per cycle with the default rules.

Not a pytest test; prints figures (``--json`` for one machine-readable JSON object).

    .venv/bin/python tests/bench/rules_eval.py [--hosts N] [--cycles C] [--interval S]
                                               [--quick] [--json]

1. Loads ``collector/rules/default.yaml`` into a ``RuleEngine`` (in-process: the engine
   is pure Python with no I/O, so this is the collector's cost without the network).
2. Warms up: every host sends 6 hours of history at a 1-minute step, which fills the
   windows of the ``predict`` (6 h) and ``rate`` (10 min) rules to their steady size
   (the 6 h windows are thinned to about one point per 3 minutes, so a shorter
   interval does not add points). The engine's memory is then measured by walking
   every object reachable from it (``gc.get_referents``; the shared rule set excluded).
3. Measures C cycles at the agent interval: each host's batch (~100 samples with the
   names and labels of docs/metrics.md, from ``tests.collector.test_rules_defaults``)
   goes to ``observe`` (windows + every condition), timed per call; after each cycle
   one ``evaluate(now)`` (heartbeats + rendering the firing alerts) for all hosts.
   Batches are built outside the timed calls.

A fleet mix keeps some alerts firing, as in real life: 5 % of hosts with a full
filesystem, 4 % with a failed unit, 2 % with a filesystem filling up, 1 % silent.
Reports µs per host per cycle (observe p50/p99/mean, evaluate, total), what that is
for the whole fleet per cycle and as a share of one CPU core, and the state held.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make ``tests`` importable
    sys.path.insert(0, str(REPO))

from collector.rules import HostRef, RuleEngine, default_rules_path, load_rules  # noqa: E402
from collector.store.base import StoredSample  # noqa: E402
from tests.collector.test_rules_defaults import healthy_samples, set_value  # noqa: E402

START_MS = 1_700_000_000_000
WARMUP_HOURS = 6.0
WARMUP_STEP_S = 60.0


def host_batch(index: int, t: float) -> list[StoredSample] | None:
    """Host ``index``'s batch at ``t`` seconds, or None if it is silent."""
    if index % 100 == 3 and t > 600:
        return None
    samples = healthy_samples(t)
    if index % 20 == 0:
        samples = set_value(samples, "filesystem_used_ratio", 0.95, mountpoint="/var")
    if index % 25 == 1:
        samples = set_value(samples, "systemd_units_failed", 1)
        samples.append(StoredSample("systemd_unit_failed", {"unit": "app.service"}, 1.0))
    if index % 50 == 2:
        filling = 0.5 + 0.03 * t / 3600
        samples = set_value(samples, "filesystem_used_ratio", filling, mountpoint="/data")
    return samples


def deep_size(root: object, exclude: object) -> int:
    """Bytes of every object reachable from ``root`` and not from ``exclude``."""
    seen = {id(exclude)}
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | types.ModuleType | types.FunctionType):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def warm_up(engine: RuleEngine, hosts: list[HostRef]) -> float:
    """Feed 6 h of history; return the end time in seconds."""
    t = 0.0
    while t < WARMUP_HOURS * 3600:
        for index, host in enumerate(hosts):
            batch = host_batch(index, t)
            if batch is not None:
                engine.observe(host, START_MS + int(t * 1000), batch)
        t += WARMUP_STEP_S
    return t


def measure(
    engine: RuleEngine, hosts: list[HostRef], start_s: float, cycles: int, interval: float
) -> dict[str, Any]:
    observe_ns: list[int] = []
    evaluate_ns: list[int] = []
    alerts = 0
    for cycle in range(cycles):
        t = start_s + cycle * interval
        at_ms = START_MS + int(t * 1000)
        for index, host in enumerate(hosts):
            batch = host_batch(index, t)
            if batch is None:
                continue
            began = time.perf_counter_ns()
            engine.observe(host, at_ms, batch)
            observe_ns.append(time.perf_counter_ns() - began)
        began = time.perf_counter_ns()
        alerts = len(engine.evaluate(at_ms))
        evaluate_ns.append(time.perf_counter_ns() - began)
    ordered = sorted(observe_ns)
    per_host_evaluate = statistics.fmean(evaluate_ns) / len(hosts)
    observe_mean = statistics.fmean(observe_ns)
    total_us = (observe_mean + per_host_evaluate) / 1000
    return {
        "observe_us": {
            "p50": ordered[len(ordered) // 2] / 1000,
            "p99": ordered[int(len(ordered) * 0.99)] / 1000,
            "mean": observe_mean / 1000,
        },
        "evaluate_us_per_host": per_host_evaluate / 1000,
        "evaluate_ms_per_cycle": statistics.fmean(evaluate_ns) / 1e6,
        "total_us_per_host": total_us,
        "fleet_ms_per_cycle": total_us * len(hosts) / 1000,
        "cpu_share_of_one_core": total_us * len(hosts) / 1e6 / interval,
        "firing_alerts": alerts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--interval", type=float, default=15.0, help="agent interval, s")
    parser.add_argument("--quick", action="store_true", help="100 hosts, 10 cycles")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.hosts, args.cycles = 100, 10
    rules = load_rules(default_rules_path())
    engine = RuleEngine(rules)
    hosts = [
        HostRef(f"agent-{i:05d}", f"customer-{i % 7}", f"host{i:05d}") for i in range(args.hosts)
    ]
    end_s = warm_up(engine, hosts)
    held = deep_size(engine, exclude=rules)
    figures = measure(engine, hosts, end_s, args.cycles, args.interval)
    stats = engine.stats()
    report: dict[str, Any] = {
        "rules": len(rules),
        "hosts": args.hosts,
        "samples_per_host": len(healthy_samples()),
        "cycles": args.cycles,
        "interval_s": args.interval,
        **figures,
        "state": {
            "pending_or_firing": stats.states,
            "windows": stats.windows,
            "window_points": stats.window_points,
            "memory_mib": held / 2**20,
            "memory_kib_per_host": held / 1024 / args.hosts,
        },
        "python": sys.version.split()[0],
    }
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def render(r: dict[str, Any]) -> str:
    o, s = r["observe_us"], r["state"]
    return "\n".join(
        [
            f"rule evaluation: {r['rules']} default rules, {r['hosts']} hosts x "
            f"{r['samples_per_host']} samples, {r['cycles']} cycles at {r['interval_s']:g} s "
            f"(Python {r['python']})",
            f"  observe  (windows + conditions)  p50 {o['p50']:7.1f} us  p99 {o['p99']:7.1f} us"
            f"  mean {o['mean']:7.1f} us per host",
            f"  evaluate (heartbeats + alerts)   {r['evaluate_us_per_host']:7.1f} us per host "
            f"({r['evaluate_ms_per_cycle']:.2f} ms per cycle, {r['firing_alerts']} firing)",
            f"  total                            {r['total_us_per_host']:7.1f} us per host "
            f"per cycle",
            f"  fleet: {r['fleet_ms_per_cycle']:.1f} ms per {r['interval_s']:g} s cycle = "
            f"{100 * r['cpu_share_of_one_core']:.2f} % of one core",
            f"  state: {s['pending_or_firing']} pending/firing, {s['windows']} windows with "
            f"{s['window_points']} points; {s['memory_mib']:.1f} MiB "
            f"({s['memory_kib_per_host']:.1f} KiB per host)",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
