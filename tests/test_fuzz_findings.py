"""Inputs the fuzzers found crashes with, replayed through their targets for good.

``tests/fuzz/findings/TARGET/NAME`` holds each finding (the crashing input, as the
fuzzer saved it or reduced by hand). Each must now be refused with the target's
documented error, or accepted: never crash.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

FINDINGS = Path(__file__).parent / "fuzz" / "findings"
CASES = sorted(p for p in FINDINGS.glob("*/*") if p.is_file())


@pytest.mark.parametrize("finding", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_finding_no_longer_crashes(finding: Path) -> None:
    target = TARGETS[finding.parent.name]()
    with contextlib.suppress(*target.expected):
        target.run(finding.read_bytes())


def test_there_are_findings_for_known_targets() -> None:
    assert CASES and {p.parent.name for p in CASES} <= set(TARGETS)
