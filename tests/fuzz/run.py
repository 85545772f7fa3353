"""Fuzz the parsers that take outside input (``tests/fuzz/targets.py``).

    python -m tests.fuzz.run                      # every target, 100,000 inputs each
    python -m tests.fuzz.run policy rules --runs 5000
    python -m tests.fuzz.run --seconds 600 --json # by time instead of count

Each target runs in its own process: with atheris (coverage-guided libFuzzer,
``pip install atheris``) when it is installed, else with a simple mutator over the
target's seed inputs (``--engine random`` forces it). An input that raises anything
but the target's documented errors is a crash; one that takes longer than
``--timeout`` seconds is a hang. Crashing inputs are written to ``--artifacts``.
The runner prints, per target, the inputs tried and the crashes and hangs found, and
exits 1 if any target found one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_RUNS = 100_000
DEFAULT_TIMEOUT = 10.0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.one:
        return _fuzz_one(args)
    from tests.fuzz.targets import TARGETS

    names = args.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"unknown target(s): {', '.join(unknown)}; known: {', '.join(TARGETS)}")
        return 2
    results = [_run_child(name, args) for name in names]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(
                f"{r['target']:<18} {r['engine']:<8} {r['inputs']:>9} inputs "
                f"{r['seconds']:>7.1f}s  crashes {r['crashes']}  hangs {r['hangs']}"
            )
    return 1 if any(r["crashes"] or r["hangs"] or r["error"] for r in results) else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("targets", nargs="*", help="targets to run (default: all)")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="inputs per target")
    parser.add_argument("--seconds", type=float, default=0, help="time per target instead")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="hang limit (s)")
    parser.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    parser.add_argument("--artifacts", type=Path, default=Path("fuzz-artifacts"))
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # child process mode
    return parser


def _engine(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "random"
    return "atheris"


def _run_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    engine = _engine(args.engine)
    command = [sys.executable, "-m", "tests.fuzz.run", "--one", name, "--engine", engine]
    command += ["--runs", str(args.runs), "--seconds", str(args.seconds)]
    command += ["--timeout", str(args.timeout), "--artifacts", str(args.artifacts)]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    output = done.stdout + done.stderr
    inputs = _inputs_tried(output)
    crashes = len(re.findall(r"^(?:==\d+== ERROR|=== CRASH)", output, re.MULTILINE))
    hangs = len(re.findall(r"ALARM: working on the last Unit|=== HANG", output))
    error = "" if done.returncode == 0 or crashes or hangs else output[-2000:]
    if done.returncode != 0 and not (crashes or hangs or error):
        crashes = 1
    if crashes or hangs or error:
        print(output[-6000:], file=sys.stderr)
    return {
        "target": name,
        "engine": engine,
        "inputs": inputs,
        "seconds": round(time.monotonic() - started, 1),
        "crashes": crashes,
        "hangs": hangs,
        "error": error,
    }


def _inputs_tried(output: str) -> int:
    found = re.findall(r"Done (\d+) runs|=== RUNS (\d+)", output)
    return max((int(a or b) for a, b in found), default=0)


# -- the child process ---------------------------------------------------------------


def _fuzz_one(args: argparse.Namespace) -> int:
    from tests.fuzz.targets import TARGETS

    target = TARGETS[args.one]()
    for seed in target.seeds:  # loads what the target imports lazily, before instrumenting
        _call(target, seed)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    if args.engine == "atheris":
        return _atheris(target, args)
    return _random(target, args)


def _call(target: Any, data: bytes) -> None:
    with contextlib.suppress(*target.expected):
        target.run(data)


def _atheris(target: Any, args: argparse.Namespace) -> int:
    import tempfile

    import atheris

    atheris.instrument_all()
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{args.one}-"))
    for number, seed in enumerate(target.seeds):
        (corpus / f"seed-{number}").write_bytes(seed)
    flags = [
        sys.argv[0],
        str(corpus),
        f"-timeout={max(1, int(args.timeout))}",
        f"-artifact_prefix={args.artifacts}/{args.one}-",
        "-max_len=65536",
        "-print_final_stats=1",
    ]
    flags.append(f"-max_total_time={int(args.seconds)}" if args.seconds else f"-runs={args.runs}")
    atheris.Setup(flags, lambda data: _call(target, data))
    atheris.Fuzz()
    return 0


def _random(target: Any, args: argparse.Namespace) -> int:
    """Mutate the seeds (flip, insert, delete, splice, truncate) with a fixed seed."""
    rng = random.Random(1)
    deadline = time.monotonic() + args.seconds if args.seconds else None

    def on_alarm(signum: int, frame: Any) -> None:
        raise TimeoutError

    signal.signal(signal.SIGALRM, on_alarm)
    runs = 0
    for data in _mutations(rng, list(target.seeds)):
        if (deadline and time.monotonic() > deadline) or (not deadline and runs >= args.runs):
            break
        runs += 1
        signal.setitimer(signal.ITIMER_REAL, args.timeout)
        try:
            _call(target, data)
        except TimeoutError:
            _save(args, "hang", data)
            print(f"=== HANG after {args.timeout}s on input {runs}")
            return 1
        except Exception:
            _save(args, "crash", data)
            print(f"=== CRASH on input {runs}\n{traceback.format_exc()}")
            return 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    print(f"=== RUNS {runs}")
    return 0


def _mutations(rng: random.Random, pool: list[bytes]) -> Iterator[bytes]:
    interesting = [b"\x00", b"\xff", b"\x1b[2J", b"-1", b"18446744073709551621", b"1e309",
                   b"NaN", b'"', b"{", b"[", b"\n", b"\\u0000", b"a" * 70000]  # fmt: skip
    while True:
        data = bytearray(rng.choice(pool) or b"x")
        for _ in range(rng.randint(1, 8)):
            choice = rng.random()
            position = rng.randrange(len(data) + 1)
            if choice < 0.3 and data:
                data[min(position, len(data) - 1)] ^= 1 << rng.randrange(8)
            elif choice < 0.5:
                data[position:position] = rng.choice(interesting)
            elif choice < 0.7:
                del data[position : position + rng.randint(1, 16)]
            elif choice < 0.85:
                other = rng.choice(pool)
                start = rng.randrange(len(other) + 1)
                data[position:position] = other[start : start + rng.randint(1, 64)]
            else:
                del data[position:]
        if rng.random() < 0.05:
            pool.append(bytes(data[:4096]))
        yield bytes(data)


def _save(args: argparse.Namespace, kind: str, data: bytes) -> None:
    path = args.artifacts / f"{args.one}-{kind}-{int(time.time())}"
    path.write_bytes(data)
    print(f"input saved to {path}")


if __name__ == "__main__":
    sys.exit(main())
