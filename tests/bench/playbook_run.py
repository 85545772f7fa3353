"""Benchmark: playbook runs end to end - latency at the engineer's CLI, cost on the agent.

Not a pytest test; prints figures (``--json`` for one machine-readable JSON object).

    .venv/bin/python tests/bench/playbook_run.py [--repeat N] [--quick] [--json]

1. Starts a real collector (``tests.support.Collector``: ``python -m collector.cli serve``
   on free loopback ports, SQLite store in a temporary data dir, the shipped signed
   catalogue) and a real agent (``tests.support.Agent``: enrolled with a join token, then
   ``aftercare-agent run`` with ``interval`` = ``--agent-interval``, default 15s, and
   ``[playbooks] trusted_keys`` = the development vendor key, ``policy`` = an empty
   policy file, mode 0600: read-only playbooks run unattended).
2. Measures the Python start-up of the CLI alone (``python -m collector.client.cli
   --help``), and the agent's idle CPU over ``--idle`` seconds (its sampler cycles and
   stream, nothing else).
3. For each playbook, ``--repeat`` times, one after the other: reads the agent's
   /proc/<pid>/stat and /proc/<pid>/status, runs ``aftercare run PLAYBOOK --host H
   --follow`` as a subprocess (``python -m collector.client.cli``, with --collector,
   --token, --ca-file) and reads its stdout as it comes, then reads /proc again.

Reported per playbook (median over the repeats, and the range):

- **first output**: from just before the CLI process is started to the first byte of
  playbook output on its stdout (the ``[run-...: state]`` lines go to stderr and do not
  count). Includes the CLI's Python start-up, printed separately so it can be
  subtracted, the StartRun and FollowRun calls, the collector sending the request on the
  agent's control stream, the agent verifying the signed catalogue and starting the
  first step, and the output's way back.
- **total**: from the same start to the CLI's exit (the run's final state received).
- **in-process first output**: after a playbook's CLI runs, ``--repeat`` more runs of it
  from a gRPC client inside the benchmark process (StartRun, then FollowRun): the same
  latency without the CLI's start-up. Not counted in the agent figures below.
- **agent CPU**: the agent process's utime + stime added by the run (builtins run in its
  threads), minus the idle CPU of an equal period (the idle rate from step 2 times the
  run's duration). **children CPU**: cutime + cstime added - the programs of the
  ``exec`` steps, counted when the agent reaps them. Clock-tick resolution (usually
  10 ms).
- **RSS**: the agent's VmRSS before the playbook's first run and after its last, and
  VmHWM (peak RSS since the agent started) after its last run; the playbooks run in the
  order listed, so the peak is cumulative.

``disk-usage`` runs with ``--param path=/usr``: its directory walk is the heavy step.

Exit status: 0 when every run ended ``ok`` or ``failed`` (a read-only playbook whose step
could not read something is ``failed`` but ran) with output; 1 when a run produced no
output, ended otherwise, or timed out (``--timeout``); 2 when the benchmark could not
run (the logs are printed then).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make ``tests`` importable
    sys.path.insert(0, str(REPO))

from collector.client.connection import ApiClient, ClientSettings  # noqa: E402
from playbooks.shipped import dev_public_key_path  # noqa: E402
from proto import api_pb2  # noqa: E402
from tests.support import PYTHON, Agent, Collector, wait_for  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
CUSTOMER = "bench"
HOSTNAME = "bench-host"
CLI = "collector.client.cli"
RAN = {"ok", "failed"}
STATE = re.compile(rb"\[(run-[^:\]]+): ([a-z_]+)")
# (label, playbook, parameters), in the order they run.
PLAYBOOKS: list[tuple[str, str, dict[str, str]]] = [
    ("time-sync", "time-sync", {}),
    ("cpu-load", "cpu-load", {}),
    ("memory-pressure", "memory-pressure", {}),
    ("network", "network", {}),
    ("recent-errors", "recent-errors", {}),
    ("disk-usage path=/usr", "disk-usage", {"path": "/usr"}),
]


@dataclass
class Proc:
    """One reading of /proc/<pid> of the agent."""

    when: float
    ticks: int
    child_ticks: int
    rss_kib: int
    hwm_kib: int

    @classmethod
    def read(cls, pid: int) -> Proc:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        status = {}
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            status[key] = value.split()
        return cls(
            when=time.monotonic(),
            ticks=int(fields[11]) + int(fields[12]),
            child_ticks=int(fields[13]) + int(fields[14]),
            rss_kib=int(status["VmRSS"][0]),
            hwm_kib=int(status["VmHWM"][0]),
        )


@dataclass
class Run:
    """One ``aftercare run --follow`` as seen by the CLI and on the agent."""

    run_id: str = ""
    state: str = ""
    exit_code: int | None = None
    first_output_s: float | None = None
    total_s: float = 0.0
    output_bytes: int = 0
    agent_cpu_ms: float = 0.0
    children_cpu_ms: float = 0.0
    idle_cpu_ms_subtracted: float = 0.0
    rss_before_mib: float = 0.0
    rss_after_mib: float = 0.0
    hwm_after_mib: float = 0.0
    stderr: str = ""


@dataclass
class Bench:
    """The collector, the agent and how to call the CLI."""

    collector: Collector
    agent: Agent
    token: str
    timeout: float
    client: ApiClient | None = None

    @property
    def pid(self) -> int:
        assert self.agent.process is not None
        return self.agent.process.pid

    def cli_argv(self, *args: str) -> list[str]:
        ca = str(self.collector.data_dir / "ca.pem")
        return [
            *(PYTHON, "-m", CLI, "--collector", self.collector.api),
            *("--token", self.token, "--ca-file", ca, *args),
        ]


def mib(kib: int) -> float:
    return kib / 1024


def cli_startup(runs: int) -> list[float]:
    """Seconds for ``python -m collector.client.cli --help``, after one unmeasured run."""
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(
            [PYTHON, "-m", CLI, "--help"], cwd=REPO, capture_output=True, timeout=60
        )
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{CLI} --help exited {done.returncode}: {done.stderr!r}")
        if i:
            times.append(elapsed)
    return times


def follow(bench: Bench, playbook: str, params: dict[str, str], idle_ms_per_s: float) -> Run:
    """Run one playbook with --follow and measure it on both ends."""
    run = Run()
    before = Proc.read(bench.pid)
    extra = [arg for name, value in params.items() for arg in ("--param", f"{name}={value}")]
    argv = bench.cli_argv("run", playbook, "--host", HOSTNAME, *extra, "--follow")
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
    )
    assert process.stdout is not None and process.stderr is not None
    stderr = bytearray()
    deadline = time.monotonic() + bench.timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, "out")
        selector.register(process.stderr, selectors.EVENT_READ, "err")
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                process.kill()
                run.state = "bench-timeout"
                break
            for key, _ in selector.select(timeout=min(remaining, 1.0)):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                elif key.data == "out":
                    if run.first_output_s is None:
                        run.first_output_s = time.perf_counter() - start
                    run.output_bytes += len(data)
                else:
                    stderr += data
    run.exit_code = process.wait(timeout=30)
    run.total_s = time.perf_counter() - start
    process.stdout.close()
    process.stderr.close()
    states = STATE.findall(bytes(stderr))
    if states:
        run.run_id = states[-1][0].decode()
        run.state = run.state or states[-1][1].decode()
    run.state = run.state or "unknown"
    run.stderr = stderr.decode("utf-8", "replace")
    time.sleep(0.2)  # the agent records the run's end after its result went out
    after = Proc.read(bench.pid)
    idle = idle_ms_per_s * (after.when - before.when)
    run.idle_cpu_ms_subtracted = idle
    run.agent_cpu_ms = (after.ticks - before.ticks) * 1000 / CLK_TCK - idle
    run.children_cpu_ms = (after.child_ticks - before.child_ticks) * 1000 / CLK_TCK
    run.rss_before_mib = mib(before.rss_kib)
    run.rss_after_mib = mib(after.rss_kib)
    run.hwm_after_mib = mib(after.hwm_kib)
    return run


def follow_in_process(bench: Bench, playbook: str, params: dict[str, str]) -> dict[str, Any]:
    """The same run from a gRPC client in this process: no CLI start-up, no /proc."""
    if bench.client is None:
        ca = (bench.collector.data_dir / "ca.pem").read_bytes()
        bench.client = ApiClient(ClientSettings(bench.collector.api, bench.token, ca))
    client = bench.client
    first: float | None = None
    state = "unknown"
    start = time.perf_counter()
    info = client.call(
        "StartRun", api_pb2.StartRunRequest(playbook=playbook, host=HOSTNAME, params=params)
    )
    started = time.perf_counter() - start
    stream = client.stub.FollowRun(
        api_pb2.GetRunRequest(run_id=info.run_id), metadata=client.metadata, timeout=bench.timeout
    )
    try:
        for event in stream:
            if event.WhichOneof("kind") == "output":
                if first is None:
                    first = time.perf_counter() - start
            else:
                state = event.info.state
    except grpc.RpcError as exc:
        state = f"rpc error {exc.code().name}"
    return {
        "run_id": info.run_id,
        "state": state,
        "start_run_s": started,
        "first_output_s": first,
        "total_s": time.perf_counter() - start,
    }


def _cell(values: dict[str, float] | None, digits: int, range_digits: int) -> str:
    """``median [min-max]`` or ``-``."""
    if not values:
        return "-"
    low, high = values["min"], values["max"]
    return f"{values['median']:.{digits}f} [{low:.{range_digits}f}-{high:.{range_digits}f}]"


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure_idle(bench: Bench, seconds: float) -> dict[str, float]:
    """The agent's CPU while idle (sampler cycles, stream keep-alive), per second."""
    before = Proc.read(bench.pid)
    time.sleep(seconds)
    after = Proc.read(bench.pid)
    elapsed = after.when - before.when
    ms = (after.ticks - before.ticks) * 1000 / CLK_TCK
    return {
        "seconds": elapsed,
        "cpu_ms": ms,
        "cpu_ms_per_s": ms / elapsed,
        "rss_mib": mib(after.rss_kib),
        "hwm_mib": mib(after.hwm_kib),
    }


def prepare(workdir: Path, agent_interval: str, timeout: float) -> Bench:
    """A collector and an agent trusting the shipped catalogue's key (not started yet)."""
    policy = workdir / "policy.toml"
    policy.write_text("")
    policy.chmod(0o600)
    agent = Agent(
        workdir / "agent",
        HOSTNAME,
        {
            "interval": agent_interval,
            "playbooks": {
                "trusted_keys": [str(dev_public_key_path())],
                "policy": str(policy),
            },
        },
    )
    return Bench(Collector(workdir / "collector"), agent, "", timeout)


def start(bench: Bench) -> None:
    """Start the collector, enrol and start the agent, wait until it is connected."""
    collector, agent = bench.collector, bench.agent
    collector.start()
    enrolled = agent.enroll(collector.join_command(CUSTOMER))
    if enrolled.returncode != 0:
        raise RuntimeError(f"enrol failed: {enrolled.stderr}")
    agent.start()
    bench.token = collector.add_user("erin", "engineer")

    def connected() -> bool:
        if agent.process is None or agent.process.poll() is not None:
            raise RuntimeError("the agent exited")
        listed = collector.client(bench.token, "agents", "--json")
        return listed.returncode == 0 and any(
            a.get("hostname") == HOSTNAME and a.get("connected") for a in json.loads(listed.stdout)
        )

    wait_for(connected, 30, "agent connected")


def report(result: dict[str, Any]) -> None:
    """Human-readable table."""
    startup = result["cli_startup_s"]
    idle = result["idle"]
    print(
        f"CLI start-up (python -m {CLI} --help): median {startup['median']:.3f} s "
        f"(min {startup['min']:.3f}, max {startup['max']:.3f}, {result['cli_startup_runs']} runs)"
    )
    print(
        f"agent idle: {idle['cpu_ms']:.0f} ms CPU over {idle['seconds']:.1f} s "
        f"({idle['cpu_ms_per_s']:.2f} ms/s, interval {result['agent_interval']}); "
        f"RSS {idle['rss_mib']:.1f} MiB, peak {idle['hwm_mib']:.1f} MiB"
    )
    print(
        f"{result['repeat']} runs per playbook; medians, range in brackets; "
        f"CPU resolution {1000 / CLK_TCK:.0f} ms"
    )
    header = (
        f"{'playbook':<21}{'first output s':>20}{'total s':>19}{'in-process 1st s':>21}"
        f"{'agent CPU ms':>17}{'child ms':>9}{'RSS before':>11}{'after':>7}{'VmHWM':>7}  states"
    )
    print(header)
    for row in result["playbooks"]:
        first, total = row["first_output_s"], row["total_s"]
        direct = row["in_process_first_output_s"]
        cpu, children = row["agent_cpu_ms"], row["children_cpu_ms"]
        states = ",".join(f"{n}x{s}" for s, n in sorted(row["states"].items()))
        print(
            f"{row['label']:<21}{_cell(first, 3, 2):>20}{_cell(total, 2, 2):>19}"
            f"{_cell(direct, 3, 3):>21}{_cell(cpu, 0, 0):>17}{children['median']:>9.0f}"
            f"{row['rss_before_mib']:>11.1f}{row['rss_after_mib']:>7.1f}"
            f"{row['hwm_after_mib']:>7.1f}  {states}"
        )
    print(
        "first output and total: the CLI, start-up above included; in-process 1st: the same "
        "run from a gRPC client in the bench process; agent CPU: net of idle (rate x run time); "
        "child: exec steps' programs; RSS before/after and VmHWM (peak so far): MiB"
    )
    for problem in result["problems"]:
        print(f"problem: {problem}")


def main() -> int:
    """Parse arguments, run the benchmark, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, help="runs per playbook (default 5, --quick 2)")
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter idle period")
    parser.add_argument("--idle", type=float, help="idle seconds measured (30, --quick 15)")
    parser.add_argument("--agent-interval", default="15s", help="agent sampling interval")
    parser.add_argument(
        "--playbooks", help="comma-separated labels to run (default: all of: time-sync, ...)"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run at most")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    repeat = args.repeat or (2 if args.quick else 5)
    idle_seconds = args.idle if args.idle is not None else (15.0 if args.quick else 30.0)
    chosen = PLAYBOOKS
    if args.playbooks:
        wanted = [w.strip() for w in args.playbooks.split(",")]
        chosen = [p for p in PLAYBOOKS if p[0] in wanted or p[1] in wanted]
        if not chosen:
            parser.error(f"--playbooks: choose from {', '.join(p[0] for p in PLAYBOOKS)}")

    workdir = Path(tempfile.mkdtemp(prefix="aftercare-bench-playbook-"))
    bench = prepare(workdir, args.agent_interval, args.timeout)
    try:
        try:
            startup = cli_startup(max(3, repeat))
            start(bench)
            idle = measure_idle(bench, idle_seconds)
        except (RuntimeError, AssertionError, OSError, subprocess.SubprocessError) as exc:
            print(f"error: could not run: {exc}", file=sys.stderr)
            print(bench.collector.log_text()[-4000:], file=sys.stderr)
            print(bench.agent.log_text()[-4000:], file=sys.stderr)
            return 2
        rows: list[dict[str, Any]] = []
        problems: list[str] = []
        for label, playbook, params in chosen:
            runs = [follow(bench, playbook, params, idle["cpu_ms_per_s"]) for _ in range(repeat)]
            direct = [follow_in_process(bench, playbook, params) for _ in range(repeat)]
            for run in runs:
                if run.state not in RAN or not run.output_bytes:
                    problems.append(
                        f"{label}: {run.run_id or 'no run id'} ended {run.state} "
                        f"(exit {run.exit_code}, {run.output_bytes} bytes): {run.stderr.strip()}"
                    )
            firsts = [r.first_output_s for r in runs if r.first_output_s is not None]
            direct_firsts = [d["first_output_s"] for d in direct if d["first_output_s"] is not None]
            problems.extend(
                f"{label} (in-process): {d['run_id']} ended {d['state']}"
                for d in direct
                if d["state"] not in RAN or d["first_output_s"] is None
            )
            states: dict[str, int] = {}
            for run in runs:
                states[run.state] = states.get(run.state, 0) + 1
            rows.append(
                {
                    "label": label,
                    "playbook": playbook,
                    "params": params,
                    "first_output_s": summary(firsts) if firsts else None,
                    "total_s": summary([r.total_s for r in runs]),
                    "agent_cpu_ms": summary([r.agent_cpu_ms for r in runs]),
                    "children_cpu_ms": summary([r.children_cpu_ms for r in runs]),
                    "output_bytes": summary([float(r.output_bytes) for r in runs]),
                    "rss_before_mib": runs[0].rss_before_mib,
                    "rss_after_mib": runs[-1].rss_after_mib,
                    "hwm_after_mib": runs[-1].hwm_after_mib,
                    "states": states,
                    "in_process_first_output_s": summary(direct_firsts) if direct_firsts else None,
                    "in_process_total_s": summary([d["total_s"] for d in direct]),
                    "in_process_runs": direct,
                    "runs": [{k: v for k, v in vars(r).items() if k != "stderr"} for r in runs],
                }
            )
        if bench.agent.process is None or bench.agent.process.poll() is not None:
            problems.append("the agent exited during the runs")
        result = {
            "agent_interval": args.agent_interval,
            "repeat": repeat,
            "clk_tck": CLK_TCK,
            "cli_startup_runs": len(startup),
            "cli_startup_s": summary(startup),
            "idle": idle,
            "playbooks": rows,
            "final_rss_mib": mib(Proc.read(bench.pid).rss_kib),
            "problems": problems,
        }
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            report(result)
        if problems:
            print(bench.agent.log_text()[-3000:], file=sys.stderr)
        return 1 if problems else 0
    finally:
        if bench.client is not None:
            bench.client.close()
        bench.agent.stop()
        bench.collector.stop()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
