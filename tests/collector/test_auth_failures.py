"""Unauthenticated failures: rows per source and minute, the rate limit, escaping."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.auth_failures import AuthFailures, safe_text, source_of
from collector.errors import RateLimited
from tests.fakes import FakeClock


def test_a_row_at_the_first_failure_and_one_total_per_minute() -> None:
    rows: list[tuple[str, str, str, dict[str, Any], int]] = []

    async def audit(*row: Any) -> None:
        rows.append(row)

    clock = FakeClock(1_000_000_020_000)
    registry = CollectorRegistry()
    failures = AuthFailures(registry, audit, clock, max_per_minute=5)

    async def scenario() -> None:
        for _ in range(5):
            await failures.record("enrollment", "ipv4:10.0.0.1:5555", "TokenUnknown", "h\x1b[2J")
        with pytest.raises(RateLimited):
            failures.check("enrollment", "ipv4:10.0.0.1:6666")
        failures.check("enrollment", "ipv4:10.0.0.2:1")  # another source is not limited
        clock.now += 60_000
        failures.check("enrollment", "ipv4:10.0.0.1:7777")  # a new minute
        await failures.flush()

    asyncio.run(scenario())
    assert [(r[0], r[1]) for r in rows] == [
        ("peer:ipv4:10.0.0.1", "auth.failed"),
        ("peer:ipv4:10.0.0.1", "auth.failures"),
    ]
    assert rows[0][3]["sample"] == "h\\x1b[2J"
    assert rows[1][3]["count"] == 6  # five failures and one rate-limited attempt
    value = registry.get_sample_value("aftercare_auth_failures_total", {"kind": "enrollment"})
    assert value == 6


def test_text_is_cut_and_escaped() -> None:
    assert safe_text("a\x07b\nc") == "a\\x07b\\nc"
    assert safe_text("x" * 500).endswith("...") and len(safe_text("x" * 500)) == 123
    assert source_of("ipv6:[::1]:443") == "ipv6:[::1]"
