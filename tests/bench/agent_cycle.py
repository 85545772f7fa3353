"""Benchmark: the agent sampler's cost per cycle against node_exporter's per scrape.

Not a pytest test; prints figures (``--json`` for machine-readable output).

Agent: a fresh Python subprocess imports what ``aftercare-agent run`` imports (its own
gRPC client on h2, protobuf, psutil, the generated protocol, the sampler), warms up, then runs
``--cycles`` cycles ``--interval`` apart, each serialised as a ``MetricBatch``. CPU is
the process's CPU time (all threads) per cycle; RSS is VmRSS / VmHWM at the end.

node_exporter: started with its default collectors on a free 127.0.0.1 port and
scraped ``--scrapes`` times with urllib at the same interval. CPU is utime + stime
from /proc/<pid>/stat (clock ticks) per scrape; RSS from /proc/<pid>/status.

Real agent: a real collector (``tests.support.Collector``, temporary data dir) and an
enrolled real ``aftercare-agent run`` (``tests.support.Agent``, ``--agent-interval``,
default 1s). After its first ``--agent-warmup`` batches are stored, the collector's
``aftercare_ingest_batches_total{result="stored"}`` counts ``--agent-cycles`` more while
/proc/<pid>/stat gives the agent's CPU over them (sampling, spooling to disk, the gRPC
stream and its acks: the whole process); then VmRSS, RssAnon, RssFile and VmHWM from
/proc/<pid>/status.

Targets: agent CPU per cycle <= 0.5 x node_exporter CPU per scrape; agent RSS <= 40 MiB
(checked for the sampler subprocess and, separately, for the real agent process).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make ``tests`` importable
    sys.path.insert(0, str(REPO))

from tests.support import Agent, Collector  # noqa: E402

STORED = re.compile(r'^aftercare_ingest_batches_total\{result="stored"\} ([0-9.e+]+)$', re.M)
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
RSS_LIMIT_MIB = 40.0
CPU_FACTOR = 0.5
CLK_TCK = os.sysconf("SC_CLK_TCK")

AGENT_CHILD = r"""
import json, sys, time
import agent.cli  # everything `aftercare-agent run` imports (agent.rpc, h2, protobuf, psutil)
from agent.runner import cycle_to_batch
from agent.sampler import Sampler

cycles, interval, warmup = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])

def batch(sequence, cycle):
    message = cycle_to_batch(cycle)
    message.sequence = sequence
    return message.SerializeToString()

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

sampler = Sampler()
for i in range(warmup):
    batch(i, sampler.collect())
    time.sleep(interval)
cpu = wall = serialise = 0.0
size = samples = 0
failures = set()
for i in range(cycles):
    c0, w0 = time.process_time(), time.perf_counter()
    cycle = sampler.collect()
    c1 = time.process_time()
    data = batch(warmup + i, cycle)
    c2 = time.process_time()
    cpu += c2 - c0
    serialise += c2 - c1
    wall += time.perf_counter() - w0
    size, samples = len(data), len(cycle.samples)
    failures.update(f"{f.check}: {f.error}" for f in cycle.failures)
    time.sleep(interval)
sampler.close()
print(json.dumps({
    "cycles": cycles,
    "cpu_ms_per_cycle": cpu * 1000 / cycles,
    "serialise_ms_per_cycle": serialise * 1000 / cycles,
    "wall_ms_per_cycle": wall * 1000 / cycles,
    "samples_per_cycle": samples,
    "batch_bytes": size,
    "rss_mib": status("VmRSS"),
    "peak_rss_mib": status("VmHWM"),
    "failures": sorted(failures),
}))
"""


def measure_agent(cycles: int, interval: float, warmup: int) -> dict[str, Any]:
    """Run the agent sampler in a fresh interpreter and return its figures."""
    done = subprocess.run(
        [sys.executable, "-c", AGENT_CHILD, str(cycles), str(interval), str(warmup)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=90,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def status_mib(pid: int, field: str) -> float:
    """A ``kB`` field of /proc/<pid>/status, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def scrape(url: str) -> int:
    """GET ``url`` and return the body size."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read())


def wait_ready(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    """Poll ``url`` until it answers; raise if the exporter exits or time runs out."""
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"node_exporter exited with {process.returncode}")
        try:
            scrape(url)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def measure_node_exporter(scrapes: int, interval: float, warmup: int) -> dict[str, Any]:
    """Start node_exporter, scrape it repeatedly, return its CPU and RSS figures."""
    binary = NODE_EXPORTER if os.access(NODE_EXPORTER, os.X_OK) else None
    binary = binary or shutil.which("node_exporter") or shutil.which("prometheus-node-exporter")
    if binary is None:
        return {"skipped": "install prometheus-node-exporter"}
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [binary, f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log
        )
        try:
            wait_ready(url, process, time.monotonic() + 15)
            for _ in range(warmup):
                scrape(url)
                time.sleep(interval)
            before = cpu_ticks(process.pid)
            size = 0
            for _ in range(scrapes):
                size = scrape(url)
                time.sleep(interval)
            ticks = cpu_ticks(process.pid) - before
            return {
                "binary": binary,
                "scrapes": scrapes,
                "cpu_ms_per_scrape": ticks * 1000 / CLK_TCK / scrapes,
                "cpu_resolution_ms_per_scrape": 1000 / CLK_TCK / scrapes,
                "response_bytes": size,
                "rss_mib": status_mib(process.pid, "VmRSS"),
                "peak_rss_mib": status_mib(process.pid, "VmHWM"),
            }
        finally:
            process.terminate()
            process.wait(timeout=10)


def stored_batches(collector: Collector) -> int:
    """Batches the collector has stored so far (its /metrics counter)."""
    match = STORED.search(collector.metrics())
    return int(float(match.group(1))) if match else 0


def wait_batches(
    collector: Collector, agent: Agent, count: int, deadline: float
) -> tuple[int, float]:
    """Poll until at least ``count`` batches are stored; return the count and the time."""
    while True:
        if agent.process is None or agent.process.poll() is not None:
            raise RuntimeError(f"the agent exited:\n{agent.log_text()[-3000:]}")
        stored = stored_batches(collector)
        if stored >= count:
            return stored, time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {stored} of {count} batches stored in time")
        time.sleep(0.05)


def measure_real_agent(cycles: int, interval: str, warmup: int) -> dict[str, Any]:
    """A real collector and an enrolled ``aftercare-agent run``: RSS and CPU per cycle."""
    workdir = Path(tempfile.mkdtemp(prefix="aftercare-bench-agent-"))
    collector = Collector(workdir / "collector")
    agent = Agent(workdir / "agent", "bench-host", {"interval": interval})
    try:
        collector.start()
        enrolled = agent.enroll(collector.join_command("bench"))
        if enrolled.returncode != 0:
            raise RuntimeError(f"enrol failed: {enrolled.stderr}")
        agent.start()
        assert agent.process is not None
        pid = agent.process.pid
        deadline = time.monotonic() + 30 + 3 * cycles * max(1.0, _seconds(interval))
        start_count, _ = wait_batches(collector, agent, warmup, deadline)
        before_ticks, before_time = cpu_ticks(pid), time.monotonic()
        end_count, end_time = wait_batches(collector, agent, start_count + cycles, deadline)
        ticks = cpu_ticks(pid) - before_ticks
        done = end_count - start_count
        return {
            "interval": interval,
            "cycles": done,
            "seconds": end_time - before_time,
            "cpu_ms_per_cycle": ticks * 1000 / CLK_TCK / done,
            "cpu_resolution_ms_per_cycle": 1000 / CLK_TCK / done,
            "rss_mib": status_mib(pid, "VmRSS"),
            "rss_anon_mib": status_mib(pid, "RssAnon"),
            "rss_file_mib": status_mib(pid, "RssFile"),
            "peak_rss_mib": status_mib(pid, "VmHWM"),
        }
    except (RuntimeError, AssertionError, OSError, subprocess.SubprocessError) as exc:
        return {"error": f"could not run a real agent: {exc}"}
    finally:
        agent.stop()
        collector.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _seconds(interval: str) -> float:
    """``1s`` / ``500ms`` / ``2m`` as seconds (enough for the benchmark's deadlines)."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    match = re.fullmatch(r"([0-9.]+)(ms|s|m)", interval)
    return float(match.group(1)) * units[match.group(2)] if match else 1.0


def verdict(agent: dict[str, Any], exporter: dict[str, Any]) -> dict[str, Any]:
    """Compare the figures with the targets."""
    rss_ok = agent["peak_rss_mib"] <= RSS_LIMIT_MIB
    result: dict[str, Any] = {"rss_ok": rss_ok}
    if "cpu_ms_per_scrape" in exporter:
        budget = CPU_FACTOR * exporter["cpu_ms_per_scrape"]
        result["cpu_budget_ms"] = budget
        result["cpu_ok"] = agent["cpu_ms_per_cycle"] <= budget
    else:
        result["cpu_ok"] = None
    return result


def real_verdict(real: dict[str, Any], exporter: dict[str, Any]) -> dict[str, Any]:
    """The real agent process against both targets."""
    if "peak_rss_mib" not in real:
        return {"rss_ok": None, "cpu_ok": None}
    result: dict[str, Any] = {"rss_ok": real["peak_rss_mib"] <= RSS_LIMIT_MIB, "cpu_ok": None}
    if "cpu_ms_per_scrape" in exporter:
        result["cpu_budget_ms"] = CPU_FACTOR * exporter["cpu_ms_per_scrape"]
        result["cpu_ok"] = real["cpu_ms_per_cycle"] <= result["cpu_budget_ms"]
    return result


def print_real(real: dict[str, Any], result: dict[str, Any]) -> None:
    """Human-readable report of the real agent process."""
    if "peak_rss_mib" not in real:
        print(f"real agent: {real.get('skipped') or real.get('error')}")
        print("verdict (real agent process): CPU n/a; RSS n/a")
        return
    print(
        f"real agent (aftercare-agent run, interval {real['interval']}, streaming to a real "
        f"collector): {real['cpu_ms_per_cycle']:.2f} ms CPU per cycle over {real['cycles']} "
        f"cycles / {real['seconds']:.1f} s (resolution "
        f"{real['cpu_resolution_ms_per_cycle']:.2f} ms/cycle)"
    )
    print(
        f"real agent memory: VmRSS {real['rss_mib']:.1f} MiB (RssAnon {real['rss_anon_mib']:.1f}"
        f", RssFile {real['rss_file_mib']:.1f}), VmHWM {real['peak_rss_mib']:.1f} MiB"
    )
    cpu = {True: "PASS", False: "FAIL", None: "n/a"}[result["cpu_ok"]]
    cpu_detail = (
        f"{real['cpu_ms_per_cycle']:.2f} ms <= {result['cpu_budget_ms']:.2f} ms"
        if "cpu_budget_ms" in result
        else "no node_exporter to compare with"
    )
    rss = "PASS" if result["rss_ok"] else "FAIL"
    print(
        f"verdict (real agent process): CPU {cpu} ({cpu_detail}); RSS {rss} "
        f"({real['peak_rss_mib']:.1f} MiB <= {RSS_LIMIT_MIB:.0f} MiB)"
    )


def print_table(agent: dict[str, Any], exporter: dict[str, Any], result: dict[str, Any]) -> None:
    """Human-readable report."""
    print(f"{'':28}{'CPU ms/cycle':>14}{'RSS MiB':>10}{'peak MiB':>10}")
    print(
        f"{'aftercare agent sampler':28}{agent['cpu_ms_per_cycle']:>14.2f}"
        f"{agent['rss_mib']:>10.1f}{agent['peak_rss_mib']:>10.1f}"
    )
    if "skipped" in exporter:
        print(f"node_exporter: skipped: {exporter['skipped']}")
    else:
        print(
            f"{'node_exporter (per scrape)':28}{exporter['cpu_ms_per_scrape']:>14.2f}"
            f"{exporter['rss_mib']:>10.1f}{exporter['peak_rss_mib']:>10.1f}"
        )
    print(
        f"agent: {agent['samples_per_cycle']} samples, {agent['batch_bytes']} bytes per batch, "
        f"{agent['wall_ms_per_cycle']:.2f} ms wall per cycle over {agent['cycles']} cycles; "
        f"CPU includes {agent['serialise_ms_per_cycle']:.2f} ms protobuf serialisation"
    )
    for failure in agent["failures"]:
        print(f"agent check failure: {failure}")
    if "cpu_ms_per_scrape" in exporter:
        print(
            f"node_exporter: {exporter['response_bytes']} bytes per scrape over "
            f"{exporter['scrapes']} scrapes (CPU resolution "
            f"{exporter['cpu_resolution_ms_per_scrape']:.2f} ms/scrape)"
        )
    cpu = {True: "PASS", False: "FAIL", None: "n/a"}[result["cpu_ok"]]
    cpu_detail = (
        f"{agent['cpu_ms_per_cycle']:.2f} ms <= {result['cpu_budget_ms']:.2f} ms"
        if "cpu_budget_ms" in result
        else "no node_exporter to compare with"
    )
    rss = "PASS" if result["rss_ok"] else "FAIL"
    print(
        f"verdict: CPU {cpu} ({cpu_detail}); "
        f"RSS {rss} ({agent['peak_rss_mib']:.1f} MiB <= {RSS_LIMIT_MIB:.0f} MiB)"
    )


def main() -> int:
    """Parse arguments, measure both sides, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=50, help="agent cycles measured")
    parser.add_argument("--scrapes", type=int, default=50, help="node_exporter scrapes measured")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between cycles")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured cycles/scrapes first")
    parser.add_argument(
        "--agent-cycles", type=int, default=40, help="real agent cycles measured (0: skip)"
    )
    parser.add_argument("--agent-interval", default="1s", help="real agent interval")
    parser.add_argument(
        "--agent-warmup", type=int, default=2, help="real agent batches stored before measuring"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    agent = measure_agent(args.cycles, args.interval, args.warmup)
    exporter = measure_node_exporter(args.scrapes, args.interval, args.warmup)
    result = verdict(agent, exporter)
    real: dict[str, Any] = {"skipped": "--agent-cycles 0"}
    if args.agent_cycles > 0:
        real = measure_real_agent(args.agent_cycles, args.agent_interval, args.agent_warmup)
    real_result = real_verdict(real, exporter)
    if args.json:
        print(
            json.dumps(
                {
                    "agent": agent,
                    "node_exporter": exporter,
                    "verdict": result,
                    "real_agent": real,
                    "real_agent_verdict": real_result,
                },
                indent=2,
            )
        )
    else:
        print_table(agent, exporter, result)
        print_real(real, real_result)
    return 1 if "error" in real else 0


if __name__ == "__main__":
    sys.exit(main())
