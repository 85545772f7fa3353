"""Unauthenticated failures: counted, rate-limited per source, aggregated in the audit log.

Bad API tokens, refused enrolments (bad join token, bad CSR), bad Alertmanager
bearer tokens and failed portal sign-ins come from people the collector does not know,
so one attacker must not be able to write an audit row per attempt or keep the
collector busy. Contract:

- Every failure increments ``aftercare_auth_failures_total{kind}``.
- The audit log gets at most two rows per (source, kind, minute): ``auth.failed`` for
  the first failure (so an attack is visible at once) and, when the minute is over,
  ``auth.failures`` with the minute's total count if there was more than one. Rows are
  written on the next failure after the minute, on ``flush()`` (called periodically
  and at shutdown), never one per attempt.
- A source is the peer address without its port (``ipv4:203.0.113.7``). After
  ``MAX_FAILURES_PER_MINUTE`` failures in a minute, ``check`` refuses the source with
  RateLimited (``RESOURCE_EXHAUSTED``) for the rest of that minute, before any work.
- Attacker-chosen text (hostnames, messages) is truncated to ``MAX_SAMPLE_CHARS`` and
  control characters are escaped before it reaches the audit log.
- At most ``MAX_SOURCES`` sources are tracked per minute; failures beyond are pooled
  under the source ``other``, so memory stays bounded however many addresses attack.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from collector.errors import RateLimited

log = logging.getLogger(__name__)

MAX_FAILURES_PER_MINUTE = 30
MAX_SAMPLE_CHARS = 120
MAX_SOURCES = 10_000
KINDS = ("api_token", "enrollment", "alertmanager", "portal")
_MINUTE_MS = 60_000
_PORT = re.compile(r":\d+$")

AuditWrite = Callable[[str, str, str, dict[str, Any], int], Awaitable[Any]]


def safe_text(text: str, limit: int = MAX_SAMPLE_CHARS) -> str:
    """``text`` cut to ``limit`` characters with control characters escaped (``\\x1b``)."""
    cut = text[:limit]
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in cut)
    return out + ("..." if len(text) > limit else "")


def source_of(peer: str) -> str:
    """The source an attempt is counted under: the gRPC peer without its port."""
    return safe_text(_PORT.sub("", peer or "unknown"), 64)


@dataclass
class _Bucket:
    count: int = 0
    sample: str = ""
    first_written: bool = False
    reasons: dict[str, int] = field(default_factory=dict)


class AuthFailures:
    """Thread-safe recorder; ``record`` and ``flush`` write through ``audit``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        audit: AuditWrite,
        clock_ms: Callable[[], int],
        max_per_minute: int = MAX_FAILURES_PER_MINUTE,
    ) -> None:
        self.failures = Counter(
            "aftercare_auth_failures",
            "Unauthenticated requests refused, by kind "
            "(api_token, enrollment, alertmanager, portal).",
            ["kind"],
            registry=registry,
        )
        for kind in KINDS:
            self.failures.labels(kind)
        self._audit = audit
        self._clock_ms = clock_ms
        self._max = max_per_minute
        self._lock = threading.Lock()
        self._minute = 0
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._closed: list[tuple[int, tuple[str, str], _Bucket]] = []

    def check(self, kind: str, peer: str) -> None:
        """Raise RateLimited if ``peer``'s source failed too often this minute."""
        source = source_of(peer)
        with self._lock:
            self._roll(self._clock_ms())
            bucket = self._buckets.get((source, kind))
            limited = bucket is not None and bucket.count >= self._max
        if limited:
            self.failures.labels(kind).inc()
            with self._lock:
                self._count(source, kind, "rate_limited", "")
            raise RateLimited(
                f"too many failed attempts from {source} (more than {self._max} a minute); "
                "wait a minute and check the token"
            )

    async def record(self, kind: str, peer: str, reason: str, sample: str = "") -> None:
        """Count one failure; write the audit rows that are due."""
        self.failures.labels(kind).inc()
        source = source_of(peer)
        now = self._clock_ms()
        with self._lock:
            self._roll(now)
            bucket = self._count(source, kind, reason, safe_text(sample))
            first = not bucket.first_written
            bucket.first_written = True
        if first:
            details = {
                "kind": kind,
                "reason": safe_text(reason),
                "sample": safe_text(sample),
                "limit_per_minute": self._max,
            }
            await self._write(f"peer:{source}", "auth.failed", kind, details, now)
        await self._write_closed()

    async def flush(self, final: bool = False) -> None:
        """Write the totals of minutes that are over (all minutes when ``final``)."""
        with self._lock:
            self._roll(self._clock_ms(), force=final)
        await self._write_closed()

    def _count(self, source: str, kind: str, reason: str, sample: str) -> _Bucket:
        key = (source, kind)
        if key not in self._buckets and len(self._buckets) >= MAX_SOURCES:
            key = ("other", kind)
        bucket = self._buckets.setdefault(key, _Bucket(sample=sample))
        bucket.count += 1
        short = safe_text(reason, 60)
        if short in bucket.reasons or len(bucket.reasons) < 8:
            bucket.reasons[short] = bucket.reasons.get(short, 0) + 1
        return bucket

    def _roll(self, now_ms: int, force: bool = False) -> None:
        minute = now_ms // _MINUTE_MS * _MINUTE_MS
        if minute != self._minute or force:
            self._closed.extend((self._minute, k, b) for k, b in self._buckets.items())
            self._buckets = {}
            self._minute = minute

    async def _write_closed(self) -> None:
        with self._lock:
            closed, self._closed = self._closed, []
        for minute, (source, kind), bucket in closed:
            if bucket.count <= 1:
                continue
            details = {
                "kind": kind,
                "count": bucket.count,
                "minute_start_ms": minute,
                "reasons": bucket.reasons,
                "sample": bucket.sample,
            }
            await self._write(f"peer:{source}", "auth.failures", kind, details, self._clock_ms())

    async def _write(
        self, actor: str, action: str, target: str, details: dict[str, Any], at_ms: int
    ) -> None:
        try:
            await self._audit(actor, action, target, details, at_ms)
        except Exception:  # auditing a failure must never fail the request's answer
            log.exception("could not audit %s from %s", action, actor)
