"""Benchmark: remote-session cost — scp throughput and keystroke round trip through the
gateway, against direct OpenSSH to the same sshd.

Not a pytest test; prints figures (``--json`` for one machine-readable JSON object).

    .venv/bin/python tests/bench/session_throughput.py [--size 128MiB] [--repeat 3] [--json]

Set-up (``tests.gateway_support.make_world``): a real sshd on a free loopback port
(the host's own login, as the current user), a real collector with its SSH gateway,
and a real agent whose sessions log in to that sshd with its support key; an
engineer key registered, one session requested and approved.

- **scp**: ``scp`` (SFTP protocol, OpenSSH's default) of a ``--size`` file of random
  bytes, upload; ``--repeat`` times directly to the sshd, then through the gateway
  (engineer → paramiko gateway → gRPC tunnel over the agent's mutual-TLS connection
  → agent → paramiko client → sshd). Median MiB/s, and the CPU seconds the collector
  and agent processes used per copied GiB (from /proc/PID/stat).
- **keystroke round trip**: an interactive ``ssh -tt`` shell; one character is typed
  and the time until its echo comes back is measured, ``--keys`` times (median and
  p90), directly and through the gateway; the difference is what the gateway adds.

Target (issue 5): gateway throughput at least half of direct.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.durations import parse_size
from tests.gateway_support import World, make_world, ssh_options
from tests.support import Agent

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _timed_scp(options: list[str], port: int, source: Path, target: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["scp", *options, "-P", str(port), str(source), target],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return time.perf_counter() - started


def measure_scp(world: World, sid: str, source: Path, repeat: int) -> dict[str, Any]:
    size_mib = source.stat().st_size / 2**20
    sshd = world.sshd
    direct_options = ssh_options(sshd.client_key)
    gateway_options = ssh_options(world.keys["erin"])
    pids = {"collector": world.collector.process.pid, "agent": world.agent.process.pid}  # type: ignore[union-attr]
    figures: dict[str, Any] = {}
    for route in ("direct", "gateway"):
        seconds: list[float] = []
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        for n in range(repeat):
            target = world.tmp / f"copy-{route}-{n}.bin"
            if route == "direct":
                seconds.append(
                    _timed_scp(direct_options, sshd.port, source, f"{sshd.user}@127.0.0.1:{target}")
                )
            else:
                seconds.append(
                    _timed_scp(
                        gateway_options,
                        world.collector.ssh_port,
                        source,
                        f"{sid}@127.0.0.1:{target}",
                    )
                )
            target.unlink()
        copied_gib = size_mib * repeat / 1024
        figures[route] = {
            "mib_per_s": round(size_mib / statistics.median(seconds), 1),
            "seconds": [round(s, 2) for s in seconds],
            "cpu_s_per_gib": {
                name: round((cpu_seconds(pid) - cpu_before[name]) / copied_gib, 2)
                for name, pid in pids.items()
            },
        }
    figures["gateway_share_of_direct"] = round(
        figures["gateway"]["mib_per_s"] / figures["direct"]["mib_per_s"], 3
    )
    return figures


def measure_keystrokes(args: list[str], keys: int) -> dict[str, float]:
    """Type one character at a time into an interactive shell; time each echo."""
    shell = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert shell.stdin is not None and shell.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(shell.stdout, selectors.EVENT_READ)

    def read_until(marker: bytes, timeout: float) -> None:
        seen = b""
        deadline = time.monotonic() + timeout
        while marker not in seen:
            if time.monotonic() > deadline or not selector.select(deadline - time.monotonic()):
                raise TimeoutError(f"no {marker!r} from the shell")
            chunk = os.read(shell.stdout.fileno(), 65536)  # type: ignore[union-attr]
            if not chunk:
                raise EOFError("the shell ended")
            seen += chunk

    try:
        shell.stdin.write(b"stty echo; echo READY-$((1+1))\n")
        read_until(b"READY-2", 30)
        time.sleep(0.3)
        while selector.select(0.1):  # drain the prompt
            os.read(shell.stdout.fileno(), 65536)
        samples = []
        for n in range(keys):
            char = bytes([ord("a") + n % 26])
            started = time.perf_counter()
            shell.stdin.write(char)
            read_until(char, 10)
            samples.append((time.perf_counter() - started) * 1000)
        shell.stdin.write(b"\x15exit\n")
    finally:
        shell.kill()
        shell.wait()
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p90_ms": round(samples[int(len(samples) * 0.9) - 1], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="128MiB", help="file copied by scp (128MiB)")
    parser.add_argument("--repeat", type=int, default=3, help="copies per route (3)")
    parser.add_argument("--keys", type=int, default=100, help="keystrokes timed per route (100)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aftercare-bench-") as tmp:
        root = Path(tmp)
        agents: list[Agent] = []

        def make_agent(hostname: str, **config: object) -> Agent:
            agent = Agent(root / f"agent-{hostname}", hostname, {"interval": "5s", **config})
            agents.append(agent)
            return agent

        worlds = make_world(root, make_agent)
        world = next(worlds)
        try:
            sid = world.request()
            world.approve(sid)
            source = root / "payload.bin"
            with source.open("wb") as file:
                for _ in range(parse_size(args.size) // 2**20):
                    file.write(os.urandom(2**20))
            scp = measure_scp(world, sid, source, args.repeat)
            sshd = world.sshd
            direct = measure_keystrokes(
                ["ssh", *ssh_options(sshd.client_key), "-p", str(sshd.port), "-tt",
                 f"{sshd.user}@127.0.0.1"],
                args.keys,
            )  # fmt: skip
            through = measure_keystrokes(world.ssh_args("erin", sid, tty=True), args.keys)
        finally:
            worlds.close()
            for agent in agents:
                agent.stop()
    figures = {
        "size_mib": parse_size(args.size) // 2**20,
        "scp": scp,
        "keystroke": {
            "direct": direct,
            "gateway": through,
            "added_median_ms": round(through["median_ms"] - direct["median_ms"], 2),
        },
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"scp upload of {figures['size_mib']} MiB (median of {args.repeat}):")
    for route in ("direct", "gateway"):
        row = scp[route]
        print(
            f"  {route:8} {row['mib_per_s']:8.1f} MiB/s   CPU s/GiB: "
            + ", ".join(f"{k} {v}" for k, v in row["cpu_s_per_gib"].items())
        )
    share = scp["gateway_share_of_direct"]
    print(f"  gateway / direct = {share:.2f} (target >= 0.5: {'PASS' if share >= 0.5 else 'FAIL'})")
    print(f"keystroke echo round trip ({args.keys} keys):")
    for route in ("direct", "gateway"):
        row = figures["keystroke"][route]  # type: ignore[index]
        print(f"  {route:8} median {row['median_ms']:.2f} ms, p90 {row['p90_ms']:.2f} ms")
    print(f"  added by the gateway: {figures['keystroke']['added_median_ms']} ms (median)")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main())
