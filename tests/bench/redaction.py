"""Benchmark: throughput of the agent's secret redaction (``agent.playbook.redact``).

Not a pytest test; prints figures (``--json`` for one machine-readable JSON object).

    .venv/bin/python tests/bench/redaction.py [--mib N] [--repeat N] [--json]

Inputs, each about ``--mib`` MiB (default 8), built in memory:

- **ordinary**: the negative corpus of ``tests/agent/data/redaction_negative/`` (df,
  dpkg, sysctl, meminfo, process lists, journal lines: output with no secret), repeated;
- **mixed**: the same with the positive corpus ``tests/agent/data/secrets_corpus.txt``
  (one line in ten holds a secret) interleaved, when that file exists;
- **adversarial**: lines built to make a backtracking matcher slow: 64 KiB runs of word
  characters, ``a.a.a.``, ``password password ...``, ``=`` runs, ``-p-p-p``, long
  quoted values, ``mysql`` repeated.

Each input is redacted ``--repeat`` times (default 3) by ``Redactor().redact`` (whole)
and by a stream fed 64 KiB chunks, the way playbook output arrives; the best CPU time
(``time.process_time``) of the repeats gives MiB/s. CPU time, not wall-clock, so other
load on the machine matters less; expect 10-20 % variation all the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.playbook.redact import Redactor  # noqa: E402

DATA = ROOT / "tests" / "agent" / "data"
MIB = 1024 * 1024
CHUNK = 64 * 1024


def ordinary() -> bytes:
    parts = sorted((DATA / "redaction_negative").glob("*.txt"))
    return b"".join(p.read_bytes() for p in parts)


def positives() -> list[bytes]:
    corpus = DATA / "secrets_corpus.txt"
    if not corpus.exists():
        return []
    lines = []
    for line in corpus.read_bytes().splitlines():
        if line and not line.startswith(b"#") and line not in (b"<<<", b">>>"):
            lines.append(line.replace("«".encode(), b"").replace("»".encode(), b"") + b"\n")
    return lines


def mixed() -> bytes:
    plain = ordinary().splitlines(keepends=True)
    secret = positives()
    if not secret:
        return b""
    out = []
    for i, line in enumerate(plain):
        out.append(line)
        if i % 9 == 0:
            out.append(secret[(i // 9) % len(secret)])
    return b"".join(out)


def adversarial() -> bytes:
    pieces = [
        b"a" * 65536,
        b"a." * 32768,
        b"password " * 7000,
        b"=" * 65536,
        b"-p" * 32768,
        b'password="' + b"\\a" * 30000,
        b"mysql " * 10000,
        b"x_token_" * 8000,
        b"https://" + b"a:" * 30000,
        b"eyJ" + b"a" * 60000,
        b"-----BEGIN " + b"A " * 30000,
        b"Authorization: Bearer " + b"a" * 60000,
    ]
    return b"\n".join(pieces) + b"\n"


def repeat_to(data: bytes, size: int) -> bytes:
    if not data:
        return b""
    return data * max(1, size // len(data))


def best_cpu(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return max(best, 1e-6)


def measure(name: str, data: bytes, repeat: int) -> dict[str, object]:
    redactor = Redactor()

    def whole() -> None:
        redactor.redact(data)

    def streamed() -> None:
        stream = redactor.stream()
        for start in range(0, len(data), CHUNK):
            stream.feed(data[start : start + CHUNK])
        stream.finish()

    redactions = redactor.redact(data)[1]
    size = len(data) / MIB
    return {
        "input": name,
        "mib": round(size, 2),
        "redactions": redactions,
        "whole_mib_s": round(size / best_cpu(whole, repeat), 1),
        "stream_mib_s": round(size / best_cpu(streamed, repeat), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--mib", type=float, default=8.0, help="size of each input, MiB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per input (best is kept)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    size = int(args.mib * MIB)
    inputs = {"ordinary": ordinary(), "mixed": mixed(), "adversarial": adversarial()}
    results = [
        measure(name, repeat_to(data, size) if name != "adversarial" else data, args.repeat)
        for name, data in inputs.items()
        if data
    ]
    if args.json:
        print(json.dumps({"results": results}))
        return 0
    print(f"{'input':<12} {'MiB':>6} {'redactions':>11} {'whole MiB/s':>12} {'stream MiB/s':>13}")
    for r in results:
        print(
            f"{r['input']:<12} {r['mib']:>6} {r['redactions']:>11} "
            f"{r['whole_mib_s']:>12} {r['stream_mib_s']:>13}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
