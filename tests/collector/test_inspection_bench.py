"""The inspection report benchmark still runs and reports what it promises (a tiny run)."""

from __future__ import annotations

import json

import pytest

from tests.bench import inspection_report


def test_the_bench_prints_phases_memory_and_a_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--hosts", "4", "--days", "90", "--formats", "html:en,pdf:zh-CN", "--json"]
    assert inspection_report.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["phases_s"]) == {
        "generate (not counted)",
        "analyse",
        "render html:en",
        "render pdf:zh-CN",
    }
    assert result["verdict"] == "PASS" and result["total_s"] <= result["target_s"] == 60
    assert result["sizes_bytes"]["pdf:zh-CN"] > 0
    assert result["peak_rss_mib"] > 0
    assert result["history_points_per_host"] == 4 * 90 * 24  # hourly, as the collector reads
