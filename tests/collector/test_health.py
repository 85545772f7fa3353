"""The health summary picks total CPU, memory and the fullest filesystem."""

from __future__ import annotations

from collector.health import summarize
from collector.store import StoredSample


def test_summary_of_samples() -> None:
    summary = summarize(
        [
            StoredSample("cpu_usage_ratio", {"cpu": "0"}, 0.9),
            StoredSample("cpu_usage_ratio", {"cpu": "total"}, 0.4),
            StoredSample("memory_used_ratio", {}, 0.5),
            StoredSample("filesystem_used_ratio", {"mountpoint": "/"}, 0.3),
            StoredSample("filesystem_used_ratio", {"mountpoint": "/var"}, 0.95),
        ]
    )
    assert summary.has_data
    assert summary.cpu_usage_ratio == 0.4
    assert summary.memory_used_ratio == 0.5
    assert (summary.worst_filesystem, summary.worst_filesystem_used_ratio) == ("/var", 0.95)


def test_no_samples_means_no_data() -> None:
    assert not summarize([]).has_data
