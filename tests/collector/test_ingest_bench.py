"""The ingest benchmark still runs, on both stores, and gives a verdict (a tiny --quick run)."""

from __future__ import annotations

import json

import pytest

from tests.bench import ingest
from tests.pg_cluster import NO_POSTGRESQL, find_bin_dir


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_the_quick_bench_verifies_exactly_once_and_prints_its_figures(
    capsys: pytest.CaptureFixture[str], store: str
) -> None:
    if store == "postgresql" and find_bin_dir() is None:
        pytest.skip(NO_POSTGRESQL)
    args = ["--quick", "--agents", "8", "--batches", "6", "--store", store, "--json"]
    assert ingest.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verified"] and not result["problems"]
    assert result["config"]["store"] == ingest.STORES[store]
    figures = result["ingest"]
    assert figures["batches"] == 8 * 6 and figures["samples"] == 8 * 6 * 150
    assert figures["batches_per_second"] > 0 and figures["samples_per_second"] > 0
    assert figures["ack_latency_ms"]["p99"] >= figures["ack_latency_ms"]["p50"] > 0
    assert figures["collector_cpu_ms_per_batch"] > 0
    assert result["collector"]["peak_rss_mib"] > 0
    assert isinstance(result["collector"]["rss_kib_per_agent_connected"], float)
    assert isinstance(result["collector"]["rss_kib_per_agent_after_ingest"], float)
    assert result["duplicates"]["acked_duplicate"] == 8 * 5


def test_per_agent_rss_is_the_growth_over_the_rss_before_connecting_divided_by_agents() -> None:
    before, after = {"VmRSS": 100_000}, {"VmRSS": 340_000}
    assert ingest.per_agent_kib(after, before, 1000) == 240.0
    assert ingest.per_agent_kib(after, before, 0) == 240_000.0
