"""The fuzz runner in its short CI mode, and proof that it catches crashes and hangs.

Long runs are by hand: ``python -m tests.fuzz.run`` (100,000 inputs per target,
coverage-guided with atheris when installed); see tests/fuzz/run.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from tests.fuzz import run as fuzz
from tests.fuzz.targets import TARGETS, Target
from tests.support import run

RUNS = 1500


def test_every_target_survives_a_short_random_run(tmp_path: Path) -> None:
    result = run(
        "tests.fuzz.run", "--engine", "random", "--runs", str(RUNS), "--json",
        "--artifacts", str(tmp_path), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    rows = json.loads(result.stdout)
    assert {r["target"] for r in rows} == set(TARGETS)
    for row in rows:
        assert (row["inputs"], row["crashes"], row["hangs"]) == (RUNS, 0, 0), row


def _args(tmp_path: Path, timeout: float = 5.0) -> argparse.Namespace:
    return argparse.Namespace(
        one="selftest", runs=200, seconds=0, timeout=timeout, artifacts=tmp_path
    )


def test_an_unexpected_exception_is_reported_as_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def parse(data: bytes) -> None:
        if len(data) > 3:
            raise KeyError("a parser bug")
        raise ValueError("a documented refusal")

    target = Target(parse, (ValueError,), (b"abc",))
    assert fuzz._random(target, _args(tmp_path)) == 1
    assert "=== CRASH" in capsys.readouterr().out
    assert list(tmp_path.glob("selftest-crash-*"))


def test_a_slow_input_is_reported_as_a_hang(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def parse(data: bytes) -> None:
        if len(data) > 3:
            time.sleep(5)

    target = Target(parse, (), (b"abc",))
    assert fuzz._random(target, _args(tmp_path, timeout=0.2)) == 1
    assert "=== HANG" in capsys.readouterr().out
