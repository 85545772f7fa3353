"""``aftercare host --metric`` and ``aftercare archive`` against a fake API: the requests
sent, the table and JSON output, usage errors."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from collector.client import cli
from proto import api_pb2

T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z
FIVE_MIN = 300_000


class FakeApi:
    def __init__(self, **replies: Any) -> None:
        self.replies = replies
        self.calls: list[tuple[str, Any]] = []

    def call(self, method: str, request: Any) -> Any:
        self.calls.append((method, request))
        return self.replies[method]


def run(api: FakeApi, *argv: str) -> int:
    args = cli.parse_args(cli.build_parser(), list(argv))
    result: int = args.handler(api, args)
    return result


def history_reply() -> api_pb2.MetricHistoryResponse:
    return api_pb2.MetricHistoryResponse(
        agent_id="ag-1",
        hostname="db1",
        since_unix_ms=T0,
        until_unix_ms=T0 + 2 * FIVE_MIN,
        step_ms=FIVE_MIN,
        series=[
            api_pb2.HistorySeriesInfo(
                name="filesystem_used_ratio",
                labels={"mountpoint": "/"},
                buckets=[
                    api_pb2.HistoryBucket(
                        start_unix_ms=T0, resolution_ms=FIVE_MIN, count=30,
                        min=0.5, avg=0.625, max=0.75,
                    )
                ],
            )
        ],
    )  # fmt: skip


def test_history_request_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(GetMetricHistory=history_reply())
    before = int(time.time() * 1000)
    code = run(
        api, "host", "db1", "--metric", "filesystem_used_ratio", "--since", "90d",
        "--label", "mountpoint=/", "--step", "1h",
    )  # fmt: skip
    assert code == 0
    [(method, request)] = api.calls
    assert method == "GetMetricHistory"
    assert (request.host, request.metric, dict(request.labels)) == (
        "db1",
        "filesystem_used_ratio",
        {"mountpoint": "/"},
    )
    assert request.step_ms == 3_600_000
    assert request.until_unix_ms - request.since_unix_ms == 90 * 86_400_000
    assert request.until_unix_ms >= before
    out = capsys.readouterr().out
    assert "filesystem_used_ratio{mountpoint=/}" in out
    row = [line for line in out.splitlines() if "2025-11-24T16:00:00" in line and "30" in line]
    assert row and row[0].split()[1:] == ["30", "0.5", "0.625", "0.75"]


def test_history_json(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(GetMetricHistory=history_reply())
    assert run(api, "host", "db1", "--metric", "filesystem_used_ratio", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["hostname"] == "db1" and data["step_ms"] == FIVE_MIN
    [bucket] = data["series"][0]["buckets"]
    assert bucket == {
        "start": "2025-11-24T16:00:00+00:00",
        "start_unix_ms": T0,
        "resolution_ms": FIVE_MIN,
        "count": 30,
        "min": 0.5,
        "avg": 0.625,
        "max": 0.75,
    }
    # without --since: one day back, the server picks the step
    request = api.calls[0][1]
    assert request.until_unix_ms - request.since_unix_ms == 86_400_000
    assert request.step_ms == 0


def test_history_options_need_a_metric(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(FakeApi(), "host", "db1", "--since", "90d")
    assert exit_info.value.code == 2
    assert "need --metric" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["mountpoint", "=x"])
def test_malformed_label_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(FakeApi(), "host", "db1", "--metric", "m", "--label", bad)
    assert exit_info.value.code == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_plain_host_still_shows_latest_values(capsys: pytest.CaptureFixture[str]) -> None:
    detail = api_pb2.HostDetail(
        agent=api_pb2.AgentInfo(agent_id="ag-1", customer="acme", hostname="db1"),
        samples=[{"name": "memory_total_bytes", "value": 8.0}],
    )
    api = FakeApi(GetHost=detail)
    assert run(api, "host", "db1") == 0
    assert [m for m, _ in api.calls] == ["GetHost"]
    assert "memory_total_bytes 8" in capsys.readouterr().out


def archive_reply(token: str = "") -> api_pb2.ArchiveResponse:
    return api_pb2.ArchiveResponse(
        agent_id="ag-1",
        hostname="db1",
        customer="acme",
        entries=[
            api_pb2.ArchiveEntry(
                at_unix_ms=T0, kind="ticket", summary="ticket opened", ref="ticket 3"
            ),
            api_pb2.ArchiveEntry(at_unix_ms=T0 - 1000, kind="enrolled", summary="enrolled as db1"),
        ],
        next_page_token=token,
    )


def test_archive_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(GetArchive=archive_reply())
    assert run(api, "archive", "db1", "--since", "30d") == 0
    request = api.calls[0][1]
    assert request.host == "db1"
    assert abs(int(time.time() * 1000) - 30 * 86_400_000 - request.since_unix_ms) < 60_000
    out = capsys.readouterr().out
    assert "archive of db1 (ag-1), customer acme" in out
    assert "ticket opened [ticket 3]" in out
    assert out.index("ticket opened") < out.index("enrolled as db1")

    assert run(FakeApi(GetArchive=archive_reply()), "archive", "db1", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["entries"][0] == {
        "at": "2025-11-24T16:00:00+00:00",
        "kind": "ticket",
        "summary": "ticket opened",
        "ref": "ticket 3",
    }


def test_archive_limit_stops_paging(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(GetArchive=archive_reply(token="2"))
    assert run(api, "archive", "db1", "--limit", "1", "--json") == 0
    assert len(json.loads(capsys.readouterr().out)["entries"]) == 1
    assert len(api.calls) == 1
