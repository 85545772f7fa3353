"""The rule engine: per-host state fed by metric batches, read out as firing alerts.

Pure domain logic (no gRPC, no SQL, no wall clock): times are the ones passed in.
Not thread-safe; call it from one thread (the collector's event loop).

Semantics
    * ``observe`` evaluates every condition rule on the batch it is given (the host's
      latest values; a batch older than the host's latest is ignored, as the store
      does). A series absent from the batch is not evaluated and its pending state is
      dropped; so is a series whose ``rate``/``predict`` window is not yet filled
      (fewer than 2 points, or spanning less than half the window) or whose ``per``
      divisor is missing or zero.
    * A condition that holds starts *pending* at that batch's time; it *fires* once
      it has held for ``for`` (batch time minus pending start), and stops the first
      batch it does not hold. ``for`` is measured in sample time, so a silent host
      keeps its last state (``host_unreachable`` says it is silent).
    * Heartbeat rules are checked in ``evaluate(now_ms)``: the host fires when
      ``now_ms - last_seen`` exceeds the grace. Hosts are known from ``observe`` and
      ``seen``; seed the engine at start with ``seen(host, last_seen_ms)``.
    * ``evaluate`` returns the firing alerts, ordered by customer, hostname, agent,
      rule and labels.

Memory and cost
    * Per host: one state per holding (rule, series), and a ``Window`` per (metric,
      window, series) only for metrics some ``rate``/``predict`` rule references
      (bounded by the window and by thinning, see ``collector.rules.window``). Batches
      themselves are not kept.
    * ``observe``: O(samples + matched (rule, series) pairs), window updates O(1)
      amortised; rules are indexed by metric name, so a sample no rule names costs
      one dict lookup. ``evaluate``: O(hosts x heartbeat rules + pending states), plus
      rendering the firing alerts' annotations.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from collector.rules.errors import RuleFileError
from collector.rules.model import OPS, Alert, Condition, HostRef, Rule, RuleSet
from collector.rules.template import TemplateContext
from collector.rules.window import Window
from collector.store.base import StoredSample

__all__ = ["EngineStats", "RuleEngine", "dedup_key"]

LabelsKey = tuple[tuple[str, str], ...]
_WindowKey = tuple[str, float, LabelsKey]  # metric, window seconds, series labels


@dataclass(frozen=True)
class EngineStats:
    """Size of the engine's state (for the benchmark and the collector's metrics)."""

    hosts: int
    states: int  # (rule, series) pairs whose condition holds (pending or firing)
    windows: int  # per-series histories kept for rate/predict
    window_points: int


@dataclass
class _State:
    """A (rule, series) whose condition holds: pending, or firing once held >= for."""

    since_ms: int
    at_ms: int
    value: float
    eta: float
    labels: Mapping[str, str]
    dedup_key: str = ""


@dataclass
class _Host:
    ref: HostRef
    last_seen_ms: int | None = None
    latest_ms: int | None = None
    windows: dict[_WindowKey, Window] = field(default_factory=dict)
    states: dict[tuple[str, LabelsKey], _State] = field(default_factory=dict)


class _Index:
    """Condition rules arranged for one pass over a batch."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.by_metric: dict[str, list[tuple[Rule, Condition]]] = {}
        self.windows: dict[str, set[float]] = {}
        self.divisors: set[str] = set()
        for rule in rules:
            if rule.condition is None:
                continue
            cond = rule.condition
            self.by_metric.setdefault(cond.metric, []).append((rule, cond))
            if cond.window_seconds is not None:
                self.windows.setdefault(cond.metric, set()).add(cond.window_seconds)
            if cond.per is not None:
                self.divisors.add(cond.per)

    def window_keys(self) -> set[tuple[str, float]]:
        """Every (metric, window seconds) that needs history."""
        return {(metric, w) for metric, ws in self.windows.items() for w in ws}


class RuleEngine:
    """Evaluates a ``RuleSet`` against the hosts' metric batches (see module docstring)."""

    def __init__(self, rules: RuleSet, *, retention_seconds: float = 6 * 3600) -> None:
        self.retention_seconds = retention_seconds
        _check_retention(rules, retention_seconds)
        self._rules = rules
        self._by_name = {rule.name: rule for rule in rules}
        self._index = _Index(rules)
        self._heartbeats = [rule for rule in rules if rule.heartbeat is not None]
        self._hosts: dict[str, _Host] = {}

    @property
    def rules(self) -> RuleSet:
        """The rules in force."""
        return self._rules

    def replace_rules(self, rules: RuleSet) -> None:
        """Hot reload: keep the history and the state of unchanged rules (equal in
        everything but their place in the file); changed and new rules start afresh
        with each host's next batch, removed ones stop firing at once. Raises
        RuleFileError (and changes nothing) if a rule's window exceeds the retention."""
        _check_retention(rules, self.retention_seconds)
        stale = {name for name, rule in self._by_name.items() if rules.get(name) != rule}
        self._rules = rules
        self._by_name = {rule.name: rule for rule in rules}
        self._index = _Index(rules)
        self._heartbeats = [rule for rule in rules if rule.heartbeat is not None]
        needed = self._index.window_keys()
        for host in self._hosts.values():
            host.states = {k: s for k, s in host.states.items() if k[0] not in stale}
            host.windows = {k: w for k, w in host.windows.items() if k[:2] in needed}

    def observe(
        self,
        host: HostRef,
        collected_ms: int,
        samples: Sequence[StoredSample],
        *,
        received_ms: int | None = None,
    ) -> None:
        """Take one batch of ``host``: update its windows and conditions, and mark it
        seen at ``received_ms`` (default ``collected_ms``; pass the collector's time
        where the agent's clock may be off)."""
        state = self._host(host)
        self._mark_seen(state, collected_ms if received_ms is None else received_ms)
        if state.latest_ms is not None and collected_ms < state.latest_ms:
            return
        state.latest_ms = collected_ms
        self._evaluate_batch(state, collected_ms, samples)

    def seen(self, host: HostRef, at_ms: int) -> None:
        """Heartbeat only: ``host`` was heard from at ``at_ms`` (never moves back)."""
        self._mark_seen(self._host(host), at_ms)

    def forget(self, agent_id: str) -> None:
        """Drop everything about the agent (revoked): it never alerts again."""
        self._hosts.pop(agent_id, None)

    def evaluate(self, now_ms: int) -> list[Alert]:
        """Every alert firing at ``now_ms``, in a deterministic order."""
        alerts: list[Alert] = []
        for host in self._hosts.values():
            for (name, _), state in host.states.items():
                rule = self._by_name[name]
                if state.at_ms - state.since_ms >= rule.for_seconds * 1000:
                    alerts.append(self._alert(host, rule, state))
            alerts.extend(self._heartbeat_alerts(host, now_ms))
        alerts.sort(key=_order)
        return alerts

    def stats(self) -> EngineStats:
        """How much the engine holds (O(hosts + windows))."""
        hosts = self._hosts.values()
        return EngineStats(
            hosts=len(self._hosts),
            states=sum(len(h.states) for h in hosts),
            windows=sum(len(h.windows) for h in hosts),
            window_points=sum(len(w) for h in hosts for w in h.windows.values()),
        )

    # -- batches ------------------------------------------------------------------

    def _host(self, ref: HostRef) -> _Host:
        state = self._hosts.get(ref.agent_id)
        if state is None:
            state = self._hosts[ref.agent_id] = _Host(ref)
        state.ref = ref
        return state

    @staticmethod
    def _mark_seen(host: _Host, at_ms: int) -> None:
        if host.last_seen_ms is None or at_ms > host.last_seen_ms:
            host.last_seen_ms = at_ms

    def _evaluate_batch(self, host: _Host, at_ms: int, samples: Sequence[StoredSample]) -> None:
        """Feed windows and test every condition on ``samples``; the conditions that
        hold become the host's states (keeping their pending start)."""
        matched, divisors = self._scan(host, at_ms, samples)
        states: dict[tuple[str, LabelsKey], _State] = {}
        for rule, cond, sample in matched:
            measured = _measure(host, cond, sample, divisors)
            if measured is None or not OPS[cond.op](measured[0], cond.threshold):
                continue
            key = (rule.name, _labels_key(sample.labels))
            _, value, eta = measured
            previous = host.states.get(key)
            if previous is None:
                states[key] = _State(at_ms, at_ms, value, eta, dict(sample.labels))
            else:
                states[key] = replace(previous, at_ms=at_ms, value=value, eta=eta)
        host.states = states
        _drop_stale_windows(host, at_ms)

    def _scan(
        self, host: _Host, at_ms: int, samples: Sequence[StoredSample]
    ) -> tuple[list[tuple[Rule, Condition, StoredSample]], dict[str, float]]:
        """One pass over the batch: add to windows; collect the (rule, series) pairs
        whose matchers select the series, and the values of ``per`` divisors."""
        index = self._index
        by_metric, wanted_divisors = index.by_metric, index.divisors
        divisors: dict[str, float] = {}
        matched: list[tuple[Rule, Condition, StoredSample]] = []
        for sample in samples:
            name = sample.name
            if name in wanted_divisors and not sample.labels:
                divisors[name] = sample.value
            rules = by_metric.get(name)
            if rules is None:
                continue
            windows = index.windows.get(name)
            if windows:
                key = _labels_key(sample.labels)
                for seconds in windows:
                    self._window(host, (name, seconds, key)).add(at_ms, sample.value)
            for rule, cond in rules:
                if cond.selects(sample.labels):
                    matched.append((rule, cond, sample))
        return matched, divisors

    def _window(self, host: _Host, key: _WindowKey) -> Window:
        window = host.windows.get(key)
        if window is None:
            window = host.windows[key] = Window(key[1])
        return window

    # -- alerts -------------------------------------------------------------------

    def _alert(self, host: _Host, rule: Rule, state: _State) -> Alert:
        if not state.dedup_key:
            state.dedup_key = dedup_key(host.ref.agent_id, rule.name, state.labels)
        return _make_alert(
            host.ref, rule, state.labels, state.value, state.eta, state.since_ms, state.dedup_key
        )

    def _heartbeat_alerts(self, host: _Host, now_ms: int) -> Iterable[Alert]:
        if host.last_seen_ms is None:
            return
        silent_ms = now_ms - host.last_seen_ms
        for rule in self._heartbeats:
            assert rule.heartbeat is not None
            grace_ms = rule.heartbeat.grace_seconds * 1000
            if silent_ms > grace_ms:
                since = host.last_seen_ms + math.ceil(grace_ms)
                key = dedup_key(host.ref.agent_id, rule.name, {})
                yield _make_alert(host.ref, rule, {}, silent_ms / 1000, math.inf, since, key)


def _measure(
    host: _Host,
    cond: Condition,
    sample: StoredSample,
    divisors: Mapping[str, float],
) -> tuple[float, float, float] | None:
    """(value to compare, value to report, eta seconds) or None if not evaluable."""
    divisor = 1.0
    if cond.per is not None:
        divisor = divisors.get(cond.per, 0.0)
        if divisor == 0:
            return None
    if cond.rate_seconds is not None:
        window = host.windows.get((cond.metric, cond.rate_seconds, _labels_key(sample.labels)))
        rate = window.rate() if window is not None else None
        if rate is None:
            return None
        value = rate / divisor
        value = abs(value) if cond.absolute else value
        return value, value, math.inf
    if cond.predict is not None:
        return _predict(host, cond, sample, divisor)
    value = sample.value / divisor
    value = abs(value) if cond.absolute else value
    return value, value, math.inf


def _predict(
    host: _Host, cond: Condition, sample: StoredSample, divisor: float
) -> tuple[float, float, float] | None:
    """Predicted value ``within`` ahead (compared), the latest value (reported) and
    the seconds until the fitted line meets the threshold."""
    assert cond.predict is not None
    key = (cond.metric, cond.predict.window_seconds, _labels_key(sample.labels))
    window = host.windows.get(key)
    fitted = window.fit() if window is not None else None
    if fitted is None:
        return None
    now, slope = fitted[0] / divisor, fitted[1] / divisor
    predicted = now + slope * cond.predict.within_seconds
    return predicted, sample.value / divisor, _eta(now, slope, cond)


def _eta(now: float, slope: float, cond: Condition) -> float:
    """Seconds until ``now + slope * t`` satisfies the condition (inf: never)."""
    if OPS[cond.op](now, cond.threshold):
        return 0.0
    if slope == 0:
        return math.inf
    eta = (cond.threshold - now) / slope
    return eta if eta >= 0 else math.inf


def _drop_stale_windows(host: _Host, at_ms: int) -> None:
    """Forget series not seen for a whole window (an unmounted filesystem, say)."""
    stale = [
        key for key, window in host.windows.items() if (window.last_ms or 0) < at_ms - key[1] * 1000
    ]
    for key in stale:
        del host.windows[key]


def _make_alert(
    host: HostRef,
    rule: Rule,
    series: Mapping[str, str],
    value: float,
    eta: float,
    since_ms: int,
    key: str,
) -> Alert:
    labels = {**series, **rule.labels}
    context = TemplateContext(
        host=host.hostname,
        customer=host.customer,
        agent_id=host.agent_id,
        rule=rule.name,
        level=rule.level,
        value=value,
        threshold=rule.threshold,
        labels=labels,
        eta=eta,
    )
    return Alert(
        rule=rule.name,
        host=host,
        labels=labels,
        level=rule.level,
        value=value,
        summary=rule.summary.render(context),
        description=rule.description.render(context),
        playbook=rule.playbook,
        active_since_ms=since_ms,
        dedup_key=key,
        heartbeat=rule.heartbeat is not None,
    )


def dedup_key(agent_id: str, rule: str, series: Mapping[str, str]) -> str:
    """sha256 hex of (agent, rule, sorted series labels): independent of dict order
    and of the rule's own labels."""
    canonical = json.dumps([agent_id, rule, sorted(series.items())], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _labels_key(labels: Mapping[str, str]) -> LabelsKey:
    return tuple(sorted(labels.items())) if labels else ()


def _order(alert: Alert) -> tuple[str, str, str, str, LabelsKey]:
    host = alert.host
    return (host.customer, host.hostname, host.agent_id, alert.rule, _labels_key(alert.labels))


def _check_retention(rules: RuleSet, retention_seconds: float) -> None:
    problems = [
        f"{rule.source or rule.name}: window of {window:g}s exceeds the collector's sample "
        f"retention of {retention_seconds:g}s; shorten the window or raise the retention"
        for rule in rules
        if rule.condition is not None
        and (window := rule.condition.window_seconds) is not None
        and window > retention_seconds
    ]
    if problems:
        raise RuleFileError(problems)
