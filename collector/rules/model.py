"""Rule records (frozen dataclasses) and what the engine reports: hosts and alerts.

A ``Rule`` has exactly one of ``condition`` (a comparison on one agent metric: its
latest value, its rate over a window, or its linear prediction) or ``heartbeat`` (the
host has not been heard from for longer than a grace period). ``source`` ("FILE:LINE")
and ``group`` are excluded from equality so that moving a rule in its file is not a
change (hot reload keeps its pending state).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from collector.rules.template import Template

__all__ = [
    "OPS",
    "Alert",
    "Condition",
    "Heartbeat",
    "HostRef",
    "MatchKind",
    "Matcher",
    "Op",
    "Predict",
    "Rule",
    "RuleSet",
]

Op = Literal[">", ">=", "<", "<=", "==", "!="]
OPS: Mapping[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}

MatchKind = Literal["=", "!=", "=~", "!~"]


@dataclass(frozen=True)
class Matcher:
    """One label matcher; a label the series lacks counts as the empty string.

    Written in rule files as ``{label: "x"}`` (equal), ``"!x"`` (not equal),
    ``"~re"`` (regex, whole value), ``"!~re"`` (regex does not match) and ``"=x"``
    (equal to text that itself starts with ``!``, ``~`` or ``=``).
    """

    label: str
    kind: MatchKind
    value: str
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, label: str, text: str) -> Matcher:
        """The matcher written as ``text``; ValueError for a bad regular expression."""
        prefixes: tuple[tuple[str, MatchKind], ...] = (
            ("!~", "!~"),
            ("~", "=~"),
            ("!", "!="),
            ("=", "="),
        )
        for prefix, kind in prefixes:
            if text.startswith(prefix):
                return cls._make(label, kind, text[len(prefix) :])
        return cls(label, "=", text)

    @classmethod
    def _make(cls, label: str, kind: MatchKind, value: str) -> Matcher:
        if kind not in ("=~", "!~"):
            return cls(label, kind, value)
        try:
            return cls(label, kind, value, re.compile(value))
        except (re.error, OverflowError, RecursionError) as exc:  # a{99999999999}: Overflow
            raise ValueError(f"bad regular expression {value!r}: {exc}") from exc

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a series with ``labels`` is selected."""
        actual = labels.get(self.label, "")
        if self.kind == "=":
            return actual == self.value
        if self.kind == "!=":
            return actual != self.value
        assert self.pattern is not None
        return (self.pattern.fullmatch(actual) is not None) == (self.kind == "=~")


@dataclass(frozen=True)
class Predict:
    """Least-squares line over ``window_seconds``, extrapolated ``within_seconds`` ahead."""

    window_seconds: float
    within_seconds: float


@dataclass(frozen=True)
class Condition:
    """``metric{matchers}`` [rate | predict] [/ per] [abs] ``op`` ``threshold``."""

    metric: str
    op: Op
    threshold: float
    matchers: tuple[Matcher, ...] = ()
    rate_seconds: float | None = None  # per-second increase of a counter over this window
    predict: Predict | None = None
    per: str | None = None  # divide by the host's latest value of this unlabelled metric
    absolute: bool = False  # compare |value|

    @property
    def window_seconds(self) -> float | None:
        """The history this condition needs, or None for the latest value alone."""
        if self.rate_seconds is not None:
            return self.rate_seconds
        return self.predict.window_seconds if self.predict is not None else None

    def selects(self, labels: Mapping[str, str]) -> bool:
        """Whether every matcher accepts ``labels``."""
        # a plain loop, not all(genexpr): this is the engine's innermost call
        for matcher in self.matchers:  # noqa: SIM110
            if not matcher.matches(labels):
                return False
        return True


@dataclass(frozen=True)
class Heartbeat:
    """Fires when the host has not been heard from for longer than ``grace_seconds``."""

    grace_seconds: float


@dataclass(frozen=True)
class Rule:
    """One alert rule, validated (see ``collector.rules.loader``)."""

    name: str
    level: int
    summary: Template
    condition: Condition | None = None
    heartbeat: Heartbeat | None = None
    for_seconds: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    description: Template = field(default_factory=lambda: Template("", ()))
    playbook: str | None = None
    group: str = field(default="", compare=False)
    source: str = field(default="", compare=False)  # "FILE:LINE" of the rule

    def __post_init__(self) -> None:
        if (self.condition is None) == (self.heartbeat is None):
            raise ValueError(f"rule {self.name!r}: needs exactly one of condition, heartbeat")

    @property
    def threshold(self) -> float:
        """The condition's threshold, or the heartbeat grace in seconds."""
        if self.condition is not None:
            return self.condition.threshold
        assert self.heartbeat is not None
        return self.heartbeat.grace_seconds


@dataclass(frozen=True)
class RuleSet:
    """The rules of one or more files, in file order; names are unique."""

    rules: tuple[Rule, ...] = ()
    files: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()  # "FILE:LINE: warning: ..." doubts that are not errors

    def __post_init__(self) -> None:
        names = [rule.name for rule in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique in a RuleSet")

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def names(self) -> tuple[str, ...]:
        """Rule names in file order."""
        return tuple(rule.name for rule in self.rules)

    def get(self, name: str) -> Rule | None:
        """The rule called ``name``, if any."""
        return next((rule for rule in self.rules if rule.name == name), None)


@dataclass(frozen=True)
class HostRef:
    """Which host an observation or alert is about."""

    agent_id: str
    customer: str
    hostname: str


@dataclass(frozen=True)
class Alert:
    """A rule firing for one series of one host (or for the host, for heartbeats)."""

    rule: str
    host: HostRef
    labels: Mapping[str, str]  # series labels, then the rule's labels (these win)
    level: int
    value: float
    summary: str
    description: str
    playbook: str | None
    active_since_ms: int  # when the condition first held (start of pending)
    dedup_key: str  # sha256 hex of agent_id, rule and the sorted series labels
    heartbeat: bool = False  # raised by a heartbeat rule (host silent), not a condition
