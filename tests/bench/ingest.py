"""Benchmark: collector ingest rate and ack latency with many simulated agents.

Not a pytest test; prints figures (``--json`` for one machine-readable JSON object).

    .venv/bin/python tests/bench/ingest.py [--agents N] [--batches M] [--samples S]
                                           [--window W] [--pace SECONDS] [--sim-procs P]
                                           [--store sqlite|postgresql] [--quick] [--json]

``--store postgresql`` runs the collector on a throwaway, durable PostgreSQL cluster
(tests/pg_cluster.py). ``--pace P`` is the steady state instead of the burst: every
agent sends one batch every P seconds, phases spread evenly, so N agents offer N/P
batches/s (10,000 agents at a 15 s interval offer 667/s: ``--agents 10000 --pace 15``).

1. Starts a real collector process (``tests.support.Collector``: ``python -m
   collector.cli serve`` on free 127.0.0.1 ports, SQLite store in a temporary data dir);
   with ``--replicas R`` (PostgreSQL only) R of them on the one database, each with the
   files docs/replicas.md lists copied from the first, simulator k talking to replica
   k mod R. CPU, RSS and /metrics counters are then summed over the replicas.
2. Provisions N simulated agents, spread over ``--customers`` customers, as enrolment
   would leave them but without an Enroll call each: a key and CSR per agent
   (``agent.identity.new_key_and_csr``), the certificate signed directly by the
   collector's CA (``collector.pki``, from the data dir) and the agent's record added
   to the collector's store.
3. Starts ``--sim-procs`` simulator processes (tests/bench/light_agents.py), each
   multiplexing its share of the agents on one asyncio loop: one mutual-TLS
   ``grpc.aio`` channel and ``Connect`` stream per agent, Hello and Welcome. Once all
   are connected, every agent sends M ``MetricBatch`` messages (sequence 1..M, S
   samples with the sampler's names and labels), at most W unacknowledged per agent;
   the time from writing each batch to reading its Ack is recorded. Unpaced, this is a
   worst case (every agent draining a spool backlog at the same moment): with N*W
   batches in flight, ack latency is mostly queueing (Little's law: latency ~ N*W /
   rate). ``--agents 1 --window 1`` shows the latency of an idle collector.
4. Reports the ingest rate, ack latency percentiles, connect time, the collector's RSS
   and CPU time (from /proc/<pid>, split by thread) and the simulators' CPU, and
   verifies from the store that every agent's sequences are exactly 1..M (and its
   /metrics counters agree). Phase 2 reconnects every agent and re-sends its last 5
   batches, which must be acked with ``duplicate=True`` and not stored again.

Exit status: 0 when verified, 1 when the store or the acks disagree with what was sent,
2 when the benchmark could not run (the collector's log is printed if it did not start).

The simulators share the machine's CPUs with the collector, so on a small machine the
figures are a lower bound for the collector; their CPU time is reported next to the
collector's.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a script: make ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.identity import new_key_and_csr
from collector.datadir import DataDir
from collector.errors import CollectorError
from collector.store import AgentRecord, Store, open_store, open_store_url
from collector.store.sqlite import SQLiteStore
from tests.bench.light_agents import (
    DUPLICATES_PER_AGENT,
    INTERVAL_SECONDS,
    SimAgent,
    profile_payloads,
)

if TYPE_CHECKING:
    from tests.pg_cluster import PgCluster
    from tests.support import Collector

REPO = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")
CERT_TTL = dt.timedelta(days=2)

DEFAULTS = {"agents": 200, "batches": 30, "samples": 150}  # about 30 s on 2 CPUs
QUICK = {"agents": 50, "batches": 10, "samples": 150}  # a few seconds


class BenchError(Exception):
    """Something the benchmark could not do; the message says what."""


@dataclass
class BenchAgent:
    """One provisioned agent: its identity for the simulator and, afterwards, what the
    simulator measured for it (``sim``)."""

    index: int
    customer: str
    hostname: str
    agent_id: str
    key_pem: bytes
    cert_pem: bytes
    phase_seconds: float
    sim: SimAgent


# -- provisioning ------------------------------------------------------------------------


def provision(
    collector: Collector, count: int, customers: Sequence[str], pace: float, store_url: str | None
) -> list[BenchAgent]:
    """``count`` agents with certificates from the collector's CA, recorded in its store
    (what enrolment leaves behind, minus one Enroll call and one audit entry each)."""
    ca = DataDir(collector.data_dir).load_ca()
    try:
        store = open_bench_store(collector, store_url, fast=True)
    except CollectorError as exc:
        raise BenchError(f"cannot open the collector's store: {exc}") from exc
    agents = []
    try:
        now = int(time.time() * 1000)
        for i in range(count):
            hostname = f"bench-{i:05d}"
            agent_id = f"ag-bench{i:08x}"
            customer = customers[i % len(customers)]
            key_pem, csr_pem = new_key_and_csr(hostname)
            issued = ca.sign_agent_csr(csr_pem, agent_id, customer, CERT_TTL)
            store.add_agent(
                AgentRecord(
                    agent_id=agent_id,
                    customer=customer,
                    hostname=hostname,
                    enrolled_ms=now,
                    cert_serial=issued.serial_hex,
                    cert_not_after_ms=int(issued.not_after.timestamp() * 1000),
                )
            )
            agents.append(
                BenchAgent(
                    index=i,
                    customer=customer,
                    hostname=hostname,
                    agent_id=agent_id,
                    key_pem=key_pem,
                    cert_pem=issued.cert_pem,
                    phase_seconds=pace * i / count,
                    sim=SimAgent(index=i, hostname=hostname, agent_id=agent_id),
                )
            )
    finally:
        store.close()
    return agents


def open_bench_store(collector: Collector, store_url: str | None, fast: bool = False) -> Store:
    """The store the running collector uses: SQLite in its data dir, or ``store_url``.
    ``fast``: SQLite without an fsync per commit (for provisioning, not measured)."""
    if store_url:
        return open_store_url(store_url)
    if fast:
        return SQLiteStore(open_store(collector.data_dir).path, synchronous="NORMAL")
    return open_store(collector.data_dir)


# -- simulator processes -----------------------------------------------------------------


class Simulators:
    """The light-agent processes (tests/bench/light_agents.py) and their phase lines."""

    def __init__(
        self, agents: Sequence[BenchAgent], processes: int, spec: dict[str, Any], tmp: Path
    ) -> None:
        self._procs: list[subprocess.Popen[str]] = []
        self._results: list[Path] = []
        self.pids: list[int] = []
        for k in range(processes):
            share = agents[k::processes]
            if not share:
                continue
            spec_path, result = tmp / f"simulator-{k}.json", tmp / f"simulator-{k}.result.json"
            endpoints = spec["endpoints"]
            spec_path.write_text(
                json.dumps(
                    {
                        **spec,
                        "endpoint": endpoints[k % len(endpoints)],
                        "result": str(result),
                        "agents": [
                            {
                                "index": a.index,
                                "hostname": a.hostname,
                                "agent_id": a.agent_id,
                                "key_pem": a.key_pem.decode(),
                                "cert_pem": a.cert_pem.decode(),
                                "phase": a.phase_seconds,
                            }
                            for a in share
                        ],
                    }
                )
            )
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.bench.light_agents", str(spec_path)],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self._procs.append(proc)
            self._results.append(result)
            self.pids.append(proc.pid)

    def wait_for(self, word: str, timeout: float, what: str) -> None:
        """Wait until every simulator has printed ``word``; BenchError if one says
        something else, dies, or ``timeout`` passes."""
        waiting = {proc.stdout: proc for proc in self._procs if proc.stdout is not None}
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            for stream in waiting:
                selector.register(stream, selectors.EVENT_READ)
            while waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"{what} took longer than --timeout {timeout:g}s")
                for key, _ in selector.select(left):
                    stream: IO[str] = key.fileobj  # type: ignore[assignment]
                    line = stream.readline().strip()
                    if line != word:
                        proc = waiting[stream]
                        raise BenchError(
                            f"simulator {proc.pid} said {line!r} instead of {word!r} "
                            f"(exit status {proc.poll()}; its stderr is above)"
                        )
                    selector.unregister(stream)
                    del waiting[stream]

    def tell(self, word: str) -> None:
        for proc in self._procs:
            assert proc.stdin is not None
            proc.stdin.write(word + "\n")
            proc.stdin.flush()

    def cpu_seconds(self) -> float:
        """CPU time of every simulator process so far (all threads, from /proc)."""
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError):  # it has exited
                total += proc_cpu_seconds(pid)
        return total

    def results(self) -> list[dict[str, Any]]:
        for proc in self._procs:
            proc.wait(timeout=60)
        return [json.loads(path.read_text()) for path in self._results]

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# -- the collector process ------------------------------------------------------------


def proc_cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of ``pid`` (all threads) or of its thread ``tid``, from /proc."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = stat_fields(Path(path))
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def stat_fields(path: Path) -> list[str]:
    """The fields of a /proc stat file after "pid (comm) ": state, ppid, … utime at 11."""
    text = path.read_text()
    return text[text.rindex(")") + 2 :].split()


def database_cpu_seconds(cluster: PgCluster | None) -> float:
    """CPU seconds of a PostgreSQL cluster so far: the postmaster with its exited
    children (cutime, cstime) and every live child (backends, WAL writer, checkpointer,
    autovacuum); 0 without a cluster."""
    if cluster is None:
        return 0.0
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    fields = stat_fields(Path(f"/proc/{postmaster}/stat"))
    total = sum(int(f) for f in fields[11:15]) / CLK_TCK
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            fields = stat_fields(stat)
            if int(fields[1]) == postmaster:
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (KiB) and Threads of ``pid``."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            values[key] = int(rest.split()[0])
    return values


SCRAPE_TIMEOUT_SECONDS = 600.0  # /metrics holds every host's samples: 1.5 M lines at 10,000


def scrape(collector: Collector, cost: dict[str, float] | None = None) -> dict[str, float]:
    """The collector's own ingest counters from /metrics (not the per-host series);
    ``cost`` gets the scrape's wall seconds, collector CPU seconds and size."""
    pid = collector.process.pid if collector.process is not None else None
    cpu0, t0 = (proc_cpu_seconds(pid) if pid else 0.0), time.perf_counter()
    try:
        with urllib.request.urlopen(
            collector.metrics_url, timeout=SCRAPE_TIMEOUT_SECONDS
        ) as response:
            text = response.read().decode()
    except OSError as exc:
        raise BenchError(f"cannot read {collector.metrics_url}: {exc}") from exc
    line_re = re.compile(
        r"^(aftercare_ingest_[a-z_]+|aftercare_(?:store_call|gc_pause)_seconds_[a-z]+)"
        r"(\{[^}]*\})? "
        r"([0-9.eE+-]+)$"
    )
    figures: dict[str, float] = {}
    for line in text.splitlines():
        match = line_re.match(line)
        if match is None or match.group(1).endswith("_created"):
            continue
        if match.group(1).endswith("_bucket") and f'le="{SLOW_SECONDS}"' not in line:
            continue
        figures[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    if cost is not None:
        cost.update(
            seconds=round(time.perf_counter() - t0, 2),
            collector_cpu_seconds=round((proc_cpu_seconds(pid) if pid else 0.0) - cpu0, 2),
            mib=round(len(text) / 2**20, 1),
            lines=text.count("\n"),
        )
    return figures


SLOW_SECONDS = "0.25"  # a bucket bound of the collector's histograms below, in seconds


def histogram_rows(metrics: Mapping[str, float], family: str, label: str) -> list[dict[str, Any]]:
    """Per value of ``label`` of the histogram ``family`` in a scrape: count, seconds
    and how many took longer than SLOW_SECONDS; the 6 with the most seconds."""
    found: dict[str, dict[str, Any]] = {}
    pattern = re.compile(rf'^{family}_(sum|count|bucket)\{{{label}="([^"]+)"')
    for key, value in metrics.items():
        match = pattern.match(key)
        if match:
            found.setdefault(match.group(2), {})[match.group(1)] = value
    rows = [
        {
            label: value,
            "count": int(v.get("count", 0)),
            "seconds": round(v.get("sum", 0.0), 2),
            f"over_{SLOW_SECONDS}s": int(v.get("count", 0) - v.get("bucket", 0)),
        }
        for value, v in found.items()
    ]
    return sorted(rows, key=lambda row: -float(row["seconds"]))[:6]


FOLD_LOG = re.compile(
    r"metric history: (\d+) staged batches folded into their buckets in ([\d.]+) s"
)


def history_folds(logs: Iterable[str]) -> list[dict[str, float]]:
    """The metric history's fold passes the collectors logged: staged batches, seconds."""
    return [
        {"batches": int(match.group(1)), "seconds": float(match.group(2))}
        for log in logs
        for match in FOLD_LOG.finditer(log)
    ]


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds (utime + stime) and name of every thread of ``pid``."""
    threads: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            threads[int(task.name)] = (name, proc_cpu_seconds(pid, int(task.name)))
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
    return threads


def thread_split(pid: int, before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU used since ``before`` by the event loop (main thread), the busiest other
    Python thread (during ingest: the store writer, which runs SQLite), the remaining
    Python threads and gRPC's C-core threads (TLS, HTTP/2, polling)."""
    after = thread_cpu(pid)
    used = {
        tid: (name, cpu - before.get(tid, (name, 0.0))[1]) for tid, (name, cpu) in after.items()
    }
    main = used.pop(pid, ("", 0.0))[1]
    python = sorted((cpu for name, cpu in used.values() if name == "python"), reverse=True)
    core = sum(cpu for name, cpu in used.values() if name != "python")
    return {
        "event_loop": round(main, 2),
        "busiest_other_python_thread": round(python[0] if python else 0.0, 2),
        "other_python_threads": round(sum(python[1:]), 2),
        "grpc_core_threads": round(core, 2),
    }


def filesystem_type(path: Path) -> str:
    """fstype of the mount holding ``path`` (fsync cost depends on it)."""
    best, kind = "", "?"
    resolved = str(path.resolve())
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        mountpoint = parts[1]
        inside = resolved == mountpoint or resolved.startswith(mountpoint.rstrip("/") + "/")
        if inside and len(mountpoint) >= len(best):
            best, kind = mountpoint, parts[2]
    return kind


# -- figures --------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 if empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def latency_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    figures = {f"p{int(q * 100)}": percentile(ordered, q) * 1000 for q in (0.5, 0.9, 0.99)}
    figures["max"] = (ordered[-1] if ordered else 0.0) * 1000
    figures["mean"] = (sum(ordered) / len(ordered) if ordered else 0.0) * 1000
    return {key: round(value, 2) for key, value in figures.items()}


class Progress:
    """Progress lines on stderr (so ``--json`` keeps stdout clean)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, text: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.t0:6.1f}s] {text}", file=sys.stderr, flush=True)


# -- the run --------------------------------------------------------------------------


def drive(
    simulators: Simulators,
    pids: Sequence[int],
    collectors: Sequence[Collector],
    cluster: PgCluster | None,
    timeout: float,
    progress: Progress,
) -> dict[str, Any]:
    """Step the simulators through the phases; return the timing figures measured
    around them (CPU of every collector replica, simulator and the database server,
    from /proc)."""
    figures: dict[str, Any] = {}
    figures["status_before"] = status_of(pids)
    cpu0, client0 = cpu_of(pids), simulators.cpu_seconds()
    t0 = time.perf_counter()
    simulators.wait_for("connected", timeout, "connecting every agent")
    t1 = time.perf_counter()
    cpu1, client1 = cpu_of(pids), simulators.cpu_seconds()
    threads1 = [thread_cpu(pid) for pid in pids]
    figures["status_connected"] = status_of(pids)
    progress(f"agents connected in {t1 - t0:.2f}s; ingesting")
    database1 = database_cpu_seconds(cluster)
    figures["ingest_start_wall"] = time.time()
    simulators.tell("go")
    simulators.wait_for("ingested", timeout, "the ingest phase")
    t2 = time.perf_counter()
    cpu2, client2 = cpu_of(pids), simulators.cpu_seconds()
    database2 = database_cpu_seconds(cluster)
    status = status_of(pids)
    splits = [thread_split(pid, before) for pid, before in zip(pids, threads1, strict=True)]
    figures["ingest_threads"] = {k: round(sum(x[k] for x in splits), 2) for k in splits[0]}
    figures["phase1_metrics"] = scrape_all(collectors)
    progress(f"ingest done in {t2 - t1:.2f}s; re-sending duplicates")
    cpu3 = cpu_of(pids)
    simulators.tell("duplicates")
    simulators.wait_for("done", timeout, "the duplicates phase")
    t3 = time.perf_counter()
    cpu4 = cpu_of(pids)
    figures.update(
        connect_wall=t1 - t0,
        connect_collector_cpu=cpu1 - cpu0,
        connect_client_cpu=client1 - client0,
        ingest_wall=t2 - t1,
        ingest_collector_cpu=cpu2 - cpu1,
        ingest_client_cpu=client2 - client1,
        ingest_database_cpu=database2 - database1,
        duplicates_wall=t3 - t2,
        duplicates_collector_cpu=cpu4 - cpu3,
        status=status,
    )
    return figures


def slow_ack_seconds(sims: Sequence[SimAgent], start: float) -> list[dict[str, float]]:
    """The 5 seconds of the ingest phase with the most slow acks (>= SLOW_ACK_SECONDS):
    second since the phase began, how many, the slowest; to tell a steady backlog from
    pauses that come at a time (a fold, a tick, a checkpoint)."""
    by_second: dict[int, list[float]] = {}
    for agent in sims:
        for at, latency in agent.slow_acks:
            by_second.setdefault(int(at - start), []).append(latency)
    worst = sorted(by_second.items(), key=lambda item: -len(item[1]))[:5]
    return [
        {"second": second, "slow_acks": len(found), "slowest_s": round(max(found), 2)}
        for second, found in sorted(worst)
    ]


def cpu_of(pids: Sequence[int]) -> float:
    """CPU seconds of every collector replica together."""
    return sum(proc_cpu_seconds(pid) for pid in pids)


def status_of(pids: Sequence[int]) -> dict[str, int]:
    """VmRSS, VmHWM and Threads summed over the collector replicas."""
    total: dict[str, int] = {}
    for pid in pids:
        for key, value in proc_status(pid).items():
            total[key] = total.get(key, 0) + value
    return total


def scrape_all(collectors: Sequence[Collector]) -> dict[str, float]:
    """Every replica's ingest counters, summed."""
    total: dict[str, float] = {}
    for collector in collectors:
        for key, value in scrape(collector).items():
            total[key] = total.get(key, 0.0) + value
    return total


def start_replica(first: Collector, number: int, extra: list[str]) -> Collector:
    """Another ``serve`` on the same PostgreSQL, with the files docs/replicas.md says
    every replica needs copied from the first's data dir."""
    data_dir = first.data_dir.parent / f"collector-{number}"
    data_dir.mkdir(mode=0o700)
    for name in ("ca.pem", "ca-key.pem", "audit-key.pem", "store-url"):
        shutil.copy2(first.data_dir / name, data_dir / name)
    replica = collector_class()(data_dir, extra_args=extra)
    start_collector(replica)
    return replica


def start_collector(collector: Collector) -> None:
    try:
        collector.start()
    except AssertionError as exc:
        text, log = str(exc), collector.log_text().strip()
        if log and log not in text:
            text += f"\ncollector log {collector.log_path}:\n{log}"
        raise BenchError(f"the collector did not start: {text}") from exc


def merge_results(agents: Sequence[BenchAgent], results: Sequence[dict[str, Any]]) -> None:
    """Copy what the simulators measured into each agent's ``sim`` record."""
    by_index = {agent.index: agent.sim for agent in agents}
    for result in results:
        for got in result["agents"]:
            sim = by_index[got["index"]]
            sim.connect_seconds = got["connect_seconds"]
            sim.latencies = got["latencies"]
            sim.duplicate_latencies = got["duplicate_latencies"]
            sim.slow_acks = [(at, latency) for at, latency in got["slow_acks"]]
            sim.duplicates_acked = got["duplicates_acked"]
            sim.welcome_last_sequence = got["welcome_last_sequence"]
            sim.runs_refused = got["runs_refused"]
            sim.stream_errors = got["stream_errors"]
            sim.error = got["error"]


def verify(
    collector: Collector,
    bench_agents: Sequence[BenchAgent],
    batches: int,
    samples: int,
    store_url: str | None,
) -> list[str]:
    """Compare the store with what was sent; return the discrepancies (none: exactly once)."""
    problems: list[str] = []
    want = list(range(1, batches + 1))
    agents = [a.sim for a in bench_agents]
    store = open_bench_store(collector, store_url)
    try:
        for agent in agents:
            got = store.stored_sequences(agent.agent_id)
            if got != want:
                missing = sorted(set(want) - set(got))
                extra = len(got) - len(set(got))
                problems.append(
                    f"{agent.hostname}: stored {len(got)} batches, missing {missing[:10]}, "
                    f"{extra} stored twice, unexpected {sorted(set(got) - set(want))[:10]}"
                )
            latest = store.latest(agent.agent_id)
            if latest is None or latest.sequence != batches or len(latest.samples) != samples:
                problems.append(
                    f"{agent.hostname}: latest batch is "
                    f"{'none' if latest is None else latest.sequence} with "
                    f"{0 if latest is None else len(latest.samples)} samples, "
                    f"want {batches} with {samples}"
                )
            if store.gaps(agent.agent_id):
                problems.append(f"{agent.hostname}: gaps recorded")
    finally:
        store.close()
    for agent in agents:
        if agent.error:
            problems.append(f"{agent.hostname}: {agent.error}")
        elif agent.welcome_last_sequence != batches:
            problems.append(
                f"{agent.hostname}: second Welcome said last_sequence "
                f"{agent.welcome_last_sequence}, want {batches}"
            )
        elif agent.duplicates_acked != min(DUPLICATES_PER_AGENT, batches):
            problems.append(
                f"{agent.hostname}: {agent.duplicates_acked} re-sent batches acked as "
                f"duplicates, want {min(DUPLICATES_PER_AGENT, batches)}"
            )
    return problems


def check_counters(metrics: dict[str, float], stored: int, duplicates: int) -> list[str]:
    """The collector's /metrics counters must agree with what was sent."""
    problems = []
    for result, want in (("stored", stored), ("duplicate", duplicates)):
        got = metrics.get(f'aftercare_ingest_batches_total{{result="{result}"}}', 0.0)
        if got != want:
            problems.append(f"/metrics counts {got:.0f} {result} batches, want {want}")
    return problems


def collector_class() -> type[Collector]:
    """``tests.support.Collector`` (run as a script, the repository is not on sys.path)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.support import Collector

    return Collector


STORES = {
    "sqlite": "SQLite, WAL, synchronous=FULL (fsync per commit; a group commit acks many batches)",
    "postgresql": "PostgreSQL (throwaway cluster, fsync on, synchronous_commit on)",
}


def start_postgresql() -> tuple[PgCluster, str]:
    """A throwaway, durable PostgreSQL cluster (tests/pg_cluster.py) and a database URL."""
    collector_class()  # puts the repository on sys.path
    from tests.pg_cluster import PgCluster, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise BenchError("--store postgresql: no initdb/pg_ctl found (apt-get install postgresql)")
    cluster = PgCluster(bin_dir, durable=True).start()
    return cluster, cluster.new_database()


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    n, m, s = args.agents, args.batches, args.samples
    customers = [f"customer-{c + 1}" for c in range(min(args.customers, n))]
    tmp = Path(tempfile.mkdtemp(prefix="aftercare-bench-ingest-"))
    cluster, store_url = start_postgresql() if args.store == "postgresql" else (None, None)
    extra = ["--store", store_url] if store_url else []
    collector = collector_class()(tmp / "collector", extra_args=extra)
    collectors = [collector]
    result: dict[str, Any] = {
        "config": {
            "agents": n,
            "batches_per_agent": m,
            "samples_per_batch": s,
            "window": args.window,
            "pace_seconds": args.pace,
            "warmup_batches_per_agent": args.warmup,
            "customers": len(customers),
            "duplicates_per_agent": min(DUPLICATES_PER_AGENT, m),
            "cpus": os.cpu_count(),
            "data_dir_fstype": filesystem_type(tmp),
            "store": STORES[args.store],
            "client": f"{args.sim_procs} simulator process(es) (tests/bench/light_agents.py), "
            "sharing the CPUs with the collector",
            "simulator_processes": args.sim_procs,
            "replicas": args.replicas,
        }
    }
    try:
        progress(f"starting the collector in {tmp}")
        start_collector(collector)
        for number in range(2, args.replicas + 1):
            collectors.append(start_replica(collector, number, extra))
        pids = [c.process.pid for c in collectors if c.process is not None]
        t = time.perf_counter()
        agents = provision(collector, n, customers, args.pace, store_url)
        provision_seconds = time.perf_counter() - t
        progress(f"{n} agents provisioned in {provision_seconds:.1f}s; starting the simulators")
        now_ms = int(time.time() * 1000)
        spec = {
            "endpoints": [c.agent_address for c in collectors],
            "ca_pem": (collector.data_dir / "ca.pem").read_text(),
            "batches": m,
            "samples": s,
            "window": args.window,
            "warmup": args.warmup,
            "pace": args.pace,
            "start_ms": now_ms,
        }
        simulators = Simulators(agents, args.sim_procs, spec, tmp)
        try:
            figures = drive(simulators, pids, collectors, cluster, args.timeout, progress)
            sim_results = simulators.results()
        finally:
            simulators.stop()
        merge_results(agents, sim_results)
        progress("verifying the store")
        problems = verify(collector, agents, m, s, store_url)
        scrape_cost: dict[str, float] = {}
        final = scrape(collector, scrape_cost)
        final = {**final, **scrape_all(collectors)} if len(collectors) > 1 else final
        problems += check_counters(final, n * m, n * min(DUPLICATES_PER_AGENT, m))
        rss_end = status_of(pids)
        folds = history_folds(replica.log_text() for replica in collectors)
    finally:
        for replica in collectors:
            replica.stop()
        if cluster is not None:
            cluster.stop()
        if args.keep:
            progress(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    sims = [a.sim for a in agents]
    ok_agents = [a for a in sims if not a.error]
    total_batches = sum(len(a.latencies) for a in sims)
    payload_bytes = sum(len(p) for p in profile_payloads(0, m, s, now_ms))
    wall = figures["ingest_wall"]
    status = figures["status"]
    phase1 = figures["phase1_metrics"]
    server_count = phase1.get("aftercare_ingest_ack_latency_seconds_count", 0.0)
    server_sum = phase1.get("aftercare_ingest_ack_latency_seconds_sum", 0.0)
    connect_times = [a.connect_seconds for a in ok_agents]
    result.update(
        provisioning={"agents": n, "seconds": round(provision_seconds, 2)},
        payloads={"batches": n * m, "mean_bytes": round(payload_bytes / max(1, m))},
        connect={
            "agents": len(connect_times),
            "all_seconds": round(figures["connect_wall"], 3),
            "per_agent_ms": latency_ms(connect_times),
            "collector_cpu_seconds": round(figures["connect_collector_cpu"], 2),
            "client_cpu_seconds": round(figures["connect_client_cpu"], 2),
        },
        ingest={
            "batches": total_batches,
            "samples": total_batches * s,
            "wall_seconds": round(wall, 3),
            "batches_per_second": round(total_batches / wall, 1) if wall else 0.0,
            "samples_per_second": round(total_batches * s / wall) if wall else 0,
            "equivalent_agents_at_10s": round(total_batches / wall * INTERVAL_SECONDS)
            if wall
            else 0,
            "ack_latency_ms": latency_ms([x for a in sims for x in a.latencies]),
            "slow_ack_seconds": slow_ack_seconds(sims, figures["ingest_start_wall"]),
            "server_ack_latency_mean_ms": round(server_sum / server_count * 1000, 2)
            if server_count
            else None,
            "collector_cpu_seconds": round(figures["ingest_collector_cpu"], 2),
            "collector_cores": round(figures["ingest_collector_cpu"] / wall, 2) if wall else 0,
            "collector_cpu_ms_per_batch": round(
                figures["ingest_collector_cpu"] * 1000 / max(1, total_batches), 3
            ),
            "client_cpu_seconds": round(figures["ingest_client_cpu"], 2),
            "client_cores": round(figures["ingest_client_cpu"] / wall, 2) if wall else 0,
            "database_cpu_seconds": round(figures["ingest_database_cpu"], 2),
            "database_cpu_ms_per_batch": round(
                figures["ingest_database_cpu"] * 1000 / max(1, total_batches), 3
            ),
            "collector_cpu_seconds_by_thread": figures["ingest_threads"],
            "store_calls_until_ingested": histogram_rows(
                phase1, "aftercare_store_call_seconds", "call"
            ),
            "gc_pauses_until_ingested": histogram_rows(
                phase1, "aftercare_gc_pause_seconds", "generation"
            ),
        },
        duplicates={
            "sent": sum(len(a.duplicate_latencies) for a in sims),
            "acked_duplicate": sum(a.duplicates_acked for a in sims),
            "wall_seconds": round(figures["duplicates_wall"], 3),
            "ack_latency_ms": latency_ms([x for a in sims for x in a.duplicate_latencies]),
            "collector_cpu_seconds": round(figures["duplicates_collector_cpu"], 2),
            "runs_refused": sum(a.runs_refused for a in sims),
            "stream_errors_survived": sum(len(a.stream_errors) for a in sims),
        },
        history_folds=folds,
        collector={
            "rss_mib_before_connect": round(figures["status_before"].get("VmRSS", 0) / 1024, 1),
            "rss_mib_connected": round(figures["status_connected"].get("VmRSS", 0) / 1024, 1),
            "rss_mib_after_ingest": round(status.get("VmRSS", 0) / 1024, 1),
            "rss_mib_at_end": round(rss_end.get("VmRSS", 0) / 1024, 1),
            "peak_rss_mib": round(rss_end.get("VmHWM", 0) / 1024, 1),
            "rss_kib_per_agent_connected": per_agent_kib(
                figures["status_connected"], figures["status_before"], len(sims)
            ),
            "rss_kib_per_agent_after_ingest": per_agent_kib(
                status, figures["status_before"], len(sims)
            ),
            "threads": status.get("Threads", 0),
            "metrics_scrape": scrape_cost,
            "metrics": {k: v for k, v in final.items() if not k.endswith("_created")},
        },
        verified=not problems,
        problems=problems,
    )
    return result


def per_agent_kib(status: dict[str, int], before: dict[str, int], agents: int) -> float:
    """RSS growth (KiB) from ``before`` to ``status``, divided over ``agents``."""
    growth = status.get("VmRSS", 0) - before.get("VmRSS", 0)
    return round(growth / max(1, agents), 1)


def report(result: dict[str, Any]) -> str:
    c, e, p = result["config"], result["provisioning"], result["payloads"]
    k, i, d, col = result["connect"], result["ingest"], result["duplicates"], result["collector"]

    def lat(figures: dict[str, float]) -> str:
        return " ".join(f"{key} {figures[key]:.1f}" for key in ("p50", "p90", "p99", "max"))

    server = i["server_ack_latency_mean_ms"]
    t = i["collector_cpu_seconds_by_thread"]
    lines = [
        "aftercare collector ingest benchmark",
        f"  {c['agents']} agents over {c['customers']} customers, {c['batches_per_agent']} "
        f"batches each ({c['warmup_batches_per_agent']} untimed warm-up), "
        f"{c['samples_per_batch']} samples per batch, window {c['window']}, "
        + (
            f"paced: one batch per agent every {c['pace_seconds']:g}s "
            f"(offered {c['agents'] / c['pace_seconds']:.0f} batches/s)"
            if c["pace_seconds"]
            else "unpaced (all at once)"
        ),
        f"  store: {c['store']}, data dir on {c['data_dir_fstype']}",
        f"  {c['cpus']} CPUs shared by {c['replicas']} collector replica(s) and "
        f"{c['simulator_processes']} simulator "
        "process(es)",
        f"setup:      {e['agents']} agents provisioned (certificates from the CA) in "
        f"{e['seconds']:.1f}s (not timed); {p['batches']} batches of "
        f"~{p['mean_bytes'] / 1024:.1f} KiB",
        f"connect:    {k['agents']} mTLS streams + Hello/Welcome in {k['all_seconds']:.2f}s "
        f"(per agent ms: {lat(k['per_agent_ms'])}); CPU collector "
        f"{k['collector_cpu_seconds']:.1f}s, simulators {k['client_cpu_seconds']:.1f}s",
        f"ingest:     {i['batches']} batches, {i['samples']} samples in {i['wall_seconds']:.2f}s",
        f"  rate      {i['batches_per_second']:.0f} batches/s, {i['samples_per_second']} "
        f"samples/s (= {i['equivalent_agents_at_10s']} agents at a 10s interval)",
        f"  ack ms    {lat(i['ack_latency_ms'])} (write to ack, client side)",
        "  slow acks "
        + (
            ", ".join(
                f"{x['slow_acks']} at {x['second']}s (<= {x['slowest_s']}s)"
                for x in i["slow_ack_seconds"]
            )
            or "none"
        )
        + " (acks >= 0.5 s in the 5 worst seconds since the ingest began)",
        "  server    mean "
        + (f"{server:.1f} ms" if server is not None else "n/a")
        + " receive-to-durable (aftercare_ingest_ack_latency_seconds)",
        f"  CPU       collector {i['collector_cpu_seconds']:.1f}s "
        f"({i['collector_cores']:.2f} cores, {i['collector_cpu_ms_per_batch']:.2f} ms per "
        f"batch), simulated agents {i['client_cpu_seconds']:.1f}s "
        f"({i['client_cores']:.2f} cores)"
        + (
            f", PostgreSQL server {i['database_cpu_seconds']:.1f}s "
            f"({i['database_cpu_ms_per_batch']:.2f} ms per batch)"
            if i["database_cpu_seconds"]
            else ""
        ),
        f"  threads   collector CPU s: event loop {t['event_loop']:.1f}, busiest other Python "
        f"thread (store writer) {t['busiest_other_python_thread']:.1f}, other Python "
        f"{t['other_python_threads']:.1f}, gRPC core {t['grpc_core_threads']:.1f}",
        "  writer    store calls until the end of ingest (calls, seconds, over "
        f"{SLOW_SECONDS}s): "
        + ", ".join(
            f"{c['call']} {c['count']} {c['seconds']}s {c[f'over_{SLOW_SECONDS}s']}"
            for c in i["store_calls_until_ingested"]
        ),
        "  gc        garbage collections until the end of ingest (generation: count, "
        f"seconds every thread stood still, over {SLOW_SECONDS}s): "
        + ", ".join(
            f"{g['generation']}: {g['count']} {g['seconds']}s {g[f'over_{SLOW_SECONDS}s']}"
            for g in sorted(i["gc_pauses_until_ingested"], key=lambda g: g["generation"])
        ),
        f"collector:  RSS {col['rss_mib_before_connect']:.0f} MiB before connecting, "
        f"{col['rss_mib_connected']:.0f} MiB connected, "
        f"{col['rss_mib_after_ingest']:.0f} MiB after ingest, peak "
        f"{col['peak_rss_mib']:.0f} MiB, {col['threads']} threads",
        f"  per agent {col['rss_kib_per_agent_connected']:.0f} KiB connected, "
        f"{col['rss_kib_per_agent_after_ingest']:.0f} KiB after ingest "
        "(RSS growth over the RSS before connecting)",
        f"/metrics:   one scrape after the run: {col['metrics_scrape']['lines']} lines, "
        f"{col['metrics_scrape']['mib']} MiB in {col['metrics_scrape']['seconds']}s, collector "
        f"CPU {col['metrics_scrape']['collector_cpu_seconds']}s",
        f"duplicates: {d['sent']} re-sent on new streams, {d['acked_duplicate']} acked "
        f"duplicate=True in {d['wall_seconds']:.2f}s (ack ms: {lat(d['ack_latency_ms'])}); "
        f"collector CPU {d['collector_cpu_seconds']}s (a reconnect storm of every agent)",
        "history:   fold passes of the metric history (staged batches in seconds): "
        + (
            ", ".join(f"{f['batches']} in {f['seconds']}s" for f in result["history_folds"])
            or "none finished during the run (a pass is logged when it ends)"
        ),
        f"run requests from the default rules: {d['runs_refused']} refused by the simulated "
        "agents, as a host that serves no playbooks would; client stream errors survived by "
        f"reconnecting: {d['stream_errors_survived']}",
    ]
    if result["verified"]:
        lines.append(
            f"verified: exactly once (every agent stores 1..{c['batches_per_agent']}, "
            "duplicates not stored again)"
        )
    else:
        lines.append(f"NOT verified: {len(result['problems'])} problems")
        lines += [f"  {problem}" for problem in result["problems"][:20]]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Collector ingest rate and ack latency with many simulated agents.",
    )
    parser.add_argument("--agents", type=int, help=f"simulated agents ({DEFAULTS['agents']})")
    parser.add_argument("--batches", type=int, help=f"batches per agent ({DEFAULTS['batches']})")
    parser.add_argument("--samples", type=int, help=f"samples per batch ({DEFAULTS['samples']})")
    parser.add_argument("--window", type=int, default=16, help="unacked batches per agent (16)")
    parser.add_argument("--customers", type=int, default=4, help="customers to spread over (4)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="batches each agent sends right after connecting, not timed (0): with 1 the "
        "timed phase is the steady state, the agents' series already created",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="collector replicas on the one PostgreSQL (1); simulator process k talks to "
        "replica k modulo this (needs --store postgresql and --sim-procs >= replicas)",
    )
    parser.add_argument(
        "--sim-procs",
        type=int,
        default=1,
        help="simulator processes sharing the agents (1); each multiplexes its agents' "
        "streams on one asyncio loop",
    )
    parser.add_argument(
        "--pace",
        type=float,
        default=0.0,
        help="steady state: each agent sends one batch every PACE seconds, phases spread "
        "evenly (offered load N/PACE batches/s); 0 (default): all batches at once, at most "
        "--window unacked per agent",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['agents']} agents x {QUICK['batches']} batches (unless given)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="limit per phase, seconds (600)"
    )
    parser.add_argument(
        "--store",
        choices=sorted(STORES),
        default="sqlite",
        help="the collector's store: sqlite (default) or postgresql (a throwaway cluster)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else DEFAULTS
    for name, default in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    for name in ("agents", "batches", "samples", "window", "customers", "sim_procs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.replicas < 1 or (args.replicas > 1 and args.store != "postgresql"):
        parser.error("--replicas above 1 needs --store postgresql")
    if args.sim_procs < args.replicas:
        parser.error("--sim-procs must be at least --replicas (one simulator per replica)")
    if not 0 <= args.warmup < args.batches:
        parser.error("--warmup must be at least 0 and less than --batches")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    progress = Progress(quiet=False)
    try:
        result = run(args, progress)
    except BenchError as exc:
        print(f"ingest benchmark failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0 if result["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
