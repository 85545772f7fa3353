"""Benchmark: the real agent's CPU per cycle against node_exporter's per scrape, and its RSS.

Not a pytest test; prints figures and a PASS/FAIL verdict (``--json`` for one JSON object).

Each of ``--runs`` runs (default 3) starts a real collector (``tests.support.Collector``,
temporary data dir), an enrolled real ``aftercare-agent run`` (``tests.support.Agent``,
``--interval``, default 1s: the default interval's work, done every second) and
``prometheus-node-exporter`` (default collectors, free loopback port). Once the agent's
first ``--warmup`` batches are stored, both are measured **over the same window**: the
collector's ``aftercare_ingest_batches_total{result="stored"}`` counts ``--cycles`` (60)
more agent cycles while a thread scrapes node_exporter once per interval. CPU is the sum
of every thread's ``/proc/<pid>/task/<tid>/schedstat`` run time (nanoseconds, not 10 ms
clock ticks); the ``utime + stime`` ticks are reported beside it as a cross-check.

Memory: the agent's VmRSS, RssAnon, RssFile and VmHWM after the measured cycles (steady
state); then ``--playbook-runs`` runs of signed read-only playbooks (the shipped
catalogue, an empty local policy) and, ``--settle`` cycles later, VmRSS and VmHWM again.

Targets (issue 17): agent CPU per cycle <= 0.33 x node_exporter CPU per scrape, judged on
the figures pooled over all runs (total CPU / total cycles on each side; the per-run
ratios give the spread); steady-state VmRSS <= 32 MiB in every run; VmRSS after the
playbook runs < 36 MiB in every run. Exit status 0 when the benchmark ran (whatever the
verdict), 1 when it could not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make ``tests`` importable
    sys.path.insert(0, str(REPO))

from playbooks.shipped import dev_public_key_path  # noqa: E402
from tests.support import Agent, Collector, wait_for  # noqa: E402

STORED = re.compile(r'^aftercare_ingest_batches_total\{result="stored"\} ([0-9.e+]+)$', re.M)
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
CPU_FACTOR = 0.33
STEADY_RSS_LIMIT_MIB = 32.0
AFTER_RUNS_RSS_LIMIT_MIB = 36.0
PLAYBOOKS = ("cpu-load", "memory-pressure", "time-sync")
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOSTNAME = "bench-host"
FINISHED = {"ok", "failed", "timed_out", "cancelled", "refused", "undeliverable"}


class Cpu:
    """CPU used so far by every thread of a process: schedstat ns, and utime+stime ticks."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.ns, self.ticks = self._read()

    def _read(self) -> tuple[int, int]:
        ns = 0
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                ns += int(Path(f"/proc/{self.pid}/task/{tid}/schedstat").read_text().split()[0])
            except (OSError, ValueError):
                continue  # the thread ended meanwhile
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return ns, int(fields[11]) + int(fields[12])

    def since(self) -> tuple[float, float]:
        """Milliseconds of CPU since this object was made: (schedstat, ticks)."""
        ns, ticks = self._read()
        return (ns - self.ns) / 1e6, (ticks - self.ticks) * 1000 / CLK_TCK


def status_mib(pid: int, field: str) -> float:
    """A ``kB`` field of /proc/<pid>/status, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def memory(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon, RssFile and VmHWM of ``pid`` in MiB."""
    return {f: status_mib(pid, f) for f in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(url: str) -> int:
    """GET ``url`` and return the body size."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read())


class NodeExporter:
    """node_exporter on a free loopback port, scraped once per interval by a thread."""

    def __init__(self, binary: str, interval: float) -> None:
        self.url = ""
        self.scrapes = 0
        self._binary = binary
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._scrape_loop, daemon=True)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.process = subprocess.Popen(
            [self._binary, f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"node_exporter exited with {self.process.returncode}")
            try:
                scrape(self.url)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._thread.start()

    def _scrape_loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                scrape(self.url)
                self.scrapes += 1
            except OSError:
                pass
            next_at += self._interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


def exporter_binary() -> str | None:
    """node_exporter's path, or None when it is not installed."""
    if os.access(NODE_EXPORTER, os.X_OK):
        return NODE_EXPORTER
    return shutil.which("node_exporter") or shutil.which("prometheus-node-exporter")


def stored_batches(collector: Collector) -> int:
    """Batches the collector has stored so far (its /metrics counter)."""
    match = STORED.search(collector.metrics())
    return int(float(match.group(1))) if match else 0


def wait_batches(collector: Collector, agent: Agent, count: int, deadline: float) -> int:
    """Poll until at least ``count`` batches are stored; return the count."""
    while True:
        if agent.process is None or agent.process.poll() is not None:
            raise RuntimeError(f"the agent exited:\n{agent.log_text()[-3000:]}")
        stored = stored_batches(collector)
        if stored >= count:
            return stored
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {stored} of {count} batches stored in time")
        time.sleep(0.02)


def run_playbooks(collector: Collector, token: str, count: int) -> list[str]:
    """Run ``count`` signed read-only playbooks one after the other; their final states."""
    states = []
    for i in range(count):
        started = collector.client_json(
            token, "run", PLAYBOOKS[i % len(PLAYBOOKS)], "--host", HOSTNAME
        )
        run_id: str = started["run_id"]

        def finished(run_id: str = run_id) -> str | None:
            state: str = collector.client_json(token, "run", "show", run_id)["run"]["state"]
            return state if state in FINISHED else None

        states.append(wait_for(finished, 60, f"playbook run {run_id} finished"))
    return states


def measure_run(args: argparse.Namespace, binary: str, workdir: Path) -> dict[str, Any]:
    """One run: agent and node_exporter over the same cycles, then memory around playbooks."""
    policy = workdir / "policy.toml"
    policy.write_text("")
    policy.chmod(0o600)
    collector = Collector(workdir / "collector")
    agent = Agent(
        workdir / "agent",
        HOSTNAME,
        {
            "interval": f"{args.interval:g}s",
            "playbooks": {"trusted_keys": [str(dev_public_key_path())], "policy": str(policy)},
        },
    )
    exporter = NodeExporter(binary, args.interval)
    try:
        collector.start()
        enrolled = agent.enroll(collector.join_command("bench"))
        if enrolled.returncode != 0:
            raise RuntimeError(f"enrol failed: {enrolled.stderr}")
        agent.start()
        assert agent.process is not None
        pid = agent.process.pid
        exporter.start()
        assert exporter.process is not None
        deadline = time.monotonic() + 60 + 3 * (args.warmup + args.cycles) * args.interval
        start = wait_batches(collector, agent, args.warmup, deadline)
        agent_cpu, exporter_cpu = Cpu(pid), Cpu(exporter.process.pid)
        scrapes_before, began = exporter.scrapes, time.monotonic()
        end = wait_batches(collector, agent, start + args.cycles, deadline)
        agent_ms, agent_tick_ms = agent_cpu.since()
        exporter_ms, exporter_tick_ms = exporter_cpu.since()
        scrapes, seconds = exporter.scrapes - scrapes_before, time.monotonic() - began
        exporter.stop()
        cycles = end - start
        steady = memory(pid)
        token = collector.add_user("erin", "engineer")
        states = run_playbooks(collector, token, args.playbook_runs)
        settled = stored_batches(collector) + args.settle
        wait_batches(collector, agent, settled, time.monotonic() + 30 + 3 * args.settle)
        after = memory(pid)
        return {
            "cycles": cycles,
            "scrapes": scrapes,
            "seconds": seconds,
            "agent_cpu_ms": agent_ms,
            "agent_cpu_ms_per_cycle": agent_ms / cycles,
            "agent_tick_ms_per_cycle": agent_tick_ms / cycles,
            "exporter_cpu_ms": exporter_ms,
            "exporter_cpu_ms_per_scrape": exporter_ms / max(1, scrapes),
            "exporter_tick_ms_per_scrape": exporter_tick_ms / max(1, scrapes),
            "ratio": (agent_ms / cycles) / (exporter_ms / max(1, scrapes)),
            "steady": steady,
            "playbook_runs": states,
            "after_playbooks": after,
        }
    finally:
        exporter.stop()
        agent.stop()
        collector.stop()


def spread(values: list[float]) -> dict[str, float]:
    """min / median / max."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def verdict(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled CPU ratio and the memory limits of every run against the targets."""
    agent = sum(r["agent_cpu_ms"] for r in runs) / sum(r["cycles"] for r in runs)
    exporter = sum(r["exporter_cpu_ms"] for r in runs) / max(1, sum(r["scrapes"] for r in runs))
    ratio = agent / exporter
    steady = max(r["steady"]["VmRSS"] for r in runs)
    after = max(r["after_playbooks"]["VmRSS"] for r in runs)
    return {
        "agent_cpu_ms_per_cycle": agent,
        "exporter_cpu_ms_per_scrape": exporter,
        "ratio": ratio,
        "ratio_spread": spread([r["ratio"] for r in runs]),
        "agent_spread": spread([r["agent_cpu_ms_per_cycle"] for r in runs]),
        "exporter_spread": spread([r["exporter_cpu_ms_per_scrape"] for r in runs]),
        "cpu_ok": ratio <= CPU_FACTOR,
        "steady_rss_mib": steady,
        "steady_rss_ok": steady <= STEADY_RSS_LIMIT_MIB,
        "after_playbooks_rss_mib": after,
        "after_playbooks_rss_ok": after < AFTER_RUNS_RSS_LIMIT_MIB,
        "hwm_mib": max(r["after_playbooks"]["VmHWM"] for r in runs),
    }


def report(runs: list[dict[str, Any]], result: dict[str, Any]) -> None:
    """Human-readable report."""
    for i, r in enumerate(runs, 1):
        s, a = r["steady"], r["after_playbooks"]
        print(
            f"run {i}: agent {r['agent_cpu_ms_per_cycle']:.2f} ms/cycle over {r['cycles']} "
            f"cycles (ticks {r['agent_tick_ms_per_cycle']:.2f}); node_exporter "
            f"{r['exporter_cpu_ms_per_scrape']:.2f} ms/scrape over {r['scrapes']} scrapes "
            f"(ticks {r['exporter_tick_ms_per_scrape']:.2f}); ratio {r['ratio']:.3f}; "
            f"{r['seconds']:.0f} s"
        )
        print(
            f"       agent memory steady: VmRSS {s['VmRSS']:.1f} MiB (RssAnon {s['RssAnon']:.1f},"
            f" RssFile {s['RssFile']:.1f}), VmHWM {s['VmHWM']:.1f}; after "
            f"{len(r['playbook_runs'])} playbook runs "
            f"({', '.join(sorted(set(r['playbook_runs'])))})"
            f": VmRSS {a['VmRSS']:.1f} MiB, VmHWM {a['VmHWM']:.1f}"
        )
    rs, ag, ex = result["ratio_spread"], result["agent_spread"], result["exporter_spread"]
    print(
        f"spread over {len(runs)} runs: agent {ag['min']:.2f}/{ag['median']:.2f}/{ag['max']:.2f}"
        f" ms/cycle, node_exporter {ex['min']:.2f}/{ex['median']:.2f}/{ex['max']:.2f} ms/scrape,"
        f" ratio {rs['min']:.3f}/{rs['median']:.3f}/{rs['max']:.3f} (min/median/max)"
    )

    def word(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print(
        f"CPU {word(result['cpu_ok'])}: pooled {result['agent_cpu_ms_per_cycle']:.2f} ms per "
        f"cycle / {result['exporter_cpu_ms_per_scrape']:.2f} ms per scrape = "
        f"{result['ratio']:.3f} (target <= {CPU_FACTOR})"
    )
    print(
        f"RSS steady {word(result['steady_rss_ok'])}: {result['steady_rss_mib']:.1f} MiB "
        f"(worst run; target <= {STEADY_RSS_LIMIT_MIB:.0f} MiB)"
    )
    print(
        f"RSS after playbook runs {word(result['after_playbooks_rss_ok'])}: "
        f"{result['after_playbooks_rss_mib']:.1f} MiB (worst run; target < "
        f"{AFTER_RUNS_RSS_LIMIT_MIB:.0f} MiB); VmHWM {result['hwm_mib']:.1f} MiB"
    )
    ok = result["cpu_ok"] and result["steady_rss_ok"] and result["after_playbooks_rss_ok"]
    print(f"verdict: {word(ok)}")


def main() -> int:
    """Parse arguments, measure, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="independent runs (default 3)")
    parser.add_argument("--cycles", type=int, default=60, help="agent cycles measured per run")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between cycles")
    parser.add_argument("--warmup", type=int, default=3, help="agent batches stored first")
    parser.add_argument(
        "--playbook-runs", type=int, default=3, help="playbook runs before the second RSS reading"
    )
    parser.add_argument("--settle", type=int, default=3, help="cycles after the playbook runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    binary = exporter_binary()
    if binary is None:
        print("node_exporter is not installed: apt-get install prometheus-node-exporter")
        return 1
    runs = []
    for _ in range(args.runs):
        workdir = Path(tempfile.mkdtemp(prefix="aftercare-bench-agent-"))
        try:
            runs.append(measure_run(args, binary, workdir))
        except (RuntimeError, AssertionError, OSError, subprocess.SubprocessError) as exc:
            print(f"could not run the agent benchmark: {exc}", file=sys.stderr)
            return 1
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    result = verdict(runs)
    if args.json:
        print(json.dumps({"runs": runs, "verdict": result}, indent=2))
    else:
        report(runs, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
