"""Benchmark: collector ingest rate and ack latency with many simulated agents.

Not a pytest test; prints figures (``--json`` for one machine-readable JSON object).

    .venv/bin/python tests/bench/ingest.py [--agents N] [--batches M] [--samples S]
                                           [--window W] [--pace SECONDS]
                                           [--store sqlite|postgresql] [--quick] [--json]

``--store postgresql`` runs the collector on a throwaway, durable PostgreSQL cluster
(tests/pg_cluster.py). ``--pace P`` is the steady state instead of the burst: every
agent sends one batch every P seconds, phases spread evenly, so N agents offer N/P
batches/s (10,000 agents at a 15 s interval offer 667/s: ``--agents 200 --pace 0.3``).

1. Starts a real collector process (``tests.support.Collector``: ``python -m
   collector.cli serve`` on free 127.0.0.1 ports, SQLite store in a temporary data dir).
2. Enrols N simulated agents for real, spread over ``--customers`` customers: the first
   join token comes from ``aftercare-collector token create`` (giving the API address and
   CA hash); the others are created in-process with the same code the CLI runs
   (``collector.admin.create_join_token`` on the store the running collector uses) to
   save a Python start-up per agent. Each agent then runs ``agent.enroll.enroll``:
   pinned CA, local key, CSR, certificate written to its own state dir.
3. Every agent opens its own mutual-TLS ``grpc.aio`` channel with its state dir's
   credentials, sends a Hello and reads the Welcome (as ``agent/stream.py`` does, with
   pre-serialised messages on ``/aftercare.v1.AgentStream/Connect``). Once all are
   connected, all of them send M ``MetricBatch`` messages (sequence 1..M, S samples with
   the sampler's names and labels) at once, at most W unacknowledged per agent, and the
   time from writing each batch to reading its Ack is recorded. This is a worst case
   (every agent draining a spool backlog at the same moment), not the steady state of
   one batch per agent per interval: with N*W batches in flight, ack latency is mostly
   queueing (Little's law: latency ~ N*W / rate). ``--agents 1 --window 1`` shows the
   latency of an idle collector.
4. Reports the ingest rate, ack latency percentiles, connect time, the collector's RSS
   and CPU time (from /proc/<pid>), and verifies from the store that every agent's
   sequences are exactly 1..M (and its /metrics counters agree). Phase 2 reconnects
   every agent and re-sends its last 5 batches, which must be acked with
   ``duplicate=True`` and not stored again.

Exit status: 0 when verified, 1 when the store or the acks disagree with what was sent,
2 when the benchmark could not run (the collector's log is printed if it did not start).

All simulated agents run in this process, in one asyncio loop: they share the machine's
CPUs with the collector, so on a small machine the figures are a lower bound for the
collector. Payloads are built before the clock starts so the client mostly does TLS and
HTTP/2 work while measuring; its own CPU time is reported next to the collector's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from agent import __version__ as AGENT_VERSION
from agent.enroll import enroll
from agent.errors import EnrollmentError
from collector import admin
from collector.errors import CollectorError
from collector.store import Store, open_store, open_store_url
from proto import agent_pb2

if TYPE_CHECKING:
    from tests.pg_cluster import PgCluster
    from tests.support import Collector

REPO = Path(__file__).resolve().parents[2]
CONNECT_METHOD = "/aftercare.v1.AgentStream/Connect"
CLK_TCK = os.sysconf("SC_CLK_TCK")
INTERVAL_SECONDS = 10.0  # the agent's default collection interval, for "equivalent fleet"
DUPLICATES_PER_AGENT = 5
READ_TIMEOUT_SECONDS = 60.0  # one Welcome or Ack; generous: the collector may be saturated
ENROLL_THREADS = 4

DEFAULTS = {"agents": 200, "batches": 30, "samples": 150}  # about 30 s on 2 CPUs
QUICK = {"agents": 50, "batches": 10, "samples": 150}  # a few seconds


class BenchError(Exception):
    """Something the benchmark could not do; the message says what."""


# -- simulated agents ------------------------------------------------------------------


@dataclass
class SimAgent:
    """One enrolled simulated agent and what it measured."""

    index: int
    customer: str
    hostname: str
    state_dir: Path
    agent_id: str = ""
    payloads: list[bytes] = field(default_factory=list)  # AgentMessage(batch=...), seq 1..M
    connect_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # per batch, seconds
    duplicate_latencies: list[float] = field(default_factory=list)
    duplicates_acked: int = 0
    welcome_last_sequence: int = -1  # what the Welcome of the second stream said
    runs_refused: int = 0  # run requests (the default rules' diagnostics) answered "refused"
    pace_seconds: float = 0.0  # --pace: one batch every this many seconds (0: all at once)
    phase_seconds: float = 0.0  # this agent's offset within the pace (spread evenly)
    error: str = ""


def sample_catalogue(rng: random.Random, count: int) -> list[tuple[str, dict[str, str]]]:
    """``count`` (name, labels) pairs as the sampler sends them for a plausible host."""
    cpus = rng.choice((2, 4, 8))
    series: list[tuple[str, dict[str, str]]] = []
    for cpu in ["total", *map(str, range(cpus))]:
        series.append(("cpu_usage_ratio", {"cpu": cpu}))
        for mode in ("user", "system", "idle", "iowait", "steal"):
            series.append(("cpu_mode_ratio", {"cpu": cpu, "mode": mode}))
    series += [("load_average", {"period": p}) for p in ("1m", "5m", "15m")]
    series.append(("cpu_count", {}))
    for name in (
        "memory_total_bytes",
        "memory_available_bytes",
        "memory_used_ratio",
        "swap_total_bytes",
        "swap_used_bytes",
        "swap_used_ratio",
        "swap_in_bytes_total",
        "swap_out_bytes_total",
        "oom_kills_total",
        "processes_total",
        "processes_zombie",
        "file_descriptors_allocated",
        "file_descriptors_limit",
        "file_descriptors_used_ratio",
        "boot_time_seconds",
        "uptime_seconds",
        "clock_synchronized",
        "clock_offset_seconds",
        "clock_max_error_seconds",
        "clock_estimated_error_seconds",
        "systemd_units_failed",
    ):
        series.append((name, {}))
    disks = ["vda", "vdb"][: rng.choice((1, 2))]
    for disk in disks:
        for name in (
            "disk_reads_total",
            "disk_read_bytes_total",
            "disk_writes_total",
            "disk_written_bytes_total",
            "disk_io_time_seconds_total",
        ):
            series.append((name, {"device": disk}))
    for interface in ["eth0", "eth1", "docker0"][: rng.choice((1, 2, 3))]:
        for direction in ("receive", "transmit"):
            for what in ("bytes", "packets", "errors", "drops"):
                series.append((f"network_{direction}_{what}_total", {"interface": interface}))
    checks = ["cpu", "load", "memory", "disks", "network", "processes", "file_descriptors"]
    checks += ["uptime", "systemd", "clock"]

    def mounts() -> Iterator[tuple[str, str, str]]:
        yield "/", "/dev/vda1", "ext4"
        yield "/boot", "/dev/vda15", "vfat"
        for i in itertools.count(1):
            yield f"/srv/data{i}", f"/dev/vdb{i}", "xfs"

    filesystem_metrics = (
        "filesystem_size_bytes",
        "filesystem_free_bytes",
        "filesystem_used_ratio",
        "filesystem_inodes_total",
        "filesystem_inodes_free",
        "filesystem_inodes_used_ratio",
        "filesystem_readonly",
    )
    used = len(series) + len(checks)
    for mountpoint, device, fstype in mounts():  # as many mounts as fill the batch
        if used >= count:
            break
        labels = {"mountpoint": mountpoint, "device": device, "fstype": fstype}
        series += [(name, dict(labels)) for name in filesystem_metrics]
        checks.append(f"filesystems:{mountpoint}")
        used += len(filesystem_metrics) + 1
    series += [("agent_check_duration_seconds", {"check": check}) for check in checks]
    assert len(series) >= count
    return series[:count]


def sample_value(rng: random.Random, name: str, sequence: int) -> float:
    if name.endswith("_ratio"):
        return rng.random()
    if name.endswith("_total"):  # counters grow
        return float(sequence * rng.randint(1_000, 1_000_000))
    if name.endswith("_bytes"):
        return float(rng.randint(1 << 20, 1 << 40))
    if name.endswith("_seconds"):
        return rng.uniform(0.0001, 2.0)
    return float(rng.randint(0, 4096))


def build_payloads(agent: SimAgent, batches: int, samples: int, start_ms: int) -> None:
    """Serialise the agent's M batches (collected ``INTERVAL_SECONDS`` apart, ending now)."""
    rng = random.Random(agent.index)
    catalogue = sample_catalogue(rng, samples)
    interval_ms = int(INTERVAL_SECONDS * 1000)
    for sequence in range(1, batches + 1):
        batch = agent_pb2.MetricBatch(
            sequence=sequence,
            collected_unix_ms=start_ms - (batches - sequence) * interval_ms,
            samples=[
                agent_pb2.Sample(name=name, labels=labels, value=sample_value(rng, name, sequence))
                for name, labels in catalogue
            ],
        )
        agent.payloads.append(agent_pb2.AgentMessage(batch=batch).SerializeToString())


def hello(agent: SimAgent) -> bytes:
    message = agent_pb2.AgentMessage(
        hello=agent_pb2.Hello(
            agent_version=AGENT_VERSION,
            hostname=agent.hostname,
            capabilities=["metrics", "gaps"],
            platform="Linux-6.1-x86_64-bench",
            interval_seconds=INTERVAL_SECONDS,
        )
    )
    return message.SerializeToString()


def _raw_bytes(payload: bytes) -> bytes:
    return payload


def open_channel(agent: SimAgent, endpoint: str) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(agent.state_dir / "ca.pem").read_bytes(),
        private_key=(agent.state_dir / "key.pem").read_bytes(),
        certificate_chain=(agent.state_dir / "cert.pem").read_bytes(),
    )
    return grpc.aio.secure_channel(endpoint, credentials)


async def read_message(call: Any, what: str) -> agent_pb2.CollectorMessage:
    """The next CollectorMessage; BenchError if the stream ends or stays silent."""
    try:
        message = await asyncio.wait_for(call.read(), READ_TIMEOUT_SECONDS)
    except TimeoutError as exc:
        raise BenchError(f"no {what} within {READ_TIMEOUT_SECONDS:.0f}s") from exc
    if not isinstance(message, agent_pb2.CollectorMessage):  # grpc.aio.EOF
        code = await call.code()
        details = await call.details()
        raise BenchError(f"stream ended while waiting for {what}: {code.name} {details}")
    return message


async def start_stream(channel: grpc.aio.Channel, agent: SimAgent) -> tuple[Any, int]:
    """Open Connect, send Hello, return (call, Welcome.last_sequence)."""
    connect = channel.stream_stream(
        CONNECT_METHOD,
        request_serializer=_raw_bytes,
        response_deserializer=agent_pb2.CollectorMessage.FromString,
    )
    call: Any = connect()  # type: ignore[call-arg]  # aio: the request iterator is optional
    await call.write(hello(agent))
    welcome = await read_message(call, "Welcome")
    if welcome.WhichOneof("kind") != "welcome":
        raise BenchError(f"expected a Welcome, got {welcome.WhichOneof('kind')}")
    if welcome.welcome.agent_id != agent.agent_id:
        raise BenchError(f"Welcome names {welcome.welcome.agent_id}, not {agent.agent_id}")
    return call, int(welcome.welcome.last_sequence)


# What the collector may send besides acks, and what a real agent does about it: a run
# request (the default rules start diagnostics) is refused, the rest needs no answer.
ANSWERED = frozenset({"run_request"})
NO_ANSWER = frozenset(
    {"run_approval", "run_cancel", "session_requested", "session_decided", "approver_revocations"}
)


def refusal(message: agent_pb2.CollectorMessage) -> bytes:
    """The agent's answer to a run request: refused, as by a host that serves no playbooks."""
    update = agent_pb2.RunUpdate(
        run_id=message.run_request.run_id,
        state="refused",
        message="simulated agent (tests/bench/ingest.py): runs are not served",
    )
    return agent_pb2.AgentMessage(run_update=update).SerializeToString()


async def end_stream(call: Any) -> None:
    """Half-close and wait for the collector to finish the stream with OK (a run request
    that crossed the half-close cannot be answered; the collector gives it up itself)."""
    await call.done_writing()
    while isinstance(
        leftover := await asyncio.wait_for(call.read(), READ_TIMEOUT_SECONDS),
        agent_pb2.CollectorMessage,
    ):
        if leftover.WhichOneof("kind") not in ANSWERED | NO_ANSWER:
            raise BenchError(f"unexpected {leftover.WhichOneof('kind')} after the last ack")
    code = await call.code()
    if code != grpc.StatusCode.OK:
        raise BenchError(f"stream ended with {code.name}: {await call.details()}")


async def send_window(
    call: Any,
    batches: Sequence[tuple[int, bytes]],
    window: int,
    latencies: list[float],
    expect_duplicate: bool,
    agent: SimAgent,
) -> int:
    """Write ``batches`` with at most ``window`` unacknowledged; record write-to-ack times.

    Run requests between the acks are refused as an agent would (``agent.runs_refused``
    counts them). Returns how many acks had ``duplicate`` as expected; BenchError on
    anything else (an ack out of order, a missing one, the stream ending).
    """
    room = asyncio.Semaphore(window)
    writing = asyncio.Lock()  # one write at a time: batches and answers share the call
    sent_at: dict[int, float] = {}
    expected = [sequence for sequence, _ in batches]
    as_expected = 0

    async def answer(message: agent_pb2.CollectorMessage) -> None:
        kind = message.WhichOneof("kind")
        if kind in ANSWERED:
            async with writing:
                await call.write(refusal(message))
            agent.runs_refused += 1
        elif kind not in NO_ANSWER:
            raise BenchError(f"expected an Ack, got {kind}")

    async def writer() -> None:
        start = time.perf_counter() + agent.phase_seconds
        for k, (sequence, payload) in enumerate(batches):
            if agent.pace_seconds and not expect_duplicate:  # steady state: on schedule
                await asyncio.sleep(max(0.0, start + k * agent.pace_seconds - time.perf_counter()))
            try:
                await asyncio.wait_for(room.acquire(), READ_TIMEOUT_SECONDS)
            except TimeoutError as exc:
                raise BenchError(f"window stayed full for {READ_TIMEOUT_SECONDS:.0f}s") from exc
            async with writing:
                sent_at[sequence] = time.perf_counter()
                await call.write(payload)

    async def reader() -> None:
        nonlocal as_expected
        for want in expected:
            while (message := await read_message(call, f"Ack {want}")).WhichOneof("kind") != "ack":
                await answer(message)
            now = time.perf_counter()
            if message.ack.sequence != want:
                raise BenchError(f"expected Ack {want}, got Ack {message.ack.sequence}")
            latencies.append(now - sent_at.pop(want))
            as_expected += message.ack.duplicate == expect_duplicate
            room.release()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(writer())
            group.create_task(reader())
    except BaseExceptionGroup as failed:  # the first failure is the one that matters
        raise failed.exceptions[0] from None
    return as_expected


async def run_agent(
    agent: SimAgent,
    endpoint: str,
    window: int,
    connected: Callable[[], None],
    go: asyncio.Event,
    phase1_done: Callable[[], None],
    go_duplicates: asyncio.Event,
) -> None:
    """Connect, wait for the start, ingest 1..M, then reconnect and re-send the last 5."""
    channel = open_channel(agent, endpoint)
    try:
        started = time.perf_counter()
        call, last = await start_stream(channel, agent)
        agent.connect_seconds = time.perf_counter() - started
        if last != 0:
            raise BenchError(f"a fresh agent's Welcome says last_sequence {last}")
        connected()
        await go.wait()
        batches = list(enumerate(agent.payloads, start=1))
        unexpected = len(batches) - await send_window(
            call, batches, window, agent.latencies, expect_duplicate=False, agent=agent
        )
        if unexpected:
            raise BenchError(f"{unexpected} new batches acked as duplicates")
        await end_stream(call)
        phase1_done()
        await go_duplicates.wait()
        call, agent.welcome_last_sequence = await start_stream(channel, agent)
        agent.duplicates_acked = await send_window(
            call,
            batches[-DUPLICATES_PER_AGENT:],
            window,
            agent.duplicate_latencies,
            expect_duplicate=True,
            agent=agent,
        )
        await end_stream(call)
    finally:
        await channel.close(None)


# -- the collector process ------------------------------------------------------------


def proc_cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of ``pid`` (all threads) or of its thread ``tid``, from /proc."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    text = Path(path).read_text()
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (KiB) and Threads of ``pid``."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            values[key] = int(rest.split()[0])
    return values


def scrape(collector: Collector) -> dict[str, float]:
    """The collector's own ingest counters from /metrics (not the per-host series)."""
    try:
        with urllib.request.urlopen(collector.metrics_url, timeout=30) as response:
            text = response.read().decode()
    except OSError as exc:
        raise BenchError(f"cannot read {collector.metrics_url}: {exc}") from exc
    line_re = re.compile(r"^(aftercare_ingest_[a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$")
    figures: dict[str, float] = {}
    for line in text.splitlines():
        match = line_re.match(line)
        if match and not match.group(1).endswith(("_bucket", "_created")):
            figures[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return figures


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


def join_args(words: list[str]) -> dict[str, str]:
    args = dict(zip(words[::2], words[1::2], strict=True))
    missing = {"--collector", "--token", "--ca-hash"} - args.keys()
    if missing:
        raise BenchError(f"join command lacks {sorted(missing)}: {' '.join(words)}")
    return args


def open_bench_store(collector: Collector, store_url: str | None) -> Store:
    """The store the running collector uses: SQLite in its data dir, or ``store_url``."""
    return open_store_url(store_url) if store_url else open_store(collector.data_dir)


def enroll_all(collector: Collector, agents: list[SimAgent], store_url: str | None) -> None:
    """Create a join token per agent and enrol it (the first token via the real CLI)."""
    first = join_args(collector.join_command(agents[0].customer))
    tokens = [first["--token"]]
    try:
        store = open_bench_store(collector, store_url)
    except CollectorError as exc:
        raise BenchError(f"cannot open the collector's store: {exc}") from exc
    try:
        now = int(time.time() * 1000)
        for agent in agents[1:]:
            tokens.append(
                admin.create_join_token(store, agent.customer, 3_600_000, "bench:ingest", now)
            )
    finally:
        store.close()

    def one(pair: tuple[SimAgent, str]) -> None:
        agent, token = pair
        identity = enroll(
            agent.state_dir, first["--collector"], token, first["--ca-hash"], agent.hostname
        )
        if identity.customer != agent.customer:
            raise BenchError(f"{agent.hostname} enrolled for {identity.customer}")
        agent.agent_id = identity.agent_id

    try:
        with ThreadPoolExecutor(ENROLL_THREADS) as pool:
            list(pool.map(one, zip(agents, tokens, strict=True)))
    except EnrollmentError as exc:
        raise BenchError(f"enrolment failed: {exc}\n{collector.log_text()}") from exc


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


async def within(awaitable: Awaitable[Any], timeout: float, what: str) -> None:
    try:
        await asyncio.wait_for(awaitable, timeout)
    except TimeoutError as exc:
        raise BenchError(f"{what} took longer than --timeout {timeout:g}s") from exc


async def drive(
    agents: list[SimAgent],
    endpoint: str,
    window: int,
    pid: int,
    collector: Collector,
    timeout: float,
    progress: Progress,
) -> dict[str, Any]:
    """Run every agent's stream; return the timing figures measured around the phases."""
    n = len(agents)
    connected_ids: set[int] = set()
    done_ids: set[int] = set()
    all_connected, go, all_done, go_duplicates = (asyncio.Event() for _ in range(4))

    def mark(ids: set[int], event: asyncio.Event, index: int) -> None:
        ids.add(index)
        if len(ids) == n:
            event.set()

    async def guarded(agent: SimAgent) -> None:
        try:
            await run_agent(
                agent,
                endpoint,
                window,
                lambda: mark(connected_ids, all_connected, agent.index),
                go,
                lambda: mark(done_ids, all_done, agent.index),
                go_duplicates,
            )
        except Exception as exc:  # recorded and reported; the others go on without it
            if isinstance(exc, grpc.aio.AioRpcError):
                agent.error = f"{exc.code().name}: {exc.details()}"
            else:
                agent.error = f"{type(exc).__name__}: {exc}"
            mark(connected_ids, all_connected, agent.index)
            mark(done_ids, all_done, agent.index)

    figures: dict[str, Any] = {}
    figures["status_before"] = proc_status(pid)
    cpu0, client0 = proc_cpu_seconds(pid), time.process_time()
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(guarded(agent)) for agent in agents]
    try:
        await within(all_connected.wait(), timeout, "connecting every agent")
        t1 = time.perf_counter()
        cpu1, client1 = proc_cpu_seconds(pid), time.process_time()
        threads1 = thread_cpu(pid)
        figures["status_connected"] = proc_status(pid)
        progress(f"{n} agents connected in {t1 - t0:.2f}s; ingesting")
        go.set()
        await within(all_done.wait(), timeout, "the ingest phase")
        t2 = time.perf_counter()
        cpu2, client2 = proc_cpu_seconds(pid), time.process_time()
        status = proc_status(pid)
        figures["ingest_threads"] = thread_split(pid, threads1)
        figures["phase1_metrics"] = scrape(collector)
        progress(f"ingest done in {t2 - t1:.2f}s; re-sending duplicates")
        cpu3 = proc_cpu_seconds(pid)
        go_duplicates.set()
        await within(asyncio.gather(*tasks), timeout, "the duplicates phase")
        t3 = time.perf_counter()
        cpu4 = proc_cpu_seconds(pid)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    figures.update(
        connect_wall=t1 - t0,
        connect_collector_cpu=cpu1 - cpu0,
        ingest_wall=t2 - t1,
        ingest_collector_cpu=cpu2 - cpu1,
        ingest_client_cpu=client2 - client1,
        connect_client_cpu=client1 - client0,
        duplicates_wall=t3 - t2,
        duplicates_collector_cpu=cpu4 - cpu3,
        status=status,
    )
    return figures


def verify(
    collector: Collector,
    agents: list[SimAgent],
    batches: int,
    samples: int,
    store_url: str | None,
) -> list[str]:
    """Compare the store with what was sent; return the discrepancies (none: exactly once)."""
    problems: list[str] = []
    want = list(range(1, batches + 1))
    store = open_bench_store(collector, store_url)
    try:
        for agent in agents:
            if not agent.agent_id:
                problems.append(f"{agent.hostname}: not enrolled")
                continue
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
    result: dict[str, Any] = {
        "config": {
            "agents": n,
            "batches_per_agent": m,
            "samples_per_batch": s,
            "window": args.window,
            "pace_seconds": args.pace,
            "customers": len(customers),
            "duplicates_per_agent": min(DUPLICATES_PER_AGENT, m),
            "cpus": os.cpu_count(),
            "data_dir_fstype": filesystem_type(tmp),
            "store": STORES[args.store],
            "client": "all agents in the benchmark process, sharing the CPUs",
        }
    }
    try:
        progress(f"starting the collector in {tmp}")
        try:
            collector.start()
        except AssertionError as exc:
            text, log = str(exc), collector.log_text().strip()
            if log and log not in text:
                text += f"\ncollector log {collector.log_path}:\n{log}"
            raise BenchError(f"the collector did not start: {text}") from exc
        assert collector.process is not None
        pid = collector.process.pid
        agents = [
            SimAgent(
                index=i,
                customer=customers[i % len(customers)],
                hostname=f"bench-{i:04d}",
                state_dir=tmp / "agents" / f"bench-{i:04d}",
            )
            for i in range(n)
        ]
        for agent in agents:
            agent.pace_seconds = args.pace
            agent.phase_seconds = args.pace * agent.index / n
        t = time.perf_counter()
        enroll_all(collector, agents, store_url)
        enrol_seconds = time.perf_counter() - t
        progress(f"{n} agents enrolled in {enrol_seconds:.1f}s; building payloads")
        t = time.perf_counter()
        now_ms = int(time.time() * 1000)
        for agent in agents:
            build_payloads(agent, m, s, now_ms)
        build_seconds = time.perf_counter() - t
        payload_bytes = sum(len(p) for agent in agents for p in agent.payloads)
        endpoint = json.loads((agents[0].state_dir / "identity.json").read_text())["agent_endpoint"]
        figures = asyncio.run(
            drive(agents, endpoint, args.window, pid, collector, args.timeout, progress)
        )
        progress("verifying the store")
        problems = verify(collector, agents, m, s, store_url)
        final = scrape(collector)
        problems += check_counters(final, n * m, n * min(DUPLICATES_PER_AGENT, m))
        rss_end = proc_status(pid)
    finally:
        collector.stop()
        if cluster is not None:
            cluster.stop()
        if args.keep:
            progress(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    ok_agents = [a for a in agents if not a.error]
    total_batches = sum(len(a.latencies) for a in agents)
    wall = figures["ingest_wall"]
    status = figures["status"]
    phase1 = figures["phase1_metrics"]
    server_count = phase1.get("aftercare_ingest_ack_latency_seconds_count", 0.0)
    server_sum = phase1.get("aftercare_ingest_ack_latency_seconds_sum", 0.0)
    connect_times = [a.connect_seconds for a in ok_agents]
    result.update(
        enrolment={"agents": n, "seconds": round(enrol_seconds, 2)},
        payloads={
            "batches": n * m,
            "build_seconds": round(build_seconds, 2),
            "mean_bytes": round(payload_bytes / max(1, n * m)),
        },
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
            "ack_latency_ms": latency_ms([x for a in agents for x in a.latencies]),
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
            "collector_cpu_seconds_by_thread": figures["ingest_threads"],
        },
        duplicates={
            "sent": sum(len(a.duplicate_latencies) for a in agents),
            "acked_duplicate": sum(a.duplicates_acked for a in agents),
            "wall_seconds": round(figures["duplicates_wall"], 3),
            "ack_latency_ms": latency_ms([x for a in agents for x in a.duplicate_latencies]),
            "collector_cpu_seconds": round(figures["duplicates_collector_cpu"], 2),
            "runs_refused": sum(a.runs_refused for a in agents),
        },
        collector={
            "rss_mib_before_connect": round(figures["status_before"].get("VmRSS", 0) / 1024, 1),
            "rss_mib_connected": round(figures["status_connected"].get("VmRSS", 0) / 1024, 1),
            "rss_mib_after_ingest": round(status.get("VmRSS", 0) / 1024, 1),
            "rss_mib_at_end": round(rss_end.get("VmRSS", 0) / 1024, 1),
            "peak_rss_mib": round(rss_end.get("VmHWM", 0) / 1024, 1),
            "threads": status.get("Threads", 0),
            "metrics": {k: v for k, v in final.items() if not k.endswith("_created")},
        },
        verified=not problems,
        problems=problems,
    )
    return result


def report(result: dict[str, Any]) -> str:
    c, e, p = result["config"], result["enrolment"], result["payloads"]
    k, i, d, col = result["connect"], result["ingest"], result["duplicates"], result["collector"]

    def lat(figures: dict[str, float]) -> str:
        return " ".join(f"{key} {figures[key]:.1f}" for key in ("p50", "p90", "p99", "max"))

    server = i["server_ack_latency_mean_ms"]
    t = i["collector_cpu_seconds_by_thread"]
    lines = [
        "aftercare collector ingest benchmark",
        f"  {c['agents']} agents over {c['customers']} customers, {c['batches_per_agent']} "
        f"batches each, {c['samples_per_batch']} samples per batch, window {c['window']}, "
        + (
            f"paced: one batch per agent every {c['pace_seconds']:g}s "
            f"(offered {c['agents'] / c['pace_seconds']:.0f} batches/s)"
            if c["pace_seconds"]
            else "unpaced (all at once)"
        ),
        f"  store: {c['store']}, data dir on {c['data_dir_fstype']}",
        f"  {c['cpus']} CPUs shared by the collector and the simulated agents (one process)",
        f"setup:      enrolment {e['seconds']:.1f}s; {p['batches']} batches of "
        f"~{p['mean_bytes'] / 1024:.1f} KiB built in {p['build_seconds']:.1f}s (not timed)",
        f"connect:    {k['agents']} mTLS streams + Hello/Welcome in {k['all_seconds']:.2f}s "
        f"(per agent ms: {lat(k['per_agent_ms'])})",
        f"ingest:     {i['batches']} batches, {i['samples']} samples in {i['wall_seconds']:.2f}s",
        f"  rate      {i['batches_per_second']:.0f} batches/s, {i['samples_per_second']} "
        f"samples/s (= {i['equivalent_agents_at_10s']} agents at a 10s interval)",
        f"  ack ms    {lat(i['ack_latency_ms'])} (write to ack, client side)",
        "  server    mean "
        + (f"{server:.1f} ms" if server is not None else "n/a")
        + " receive-to-durable (aftercare_ingest_ack_latency_seconds)",
        f"  CPU       collector {i['collector_cpu_seconds']:.1f}s "
        f"({i['collector_cores']:.2f} cores, {i['collector_cpu_ms_per_batch']:.2f} ms per "
        f"batch), simulated agents {i['client_cpu_seconds']:.1f}s "
        f"({i['client_cores']:.2f} cores)",
        f"  threads   collector CPU s: event loop {t['event_loop']:.1f}, busiest other Python "
        f"thread (store writer) {t['busiest_other_python_thread']:.1f}, other Python "
        f"{t['other_python_threads']:.1f}, gRPC core {t['grpc_core_threads']:.1f}",
        f"collector:  RSS {col['rss_mib_before_connect']:.0f} MiB before connecting, "
        f"{col['rss_mib_connected']:.0f} MiB connected, "
        f"{col['rss_mib_after_ingest']:.0f} MiB after ingest, peak "
        f"{col['peak_rss_mib']:.0f} MiB, {col['threads']} threads",
        f"duplicates: {d['sent']} re-sent on new streams, {d['acked_duplicate']} acked "
        f"duplicate=True in {d['wall_seconds']:.2f}s (ack ms: {lat(d['ack_latency_ms'])})",
        f"run requests from the default rules: {d['runs_refused']} refused by the simulated "
        "agents, as a host that serves no playbooks would",
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
    for name in ("agents", "batches", "samples", "window", "customers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
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
