"""GetMetricHistory request checks and answer bounds (bad input: a clear InvalidRequest)."""

from __future__ import annotations

import pytest

from collector.errors import InvalidRequest
from collector.history.model import HistoryPoint, HistorySeries
from collector.history.policy import COARSE, DAY_MS, FINE, auto_step
from collector.server.history_messages import (
    MAX_BUCKETS_PER_ANSWER,
    MAX_SERIES_PER_ANSWER,
    history_request,
)
from proto import api_pb2

T0 = 1_700_000_000_000


def request(**fields: object) -> api_pb2.MetricHistoryRequest:
    base: dict[str, object] = {
        "host": "web1",
        "metric": "cpu",
        "since_unix_ms": T0,
        "until_unix_ms": T0 + DAY_MS,
    }
    return api_pb2.MetricHistoryRequest(**{**base, **fields})  # type: ignore[arg-type]


def test_default_step_keeps_at_most_1000_buckets() -> None:
    assert history_request(request()).step_ms == FINE  # 288 buckets
    assert history_request(request(until_unix_ms=T0 + 90 * DAY_MS)).step_ms == 6 * COARSE
    assert auto_step(T0, T0 + 3000 * DAY_MS) == DAY_MS
    assert history_request(request(step_ms=COARSE)).step_ms == COARSE


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"metric": ""}, "name a metric"),
        ({"since_unix_ms": 0}, "since_unix_ms"),
        ({"until_unix_ms": T0}, "must be after"),
        ({"until_unix_ms": -1}, "until_unix_ms"),
        ({"metric": "x" * 300}, "metric"),
        ({"labels": {f"k{i}": "v" for i in range(17)}}, "labels"),
    ],
)
def test_bad_requests_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        history_request(request(**fields))


def series(count: int, points: int) -> list[HistorySeries]:
    point = HistoryPoint(T0, FINE, 1, 1.0, 1.0, 1.0)
    return [HistorySeries("cpu", {"core": str(i)}, [point] * points) for i in range(count)]


def test_answers_too_big_for_one_message_are_refused() -> None:
    query = history_request(request())
    query.check_answer(series(MAX_SERIES_PER_ANSWER, 10))
    with pytest.raises(InvalidRequest, match="--label"):
        query.check_answer(series(MAX_SERIES_PER_ANSWER + 1, 1))
    query.check_answer(series(4, MAX_BUCKETS_PER_ANSWER // 4))
    with pytest.raises(InvalidRequest, match="coarser step"):
        query.check_answer(series(4, MAX_BUCKETS_PER_ANSWER // 4 + 1))


def test_the_largest_answer_fits_a_message() -> None:
    info = api_pb2.MetricHistoryResponse(
        series=[
            api_pb2.HistorySeriesInfo(
                name="filesystem_used_ratio",
                labels={"mountpoint": "/var/lib/something"},
                buckets=[
                    api_pb2.HistoryBucket(
                        start_unix_ms=T0 + i * FINE, resolution_ms=FINE, count=30,
                        min=0.1 + i, avg=0.2 + i, max=0.3 + i,
                    )
                    for i in range(MAX_BUCKETS_PER_ANSWER)
                ],
            )
        ]
    )  # fmt: skip
    assert info.ByteSize() < 2 * 1024 * 1024
