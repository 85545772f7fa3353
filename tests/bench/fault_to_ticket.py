"""Benchmark: fault-to-ticket latency end to end, and the collector's rule evaluation cost.

Not a pytest test; prints figures (``--json`` for one machine-readable JSON object).

    .venv/bin/python tests/bench/fault_to_ticket.py [--faults N] [--intervals default,1s]
                                                    [--agent-interval 1s] [--json]

For each evaluation interval (by default the collector's default, 5s, then 1s):

1. Starts a real collector (``tests.support.Collector``: ``python -m collector.cli serve``
   on free loopback ports, SQLite store in a temporary data dir) with a rule file made of
   the shipped default rules plus one quiet benchmark rule, and a real agent
   (``tests.support.Agent``: ``aftercare-agent enroll`` with a join token, then
   ``aftercare-agent run`` with ``interval`` = ``--agent-interval``), and waits until the
   agent's first batch shows on ``/metrics``.
2. N times: waits a random time (so the fault lands at a random phase of the agent and
   evaluation cycles), injects a fault by rewriting the rule file with a new rule whose
   threshold is below the current value (``memory_total_bytes > 0``, ``for: 0s``, a fresh
   rule name each time) and sending SIGHUP (the collector reloads its rules), then polls
   ``aftercare tickets --json`` until a ticket for that rule is listed.
3. Reports, per interval: the latency from the SIGHUP to the ticket being opened (the
   ticket's ``created_ms`` in the store: the time of the evaluation that opened it) and to
   the ticket being listed by the CLI (adds the polling: one CLI process per poll), as
   min / median / mean / max seconds; and the rule evaluation cost from the collector's
   ``aftercare_rule_evaluation_seconds`` histogram (sum / count).

Where the latency comes from. A new or changed rule starts with each host's next batch
(``RuleEngine.replace_rules``), so after the reload the fault waits for

- the agent's next batch: 0 .. agent interval (the agent samples, then sends at once);
- the collector's next evaluation: 0 .. evaluation interval (``engine.evaluate`` then
  ``TicketService.apply_alerts`` opens the ticket, ``for: 0s`` adds nothing);

so it is uniform-ish between ~0 and agent interval + evaluation interval, with a mean near
half of that. A rule's ``for`` adds itself on top. The histogram times ``engine.evaluate``
only (heartbeats and rendering the firing alerts, once per evaluation); the conditions
themselves run per batch, on ingest (``RuleEngine.observe``): ``rules_eval.py`` measures
both per host with a simulated fleet.

Exit status: 0 when every fault opened its ticket within agent interval + evaluation
interval + ``--slack`` seconds, 1 when a ticket came late or never (within ``--timeout``),
2 when the benchmark could not run (the collector's log is printed then).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make ``tests`` importable
    sys.path.insert(0, str(REPO))

from collector.datadir import DataDir  # noqa: E402
from collector.rules import default_rules_path  # noqa: E402
from common.durations import parse_duration  # noqa: E402
from tests.support import Agent, Collector  # noqa: E402

DEFAULT_EVALUATION_INTERVAL = "5s"  # aftercare-collector serve --evaluation-interval default
CUSTOMER = "bench"
HOSTNAME = "bench-host"
QUIET_RULE = {
    "name": "bench_quiet",
    "condition": {"metric": "memory_total_bytes", "op": "<", "threshold": 0},
    "level": 4,
    "annotations": {"summary": "never fires"},
}


class BenchError(Exception):
    """The benchmark could not run."""


def rule_file(extra_rule: dict[str, Any]) -> str:
    """The shipped default rules plus one benchmark group holding ``extra_rule``."""
    rules = yaml.safe_load(default_rules_path().read_text(encoding="utf-8"))
    rules["groups"].append({"name": "bench", "rules": [extra_rule]})
    return yaml.safe_dump(rules, sort_keys=False, allow_unicode=True)


def fault_rule(name: str) -> dict[str, Any]:
    """A rule that fires on the next batch of any host: a threshold below the value."""
    return {
        "name": name,
        "condition": {"metric": "memory_total_bytes", "op": ">", "threshold": 0},
        "for": "0s",
        "level": 3,
        "annotations": {"summary": "benchmark fault on {{ host }}"},
    }


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def scrape(collector: Collector) -> str:
    with urllib.request.urlopen(collector.metrics_url, timeout=10) as response:
        return str(response.read().decode())


def metric_value(text: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def seconds(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "mean": round(statistics.fmean(values), 3),
        "max": round(max(values), 3),
    }


@dataclass
class Fault:
    """One injected fault and when its ticket showed up."""

    rule: str
    injected_s: float  # unix time the SIGHUP was sent
    ticket_id: int | None = None
    opened_s: float | None = None  # the ticket's created_ms, as unix seconds
    listed_s: float | None = None  # unix time `aftercare tickets --json` first listed it
    polls: int = 0

    @property
    def to_opened(self) -> float | None:
        return None if self.opened_s is None else self.opened_s - self.injected_s

    @property
    def to_listed(self) -> float | None:
        return None if self.listed_s is None else self.listed_s - self.injected_s


@dataclass
class Run:
    """One collector + agent pair at one evaluation interval."""

    label: str
    evaluation_interval_s: float
    agent_interval_s: float
    faults: list[Fault] = field(default_factory=list)
    evaluations: float = 0.0
    evaluation_seconds: float = 0.0
    start_seconds: float = 0.0


def measure(
    label: str,
    evaluation_interval: str | None,
    args: argparse.Namespace,
    tmp: Path,
    progress: Callable[[str], None],
) -> Run:
    interval_s = parse_duration(evaluation_interval or DEFAULT_EVALUATION_INTERVAL)
    run = Run(label, interval_s, parse_duration(args.agent_interval))
    rules_path = tmp / f"rules-{label}.yaml"
    write_atomically(rules_path, rule_file(QUIET_RULE))
    extra = ["--rules", str(rules_path)]
    if evaluation_interval is not None:
        extra += ["--evaluation-interval", evaluation_interval]
    collector = Collector(tmp / f"collector-{label}", extra_args=extra)
    agent = Agent(tmp / f"agent-{label}", HOSTNAME, {"interval": args.agent_interval})
    rng = random.Random(args.seed)
    try:
        started = time.monotonic()
        try:
            collector.start()
        except AssertionError as exc:
            raise BenchError(f"the collector did not start: {exc}") from exc
        token = collector.admin_token
        enrolled = agent.enroll(collector.join_command(CUSTOMER))
        if enrolled.returncode != 0:
            raise BenchError(f"enrolment failed: {enrolled.stderr.strip()}")
        agent.start()
        wait_until(
            lambda: "aftercare_host_memory_total_bytes{" in scrape(collector),
            60,
            "the agent's first batch on /metrics",
        )
        run.start_seconds = time.monotonic() - started
        progress(f"[{label}] collector and agent up in {run.start_seconds:.1f}s")
        store = DataDir(collector.data_dir).open_store()
        try:
            for index in range(args.faults):
                time.sleep(rng.uniform(0, run.agent_interval_s + run.evaluation_interval_s))
                fault = inject(collector, rules_path, f"bench_fault_{label}_{index + 1}")
                run.faults.append(fault)
                await_ticket(collector, token, fault, args.timeout)
                if fault.ticket_id is not None:
                    ticket = store.get_ticket(fault.ticket_id)
                    fault.opened_s = None if ticket is None else ticket.created_ms / 1000
                progress(
                    f"[{label}] fault {index + 1}/{args.faults}: "
                    + (
                        f"ticket #{fault.ticket_id} opened after {fault.to_opened:.2f}s, "
                        f"listed after {fault.to_listed:.2f}s ({fault.polls} polls)"
                        if fault.to_opened is not None and fault.to_listed is not None
                        else f"NO ticket within {args.timeout:.0f}s"
                    )
                )
        finally:
            store.close()
        text = scrape(collector)
        run.evaluations = metric_value(text, "aftercare_rule_evaluation_seconds_count") or 0.0
        run.evaluation_seconds = metric_value(text, "aftercare_rule_evaluation_seconds_sum") or 0.0
    except BenchError:
        log = collector.log_text().strip()
        if log:
            print(f"collector log {collector.log_path}:\n{log[-4000:]}", file=sys.stderr)
        raise
    finally:
        agent.stop()
        collector.stop()
    return run


def inject(collector: Collector, rules_path: Path, rule: str) -> Fault:
    """Rewrite the rule file with a rule that fires at once, and SIGHUP the collector."""
    assert collector.process is not None
    write_atomically(rules_path, rule_file(fault_rule(rule)))
    fault = Fault(rule, time.time())
    collector.process.send_signal(signal.SIGHUP)
    return fault


def await_ticket(collector: Collector, token: str, fault: Fault, timeout: float) -> None:
    """Poll ``aftercare tickets --json`` until the fault's ticket is listed (or time is up)."""
    deadline = fault.injected_s + timeout
    while time.time() < deadline:
        fault.polls += 1
        listed = collector.client(token, "tickets", "--customer", CUSTOMER, "--json")
        if listed.returncode != 0:
            raise BenchError(f"aftercare tickets failed: {listed.stderr.strip()}")
        seen = time.time()
        for ticket in json.loads(listed.stdout):
            if ticket.get("rule") == fault.rule:
                fault.ticket_id = int(ticket["id"])
                fault.listed_s = seen
                return
        if "rules NOT reloaded" in collector.log_text():
            raise BenchError(f"the collector refused the rule file:\n{collector.log_text()}")
        time.sleep(0.05)


def summarise(run: Run, slack: float) -> dict[str, Any]:
    opened = [f.to_opened for f in run.faults if f.to_opened is not None]
    listed = [f.to_listed for f in run.faults if f.to_listed is not None]
    bound = run.agent_interval_s + run.evaluation_interval_s
    late = [f.rule for f in run.faults if f.to_opened is None or f.to_opened > bound + slack]
    mean_eval = run.evaluation_seconds / run.evaluations if run.evaluations else None
    return {
        "label": run.label,
        "evaluation_interval_s": run.evaluation_interval_s,
        "agent_interval_s": run.agent_interval_s,
        "expected": {
            "max_s": bound,
            "mean_s": bound / 2,
            "components": "agent interval (wait for the next batch) + evaluation interval "
            "(wait for the next evaluation); for: 0s",
        },
        "faults": len(run.faults),
        "to_opened_s": seconds(opened),
        "to_listed_s": seconds(listed),
        "polls_per_fault": round(statistics.fmean(f.polls for f in run.faults), 1)
        if run.faults
        else 0,
        "samples": [
            {
                "rule": f.rule,
                "ticket": f.ticket_id,
                "to_opened_s": None if f.to_opened is None else round(f.to_opened, 3),
                "to_listed_s": None if f.to_listed is None else round(f.to_listed, 3),
            }
            for f in run.faults
        ],
        "rule_evaluation": {
            "count": int(run.evaluations),
            "sum_s": round(run.evaluation_seconds, 6),
            "mean_ms": None if mean_eval is None else round(mean_eval * 1000, 3),
            "hosts": 1,
        },
        "late_or_missing": late,
        "startup_s": round(run.start_seconds, 1),
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        "aftercare fault-to-ticket latency (real collector + real agent, SIGHUP rule reload)",
        f"  {result['config']['faults']} faults per run, agent interval "
        f"{result['config']['agent_interval']}, shipped default rules + the fault rule, "
        f"{result['config']['cpus']} CPUs",
    ]
    for run in result["runs"]:
        opened, listed, ev = run["to_opened_s"], run["to_listed_s"], run["rule_evaluation"]

        def fmt(figures: dict[str, float]) -> str:
            if not figures:
                return "n/a"
            return " ".join(f"{k} {figures[k]:.2f}" for k in ("min", "median", "mean", "max"))

        exp = run["expected"]
        lines += [
            f"evaluation interval {run['evaluation_interval_s']:g}s ({run['label']}):",
            f"  fault -> ticket opened  s: {fmt(opened)}",
            f"  fault -> CLI lists it   s: {fmt(listed)}  "
            f"({run['polls_per_fault']} `aftercare tickets --json` polls per fault)",
            f"  expected: 0 .. {exp['max_s']:g}s (mean ~{exp['mean_s']:g}s) = agent interval "
            f"{run['agent_interval_s']:g}s + evaluation interval "
            f"{run['evaluation_interval_s']:g}s",
            "  rule evaluation (aftercare_rule_evaluation_seconds): "
            + (
                f"{ev['count']} evaluations, sum {ev['sum_s'] * 1000:.1f} ms, "
                f"mean {ev['mean_ms']:.3f} ms for {ev['hosts']} host"
                if ev["mean_ms"] is not None
                else "no evaluations recorded"
            ),
        ]
        if run["late_or_missing"]:
            lines.append(f"  LATE or missing: {', '.join(run['late_or_missing'])}")
    lines.append(
        "per-host cost of the default rules with a fleet (observe on ingest + evaluate): "
        "tests/bench/rules_eval.py"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fault-to-ticket latency end to end, with a real collector and agent."
    )
    parser.add_argument("--faults", type=int, default=5, help="faults per run (5)")
    parser.add_argument(
        "--intervals",
        default="default,1s",
        help="collector evaluation intervals to run, comma-separated; "
        f"'default' leaves the option out ({DEFAULT_EVALUATION_INTERVAL}) (default,1s)",
    )
    parser.add_argument("--agent-interval", default="1s", help="the agent's interval (1s)")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="longest wait for one ticket, s (60)"
    )
    parser.add_argument(
        "--slack", type=float, default=1.0, help="allowed processing time over the bound, s (1)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random waits (1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 1 <= args.faults <= 100:
        parser.error("--faults must be between 1 and 100")
    if not 1 <= args.timeout <= 600:
        parser.error("--timeout must be between 1 and 600 seconds")
    try:
        parse_duration(args.agent_interval)
        for interval in args.intervals.split(","):
            if interval != "default":
                parse_duration(interval)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="aftercare-bench-fault-"))
    runs = []
    try:
        for interval in args.intervals.split(","):
            label = "default" if interval == "default" else interval
            run = measure(label, None if interval == "default" else interval, args, tmp, progress)
            runs.append(summarise(run, args.slack))
    except BenchError as exc:
        print(f"fault-to-ticket benchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            progress(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "config": {
            "faults": args.faults,
            "agent_interval": args.agent_interval,
            "rules": "shipped default rules + one fault rule (memory_total_bytes > 0, for 0s)",
            "cpus": os.cpu_count(),
            "slack_s": args.slack,
        },
        "runs": runs,
    }
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 1 if any(run["late_or_missing"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
