"""Redaction measured on corpora: real-world secret shapes (0 misses) and ordinary output.

``data/secrets_corpus.txt`` holds the secret shapes (fake values between « and »,
categories after the rule sets of gitleaks and detect-secrets); the files of
``data/redaction_negative/`` hold ordinary output (df, dpkg -l, dpkg.log, apt history,
sysctl -a, meminfo, mount, /etc/passwd from this machine; a server's process list and
journal lines) in which nothing may be redacted. Both rates are printed.

The issue-11 shapes are also tested one by one, and through the shipped
``memory-pressure`` playbook's process list with real processes.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.playbook import Executor, OutputChunk, Redactor, RenderedBuiltin
from agent.playbook.builtins import default_builtins
from playbooks.loader import load_playbook
from playbooks.model import BuiltinStep
from playbooks.params import render_builtin
from playbooks.shipped import catalogue_dir

DATA = Path(__file__).parent / "data"
OPEN, CLOSE = "«".encode(), "»".encode()
# Ordinary lines that may be redacted (a false positive); documented in docs/playbooks.md.
MAX_FALSE_POSITIVE_RATE = 0.005


@dataclass(frozen=True)
class Entry:
    line: int
    text: bytes  # markers removed
    secrets: tuple[bytes, ...]


def positive_entries() -> list[Entry]:
    entries: list[Entry] = []
    block: list[bytes] | None = None
    for number, raw in enumerate((DATA / "secrets_corpus.txt").read_bytes().splitlines(), 1):
        if raw == b"<<<":
            block = []
        elif raw == b">>>":
            assert block is not None
            entries.append(_entry(number, b"\n".join(block) + b"\n"))
            block = None
        elif block is not None:
            block.append(raw)
        elif raw and not raw.startswith(b"#"):
            entries.append(_entry(number, raw + b"\n"))
    return entries


def _entry(line: int, raw: bytes) -> Entry:
    secrets, text, rest = [], b"", raw
    while OPEN in rest:
        before, rest = rest.split(OPEN, 1)
        secret, rest = rest.split(CLOSE, 1)
        text += before + secret
        secrets.append(secret.replace(b"\\n", b"\n"))
    return Entry(line, text + rest, tuple(secrets))


def negative_lines() -> Iterator[tuple[str, bytes]]:
    for path in sorted((DATA / "redaction_negative").glob("*.txt")):
        for raw in path.read_bytes().splitlines():
            if raw and not raw.startswith(b"# "):
                yield path.name, raw + b"\n"


def leaked(entry: Entry, out: bytes) -> list[bytes]:
    return [s for s in entry.secrets for piece in s.split(b"\n") if piece and piece in out]


def test_positive_corpus_has_no_miss(capsys: pytest.CaptureFixture[str]) -> None:
    entries = positive_entries()
    assert len(entries) >= 150
    redactor = Redactor()
    misses = []
    for entry in entries:
        out, count = redactor.redact(entry.text)
        if leaked(entry, out) or count == 0:
            misses.append((entry.line, out))
    with capsys.disabled():
        print(
            f"\nredaction positive corpus: {len(entries)} entries, {len(misses)} missed "
            f"(miss rate {len(misses) / len(entries):.2%})"
        )
    assert misses == []


def test_negative_corpus_false_positive_rate(capsys: pytest.CaptureFixture[str]) -> None:
    redactor = Redactor()
    lines = list(negative_lines())
    changed = [(name, line) for name, line in lines if redactor.redact(line)[1]]
    rate = len(changed) / len(lines)
    with capsys.disabled():
        print(
            f"\nredaction negative corpus: {len(lines)} lines, {len(changed)} redacted "
            f"(false-positive rate {rate:.2%}, bound {MAX_FALSE_POSITIVE_RATE:.1%})"
        )
    assert len(lines) >= 2000
    assert rate <= MAX_FALSE_POSITIVE_RATE, changed


def test_the_corpora_streamed_in_random_chunks_give_the_same_result() -> None:
    """Chunk boundaries anywhere (in keys, values, PEM lines) change nothing."""
    entries = positive_entries()
    plain = [line for _, line in negative_lines()]
    rng = random.Random(7)
    data = b"".join(e.text + rng.choice(plain) for e in entries)
    redactor = Redactor()
    whole, count = redactor.redact(data)
    assert not any(leaked(e, whole) for e in entries)
    for _ in range(20):
        stream = redactor.stream()
        out, position = [], 0
        while position < len(data):
            size = rng.choice([1, 2, 3, 7, 64, 500, 4096])
            out.append(stream.feed(data[position : position + size]))
            position += size
        out.append(stream.finish())
        assert (b"".join(out), stream.redactions) == (whole, count)


# --- the shapes of issue 11 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"mysql_pwd: hunter2\n", b"mysql_pwd: [REDACTED]\n"),
        (b"MYSQL_PWD=hunter2\n", b"MYSQL_PWD=[REDACTED]\n"),
        (b"export DB_PASS=hunter2\n", b"export DB_PASS=[REDACTED]\n"),
        (b"app --db-password hunter2 -v\n", b"app --db-password [REDACTED] -v\n"),
        (b"mysql -u root -phunter2\n", b"mysql -u root -p[REDACTED]\n"),
    ],
)
def test_issue_shapes(text: bytes, expected: bytes) -> None:
    assert Redactor().redact(text) == (expected, 1)


@pytest.mark.parametrize(
    "text",
    [
        b"docker run -p 8080:80 nginx\n",
        b"ssh -p 2222 backup@10.0.0.9\n",
        b"python3 -m http.server -p 8000\n",
        b"mysql -p shop\n",  # mysql asks for the password; shop is the database
        b"mysql -P 3306 -h db\n",
        b"mkdir -p /var/lib/app\n",
        b"app --password-file /etc/app/pass --token-ttl 3600\n",
        b"PWD=/root OLDPWD=/home/alice\n",
        b"pam_unix(passwd:chauthtok): password changed for alice\n",
        b"net.bridge.bridge-nf-pass-vlan-input-dev = 0\n",
        b"Access denied for user 'monitor'@'localhost' (using password: YES)\n",
        b"password=$DB_PASSWORD token=${TOKEN} secret={{ vault_secret }}\n",
        b'{"private_key_id": "6e9478953f9710afc25389c985841ddc08ff7cb1"}\n',  # an id
    ],
)
def test_lookalikes_are_kept(text: bytes) -> None:
    assert Redactor().redact(text) == (text, 0)


# --- linear time on adversarial input -----------------------------------------------------

ADVERSARIAL = [
    b"a",
    b"a.",
    b"password ",
    b"=",
    b"-p",
    b"mysql ",
    b"x_token_",
    b"a:",
    b"://a:",
    b'password="\\',
    b"eyJ",
    b"Authorization: ",
    b"<a>",
    b"$6$",
    b"-----BEGIN A ",
    b"--password ",
]


@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_adversarial_lines_cost_linear_time(unit: bytes) -> None:
    """8x the input costs well under 64x the CPU (a quadratic scan would); no wall clock.

    Each size takes its fastest of five runs, so a collection or a busy machine's cache
    misses in one run do not decide the verdict.
    """

    def cpu_seconds(size: int) -> float:
        line = unit * (size // len(unit)) + b"\n"
        redactor = Redactor()
        runs = []
        for _ in range(5):
            started = time.process_time()
            redactor.redact(line)
            runs.append(time.process_time() - started)
        return min(runs)

    small = max(cpu_seconds(8_000), 0.005)
    assert cpu_seconds(64_000) / small < 24


# --- the memory-pressure playbook's process list, with real processes ---------------------


def test_memory_pressure_process_list_redacts_command_line_passwords(tmp_path: Path) -> None:
    """Processes started as ``mysql -u root -pSECRET`` and ``app --db-password SECRET``."""
    python = os.path.realpath(sys.executable)
    code = "import time; b = b'x' * (64 << 20); time.sleep(60)"
    programs = []
    for name, args in [("mysql", ["-u", "root", "-pHunter2-mysql"]),
                       ("app", ["--db-password", "Hunter2-app"])]:  # fmt: skip
        link = tmp_path / name
        link.symlink_to(python)
        programs.append(subprocess.Popen([str(link), "-c", code, *args]))
    try:
        _wait_for_rss(programs, 32 << 20)
        playbook = load_playbook(catalogue_dir() / "memory-pressure.yaml")
        step = next(
            s
            for s in playbook.steps
            if isinstance(s, BuiltinStep) and s.function == "top_processes"
        )
        values = {"limit": 100, "since": "1h"}
        rendered = RenderedBuiltin(step.name, step.function, render_builtin(step, values))
        chunks: list[OutputChunk] = []

        async def collect(chunk: OutputChunk) -> None:
            chunks.append(chunk)

        executor = Executor(redactor=Redactor(), builtins=default_builtins())
        result = asyncio.run(executor.run(playbook, [rendered], collect, asyncio.Event(), 60.0))
    finally:
        for process in programs:
            process.kill()
            process.wait()
    text = b"".join(c.data for c in chunks)
    assert b"/mysql -c" in text and b"/app -c" in text  # both processes are listed
    assert b"Hunter2" not in text
    assert b"-u root -p[REDACTED]" in text
    assert b"--db-password [REDACTED]" in text
    assert result.redactions >= 2


def _wait_for_rss(processes: list[subprocess.Popen[bytes]], size: int) -> None:
    deadline = time.monotonic() + 30
    for process in processes:
        while time.monotonic() < deadline:
            status = Path(f"/proc/{process.pid}/status").read_text()
            rss = next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
            )
            if rss * 1024 >= size:
                break
            time.sleep(0.05)
