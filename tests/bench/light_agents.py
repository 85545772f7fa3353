"""Light-agent simulator for tests/bench/ingest.py: one process multiplexing thousands of
agent control streams.

Run by the benchmark as ``python -m tests.bench.light_agents SPEC.json`` (one or more
processes, so the simulator never shares the collector's interpreter). The spec names
the collector's agent endpoint, its CA and, for every simulated agent, the key and the
certificate the collector's CA issued for it (made by the benchmark directly with
``collector.pki``, not by enrolling). Each agent has its own mutual-TLS ``grpc.aio``
channel and ``Connect`` stream, sends a Hello, reads the Welcome, then sends its
batches (sequence 1..M, realistic sampler names and labels) and answers run requests
as a host serving no playbooks would (refused).

Payloads are shared: an agent's batch ``k`` is the serialised batch ``k`` of one of
``PROFILES`` host profiles (agent index modulo), so 10,000 agents cost a few MiB.

Phases, driven by the benchmark over the worker's stdin/stdout (one line each):

    worker -> "connected"      every agent of this worker is connected and has sent its
                               ``warmup`` first batches, untimed (or failed)
    bench  -> "go"             send the other batches up to M (paced or all at once)
    worker -> "ingested"       every agent has all its acks and ended its stream
    bench  -> "duplicates"     reconnect and re-send the last DUPLICATES_PER_AGENT
    worker -> "done"           results written to the spec's ``result`` path (JSON)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from agent import __version__ as AGENT_VERSION
from proto import agent_pb2

CONNECT_METHOD = "/aftercare.v1.AgentStream/Connect"
INTERVAL_SECONDS = 10.0  # the agent's default collection interval (collected_unix_ms spacing)
DUPLICATES_PER_AGENT = 5
SLOW_ACK_SECONDS = 0.5  # new batches acked this late are reported with their time
READ_TIMEOUT_SECONDS = 60.0  # one Welcome or Ack; generous: the collector may be saturated
PROFILES = 64  # distinct host shapes; agents share their serialised batches
RECONNECTS = 3  # attempts of the re-sending phase (grpc.aio now and then fails a new
# call on a long-idle channel with INTERNAL "Internal error from Core"; an agent reconnects)
CONNECTING_AT_ONCE = 64  # TLS handshakes in flight per worker (a reconnect storm, bounded)


class BenchError(Exception):
    """Something the benchmark could not do; the message says what."""


@dataclass
class SimAgent:
    """One simulated agent and what it measured."""

    index: int
    hostname: str
    agent_id: str = ""
    key_pem: bytes = b""
    cert_pem: bytes = b""
    pace_seconds: float = 0.0  # one batch every this many seconds (0: all at once)
    phase_seconds: float = 0.0  # this agent's offset within the pace (spread evenly)
    payloads: Sequence[bytes] = ()  # AgentMessage(batch=...), sequence 1..M
    connect_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # per batch, seconds
    duplicate_latencies: list[float] = field(default_factory=list)
    slow_acks: list[tuple[float, float]] = field(default_factory=list)  # (wall time, s)
    duplicates_acked: int = 0
    welcome_last_sequence: int = -1  # what the Welcome of the second stream said
    runs_refused: int = 0  # run requests (the default rules' diagnostics) answered "refused"
    stream_errors: list[str] = field(default_factory=list)  # survived by reconnecting
    error: str = ""


# -- payloads ---------------------------------------------------------------------------


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


def profile_payloads(profile: int, batches: int, samples: int, start_ms: int) -> list[bytes]:
    """Host profile ``profile``'s M serialised batches (collected ``INTERVAL_SECONDS``
    apart, the last at ``start_ms``)."""
    rng = random.Random(profile)
    catalogue = sample_catalogue(rng, samples)
    interval_ms = int(INTERVAL_SECONDS * 1000)
    payloads = []
    for sequence in range(1, batches + 1):
        batch = agent_pb2.MetricBatch(
            sequence=sequence,
            collected_unix_ms=start_ms - (batches - sequence) * interval_ms,
            samples=[
                agent_pb2.Sample(name=name, labels=labels, value=sample_value(rng, name, sequence))
                for name, labels in catalogue
            ],
        )
        payloads.append(agent_pb2.AgentMessage(batch=batch).SerializeToString())
    return payloads


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


# -- one agent's streams ------------------------------------------------------------------


def _raw_bytes(payload: bytes) -> bytes:
    return payload


def open_channel(agent: SimAgent, endpoint: str, ca_pem: bytes) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=agent.key_pem, certificate_chain=agent.cert_pem
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
    start: float,
) -> int:
    """Write ``batches`` with at most ``window`` unacknowledged; record write-to-ack times.

    Paced (``agent.pace_seconds`` and a ``start``, new batches only): batch k is
    written at ``start + agent.phase_seconds + k * agent.pace_seconds``. Run requests between the
    acks are refused as an agent would (``agent.runs_refused`` counts them). Returns how
    many acks had ``duplicate`` as expected; BenchError on anything else (an ack out of
    order, a missing one, the stream ending).
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
        first = start + agent.phase_seconds
        for k, (sequence, payload) in enumerate(batches):
            if agent.pace_seconds and start and not expect_duplicate:  # steady state
                await asyncio.sleep(max(0.0, first + k * agent.pace_seconds - time.perf_counter()))
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
            latency = now - sent_at.pop(want)
            latencies.append(latency)
            if latency >= SLOW_ACK_SECONDS and not expect_duplicate:
                agent.slow_acks.append((time.time(), latency))
            as_expected += message.ack.duplicate == expect_duplicate
            room.release()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(writer())
            group.create_task(reader())
    except BaseExceptionGroup as failed:  # the first failure is the one that matters
        raise failed.exceptions[0] from None
    return as_expected


@dataclass
class Phases:
    """Cross-agent synchronisation inside one worker."""

    connecting: asyncio.Semaphore
    go: asyncio.Event
    go_duplicates: asyncio.Event
    connected: Callable[[int], None]
    ingested: Callable[[int], None]
    start: list[float] = field(default_factory=lambda: [0.0])  # perf_counter of "go"


async def run_agent(
    agent: SimAgent, endpoint: str, ca_pem: bytes, window: int, warmup: int, p: Phases
) -> None:
    """Connect and send the ``warmup`` first batches (untimed: the collector creates
    the agent's series), wait for the start, ingest the rest up to M, then reconnect
    and re-send the last 5."""
    channel = open_channel(agent, endpoint, ca_pem)
    try:
        batches = list(enumerate(agent.payloads, start=1))
        async with p.connecting:
            started = time.perf_counter()
            call, last = await start_stream(channel, agent)
            agent.connect_seconds = time.perf_counter() - started
            if last != 0:
                raise BenchError(f"a fresh agent's Welcome says last_sequence {last}")
            warm = await send_window(call, batches[:warmup], window, [], False, agent, 0.0)
            if warm != warmup:
                raise BenchError(f"{warmup - warm} warm-up batches acked as duplicates")
        p.connected(agent.index)
        await p.go.wait()
        unexpected = (
            len(batches)
            - warmup
            - await send_window(
                call, batches[warmup:], window, agent.latencies, False, agent, p.start[0]
            )
        )
        if unexpected:
            raise BenchError(f"{unexpected} new batches acked as duplicates")
        try:
            await end_stream(call)
        except grpc.aio.AioRpcError as exc:  # every ack is in: the data is not at stake
            agent.stream_errors.append(f"closing after the last ack: {exc.code().name}")
        p.ingested(agent.index)
        await p.go_duplicates.wait()
        for attempt in range(1, RECONNECTS + 1):
            try:
                async with p.connecting:  # bounded, as in the first connect
                    call, agent.welcome_last_sequence = await start_stream(channel, agent)
                agent.duplicate_latencies.clear()
                agent.duplicates_acked = await send_window(
                    call,
                    batches[-DUPLICATES_PER_AGENT:],
                    window,
                    agent.duplicate_latencies,
                    True,
                    agent,
                    p.start[0],
                )
                await end_stream(call)
                break
            except grpc.aio.AioRpcError as exc:  # reconnect, as an agent would
                agent.stream_errors.append(f"re-sending: {exc.code().name}")
                if attempt == RECONNECTS:
                    raise
                await channel.close(None)
                channel = open_channel(agent, endpoint, ca_pem)
    finally:
        await channel.close(None)


# -- the worker process -----------------------------------------------------------------


async def _read_command(want: str) -> None:
    """Wait for the benchmark to write ``want`` on stdin (blocking read off the loop)."""
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != want:
        raise BenchError(f"expected {want!r} from the benchmark, got {line.strip()!r}")


def _say(word: str) -> None:
    print(word, flush=True)


async def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run every agent of ``spec`` through the phases; return the results."""
    batches, samples = int(spec["batches"]), int(spec["samples"])
    payloads = {
        p: profile_payloads(p, batches, samples, int(spec["start_ms"]))
        for p in {a["index"] % PROFILES for a in spec["agents"]}
    }
    agents = [
        SimAgent(
            index=int(a["index"]),
            hostname=a["hostname"],
            agent_id=a["agent_id"],
            key_pem=a["key_pem"].encode(),
            cert_pem=a["cert_pem"].encode(),
            pace_seconds=float(spec["pace"]),
            phase_seconds=float(a["phase"]),
            payloads=payloads[int(a["index"]) % PROFILES],
        )
        for a in spec["agents"]
    ]
    n = len(agents)
    connected_ids: set[int] = set()
    ingested_ids: set[int] = set()
    all_connected, all_ingested = asyncio.Event(), asyncio.Event()

    def mark(ids: set[int], event: asyncio.Event, index: int) -> None:
        ids.add(index)
        if len(ids) == n:
            event.set()

    phases = Phases(
        connecting=asyncio.Semaphore(CONNECTING_AT_ONCE),
        go=asyncio.Event(),
        go_duplicates=asyncio.Event(),
        connected=lambda i: mark(connected_ids, all_connected, i),
        ingested=lambda i: mark(ingested_ids, all_ingested, i),
    )

    async def guarded(agent: SimAgent) -> None:
        try:
            await run_agent(
                agent,
                spec["endpoint"],
                spec["ca_pem"].encode(),
                spec["window"],
                int(spec["warmup"]),
                phases,
            )
        except Exception as exc:  # recorded and reported; the others go on without it
            if isinstance(exc, grpc.aio.AioRpcError):
                agent.error = f"{exc.code().name}: {exc.details()}"
            else:
                agent.error = f"{type(exc).__name__}: {exc}"
            mark(connected_ids, all_connected, agent.index)
            mark(ingested_ids, all_ingested, agent.index)

    cpu = {"start": time.process_time()}
    tasks = [asyncio.create_task(guarded(agent)) for agent in agents]
    try:
        await all_connected.wait()
        cpu["connected"] = time.process_time()
        _say("connected")
        await _read_command("go")
        phases.start[0] = time.perf_counter()
        phases.go.set()
        await all_ingested.wait()
        cpu["ingested"] = time.process_time()
        _say("ingested")
        await _read_command("duplicates")
        phases.go_duplicates.set()
        await asyncio.gather(*tasks)
        cpu["done"] = time.process_time()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "cpu_seconds": {
            "connect": cpu["connected"] - cpu["start"],
            "ingest": cpu["ingested"] - cpu["connected"],
            "duplicates": cpu["done"] - cpu["ingested"],
        },
        "agents": [
            {
                "index": a.index,
                "connect_seconds": a.connect_seconds,
                "latencies": a.latencies,
                "duplicate_latencies": a.duplicate_latencies,
                "slow_acks": a.slow_acks,
                "duplicates_acked": a.duplicates_acked,
                "welcome_last_sequence": a.welcome_last_sequence,
                "runs_refused": a.runs_refused,
                "stream_errors": a.stream_errors,
                "error": a.error,
            }
            for a in agents
        ],
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.bench.light_agents SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    result = asyncio.run(run_worker(spec))
    Path(spec["result"]).write_text(json.dumps(result))
    _say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
