"""The metrics port's GET pages: ``/metrics`` and ``/metrics/hosts`` (docs/metrics.md).

``/metrics``: the collector's own registry, every host's connectivity and — unless
``serve --host-samples separate`` — every host's ``aftercare_host_*`` samples.
``/metrics/hosts``: host samples only, narrowed by ``?shard=K&shards=N``, ``customer=``
and ``name=`` (``collector.host_metrics.parse_selection``); a bad query is a 400 saying
what is allowed. Both are the text exposition format 0.0.4.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from collector.host_metrics import FleetExposition, HostSelection, SelectionError, parse_selection
from collector.server.http import GetHandler, GetReply

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


def metrics_text(
    registry: CollectorRegistry, exposition: FleetExposition, host_samples: bool
) -> bytes:
    """The ``/metrics`` page."""
    parts = [generate_latest(registry), exposition.connectivity().encode()]
    if host_samples:
        parts.append(exposition.host_samples(HostSelection()).encode())
    return b"".join(parts)


def metrics_pages(
    registry: CollectorRegistry, exposition: FleetExposition, host_samples_on_metrics: bool
) -> dict[str, GetHandler]:
    """The GET handlers by path, for ``HttpServer``."""

    def metrics(query: str) -> GetReply:
        del query  # /metrics takes no parameters
        return 200, metrics_text(registry, exposition, host_samples_on_metrics), TEXT_FORMAT

    def hosts(query: str) -> GetReply:
        try:
            selection = parse_selection(query)
        except SelectionError as exc:
            return 400, f"{exc}\n".encode(), "text/plain; charset=utf-8"
        return 200, exposition.host_samples(selection).encode(), TEXT_FORMAT

    return {"/metrics": metrics, "/metrics/hosts": hosts}
