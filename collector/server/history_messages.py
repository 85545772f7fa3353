"""Metric history and archive: request checks and record -> API message conversion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from collector import limits
from collector.archive import ArchiveEntry
from collector.errors import InvalidRequest
from collector.history.model import HistorySeries
from collector.history.policy import auto_step
from proto import api_pb2

# One answer holds at most this many series, and this many buckets in all (about 44
# bytes each: 40,000 make 1.8 MB, under half the client's 4 MiB message limit).
MAX_SERIES_PER_ANSWER = 64
MAX_BUCKETS_PER_ANSWER = 40_000
MAX_LABEL_FILTERS = 16


@dataclass(frozen=True)
class HistoryQuery:
    """A checked ``MetricHistoryRequest``."""

    metric: str
    labels: Mapping[str, str]
    since_ms: int
    until_ms: int
    step_ms: int

    def check_answer(self, series: Sequence[HistorySeries]) -> None:
        """InvalidRequest if the answer would be too big for one message."""
        if len(series) > MAX_SERIES_PER_ANSWER:
            raise InvalidRequest(
                f"{len(series)} series of {self.metric!r} match (at most "
                f"{MAX_SERIES_PER_ANSWER} per answer); narrow with labels (--label k=v)"
            )
        buckets = sum(len(s.points) for s in series)
        if buckets > MAX_BUCKETS_PER_ANSWER:
            raise InvalidRequest(
                f"the answer would hold {buckets} buckets (at most {MAX_BUCKETS_PER_ANSWER}); "
                "ask for a coarser step, a shorter period or fewer series (--label k=v)"
            )


def history_request(request: api_pb2.MetricHistoryRequest) -> HistoryQuery:
    """The request's query; InvalidRequest for a missing metric or bad times."""
    if not request.metric:
        raise InvalidRequest("name a metric (--metric NAME)")
    metric = limits.text("metric", request.metric, limits.NAME)
    labels = limits.mapping("labels", request.labels, MAX_LABEL_FILTERS, limits.NAME)
    since = limits.number("since_unix_ms", request.since_unix_ms, 1, limits.MAX_UNIX_MS)
    until = limits.number("until_unix_ms", request.until_unix_ms, 1, limits.MAX_UNIX_MS)
    if until <= since:
        raise InvalidRequest(f"until_unix_ms {until} must be after since_unix_ms {since}")
    step = request.step_ms or auto_step(since, until)
    return HistoryQuery(metric, labels, since, until, step)


def series_info(series: HistorySeries) -> api_pb2.HistorySeriesInfo:
    """One series as its API message."""
    return api_pb2.HistorySeriesInfo(
        name=series.name,
        labels=dict(series.labels),
        buckets=[
            api_pb2.HistoryBucket(
                start_unix_ms=p.start_ms,
                resolution_ms=p.resolution_ms,
                count=p.count,
                min=p.min,
                avg=p.avg,
                max=p.max,
            )
            for p in series.points
        ],
    )


def archive_entry(entry: ArchiveEntry) -> api_pb2.ArchiveEntry:
    """One archive entry as its API message."""
    return api_pb2.ArchiveEntry(
        at_unix_ms=entry.at_ms, kind=entry.kind, summary=entry.summary, ref=entry.ref
    )
