"""Prometheus metrics of the collector itself (ingest, enrolment, tickets, outbox…),
registered on an injected registry.

The per-host families (connectivity and ``aftercare_host_*``) are rendered from the
in-memory fleet by ``collector.host_metrics``, not through this registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.tickets.model import LEVELS
from collector.tickets.sla import CLOCK_NAMES as SLA_CLOCKS


class CollectorMetrics:
    """The collector's counters and gauges; pass ``registry`` (tests use a fresh one)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        history_refusals: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self.batches = Counter(
            "aftercare_ingest_batches",
            "Metric batches received from agents, by result (stored or duplicate).",
            ["result"],
            registry=registry,
        )
        self.samples = Counter(
            "aftercare_ingest_samples", "Samples stored from agent batches.", registry=registry
        )
        self.gaps = Counter(
            "aftercare_ingest_gaps",
            "Gap reports stored: spans of batches an agent's spool had to drop.",
            registry=registry,
        )
        self.lost_batches = Counter(
            "aftercare_ingest_lost_batches",
            "Batches agents reported lost in gap reports.",
            registry=registry,
        )
        self.rejected = Counter(
            "aftercare_ingest_rejected_streams",
            "Agent streams refused or aborted, by reason.",
            ["reason"],
            registry=registry,
        )
        self.ack_latency = Histogram(
            "aftercare_ingest_ack_latency_seconds",
            "Time from receiving a batch to acknowledging it (durable in the store).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.enrollments = Counter(
            "aftercare_enrollments",
            "Enrolment attempts by result (ok, refused).",
            ["result"],
            registry=registry,
        )
        self.streams = Gauge(
            "aftercare_agent_streams",
            "Agent control streams open on this collector.",
            registry=registry,
        )
        self.tickets_opened = Counter(
            "aftercare_tickets_opened",
            "Tickets opened, by fault level and source.",
            ["level", "source"],
            registry=registry,
        )
        self.tickets = Gauge(
            "aftercare_tickets",
            "Active (not closed) tickets, by fault level and state.",
            ["level", "state"],
            registry=registry,
        )
        self.sla_breaches = Counter(
            "aftercare_sla_breaches",
            "SLA clocks that ran past their target, by clock and fault level.",
            ["clock", "level"],
            registry=registry,
        )
        self.notifications = Counter(
            "aftercare_notifications",
            "Escalation notifications, by channel and result (delivered, failed).",
            ["channel", "result"],
            registry=registry,
        )
        self.outbox = Gauge(
            "aftercare_outbox_notices",
            "Notifications in the outbox by state: pending, sent, cancelled, and failing "
            "(pending after a failed attempt); set by the leader's sender each cycle.",
            ["state"],
            registry=registry,
        )
        self.store_calls = Histogram(
            "aftercare_store_call_seconds",
            "Time the store writer spent in each call, by store method (every call of "
            "the collector runs on this one writer, so a slow call delays the acks "
            "queued behind it).",
            ["call"],
            buckets=(0.001, 0.005, 0.025, 0.1, 0.25, 1, 5),
            registry=registry,
        )
        self.gc_pauses = Histogram(
            "aftercare_gc_pause_seconds",
            "Python garbage collections of the collector process by generation (0 and 1 "
            "young, 2 full) and how long each stopped every thread, the event loop and "
            "the store writer included: a pause delays every ack in flight.",
            ["generation"],
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.rule_evaluation = Histogram(
            "aftercare_rule_evaluation_seconds",
            "Time to evaluate every alert rule over every host once.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=registry,
        )
        self.sessions = Gauge(
            "aftercare_remote_sessions",
            "Remote sessions not yet over, by state (pending = waiting for approval).",
            ["state"],
            registry=registry,
        )
        self.gateway_connections = Gauge(
            "aftercare_gateway_connections",
            "Engineer SSH connections open on the gateway.",
            registry=registry,
        )
        self.gateway_logins = Counter(
            "aftercare_gateway_logins",
            "Login attempts on the SSH gateway, by result (accepted or refused).",
            ["result"],
            registry=registry,
        )
        self.gateway_bytes = Counter(
            "aftercare_gateway_relayed_bytes",
            "Session bytes relayed by the gateway, by direction (to_host or to_engineer).",
            ["direction"],
            registry=registry,
        )
        self.inspections = Gauge(
            "aftercare_inspections",
            "Inspections by customer and stored state (docs/inspections.md).",
            ["customer", "state"],
            registry=registry,
        )
        self.inspections_overdue = Gauge(
            "aftercare_inspections_overdue",
            "Inspections overdue per customer: the date passed without consent, "
            "or the report is past its due date.",
            ["customer"],
            registry=registry,
        )
        self.inspection_reports_late = Counter(
            "aftercare_inspection_reports_late",
            "Inspection reports that passed their due date unpublished (escalated once).",
            ["customer"],
            registry=registry,
        )
        for state in ("pending", "approved", "active"):
            self.sessions.labels(state)
        for result in ("accepted", "refused"):
            self.gateway_logins.labels(result)
        for direction in ("to_host", "to_engineer"):
            self.gateway_bytes.labels(direction)
        for clock in SLA_CLOCKS:  # start at 0 so increase() sees the first breach
            for level in LEVELS:
                self.sla_breaches.labels(clock, level)
        for channel in ("webhook", "email"):
            for result in ("delivered", "failed"):
                self.notifications.labels(channel, result)
        if history_refusals is not None:
            registry.register(_HistoryRefusals(history_refusals))

    def ticket_opened(self, level: str, source: str) -> None:
        self.tickets_opened.labels(level, source).inc()

    def sla_breached(self, clock: str, level: str) -> None:
        self.sla_breaches.labels(clock, level).inc()

    def notification(self, channel: str, ok: bool) -> None:
        self.notifications.labels(channel, "delivered" if ok else "failed").inc()

    def set_outbox(self, counts: Mapping[str, int]) -> None:
        """The outbox's notices per state (pending, sent, failing: pending with a failure)."""
        for state, count in counts.items():
            self.outbox.labels(state).set(count)

    def set_active_tickets(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Replace the active-ticket gauge with ``{(level, state): count}``."""
        self.tickets.clear()
        for (level, state), count in counts.items():
            self.tickets.labels(level, state).set(count)

    def set_inspections(
        self, by_state: Mapping[tuple[str, str], int], overdue: Mapping[str, int]
    ) -> None:
        """Replace the inspection gauges: ``{(customer, state): n}`` and ``{customer: n}``."""
        self.inspections.clear()
        for (customer, state), count in by_state.items():
            self.inspections.labels(customer, state).set(count)
        self.inspections_overdue.clear()
        for customer, count in overdue.items():
            self.inspections_overdue.labels(customer).set(count)
            self.inspection_reports_late.labels(customer)  # from 0, for increase()

    def inspection_report_late(self, customer: str) -> None:
        self.inspection_reports_late.labels(customer).inc()


class _HistoryRefusals(Collector):
    """Samples left out of the metric history because their host is at its series
    bound (docs/metric-history.md), per agent, since the collector started."""

    def __init__(self, read: Callable[[], Mapping[str, int]]) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "aftercare_history_refused_samples",
            "Samples left out of the metric history: their host is at its series bound.",
            labels=("agent_id",),
        )
        for agent_id, count in sorted(self._read().items()):
            family.add_metric([agent_id], count)
        yield family
