"""The fleet in the Prometheus text exposition 0.0.4, rendered directly (docs/metrics.md).

Two parts, both read from the in-memory ``Fleet`` at scrape time:
- connectivity: ``aftercare_agent_connected``, ``aftercare_agent_last_seen_timestamp_seconds``
  and ``aftercare_agent_info``, one line each per known host;
- host samples: every agent sample ``NAME`` as ``aftercare_host_NAME`` with the labels
  agent_id, customer and host plus the sample's own; names ending in ``_total`` are
  counters on the agent and exposed as counters. ``HostSelection`` narrows them to a
  shard of the hosts, some customers or some metric names.

At 10,000 hosts of 150 samples, building prometheus_client ``Metric`` objects cost
about 20 s of CPU per scrape; here each series' text is made once and remembered, and a
scrape only joins it with each host's labels and values.

Text from agents cannot forge a line: label values are escaped (backslash, quote,
newline) and metric and label names are reduced to the characters the format allows.
A sample label that names a reserved or collector label (``__name__``, ``customer``,
``host``, ``agent_id``) is renamed or dropped, so a host cannot pose as another.
"""

from __future__ import annotations

import math
import re
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

from collector.fleet import Fleet, HostState

HOST_PREFIX = "aftercare_host_"
HOST_LABELS = ("agent_id", "customer", "host")  # set by the collector, never by a sample
MAX_SHARDS = 1024
MAX_REMEMBERED_SERIES = 200_000  # the series text cache is emptied when it grows past this
_BAD_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_BAD_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_SELECTION_KEYS = ("shard", "shards", "customer", "name")


class SelectionError(ValueError):
    """A ``/metrics/hosts`` query that cannot be served; the message says what is allowed."""


@dataclass(frozen=True)
class HostSelection:
    """Which hosts and families a host-samples response holds.

    ``shard``/``shards``: only hosts whose agent id hashes (CRC-32) to ``shard`` modulo
    ``shards`` — stable across scrapes, replicas and restarts. ``customers``: only these
    customers (empty: all). ``names``: only families whose sample name (without
    ``aftercare_host_``) starts with one of these prefixes (empty: all).
    """

    shard: int = 0
    shards: int = 1
    customers: frozenset[str] = frozenset()
    names: tuple[str, ...] = ()

    def includes_host(self, host: HostState) -> bool:
        if self.customers and host.customer not in self.customers:
            return False
        return self.shards == 1 or shard_of(host.agent_id, self.shards) == self.shard

    def includes_family(self, sample_name: str) -> bool:
        return not self.names or sample_name.startswith(self.names)


def shard_of(agent_id: str, shards: int) -> int:
    """The shard (0..shards-1) ``agent_id`` belongs to."""
    return zlib.crc32(agent_id.encode()) % shards


def parse_selection(query: str) -> HostSelection:
    """A HostSelection from a URL query (``shard=K&shards=N``, ``customer=``, ``name=``,
    the last two repeatable); SelectionError naming the problem otherwise."""
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise SelectionError(f"malformed query {query[:80]!r}") from exc
    unknown = sorted(set(params) - set(_SELECTION_KEYS))
    if unknown:
        raise SelectionError(
            f"unknown parameter {unknown[0]!r}; allowed: shard=K&shards=N, customer=NAME, "
            "name=PREFIX (customer and name repeatable)"
        )
    shard, shards = _shard_params(params.get("shard"), params.get("shards"))
    names = tuple(n.removeprefix(HOST_PREFIX) for n in params.get("name", []))
    if any(not n for n in names):
        raise SelectionError("name= needs a metric name prefix, e.g. name=filesystem_")
    return HostSelection(shard, shards, frozenset(params.get("customer", [])), names)


def _shard_params(shard: list[str] | None, shards: list[str] | None) -> tuple[int, int]:
    if shard is None and shards is None:
        return 0, 1
    if shard is None or shards is None or len(shard) != 1 or len(shards) != 1:
        raise SelectionError("give shard=K and shards=N together, once each (0 <= K < N)")
    if not (shard[0].isdecimal() and shards[0].isdecimal()):
        raise SelectionError("shard and shards must be whole numbers (0 <= K < N)")
    k, n = int(shard[0]), int(shards[0])
    if not 1 <= n <= MAX_SHARDS or not 0 <= k < n:
        raise SelectionError(f"need 0 <= shard < shards <= {MAX_SHARDS}; got shard={k} shards={n}")
    return k, n


class _Discard(list[str]):
    """Where the lines of a family the selection leaves out go."""

    def append(self, line: str) -> None:
        del line


@dataclass(frozen=True, slots=True)
class _Series:
    """The text of one agent series around the host's labels: ``head`` + host labels +
    ``tail`` + value."""

    family: str  # the exposed metric name (counters end in _total)
    sample_name: str  # the sanitised agent sample name, for name= prefixes
    head: str
    tail: str


class FleetExposition:
    """Renders the fleet's connectivity and host samples; thread-safe (the HTTP server
    calls it from its threads)."""

    def __init__(self, fleet: Fleet, held_here_only: bool = False) -> None:
        """``held_here_only``: export samples only of hosts whose stream this process
        holds (replicas: each host's samples come from the replica it is connected to;
        connectivity is exported for every host by every replica)."""
        self._fleet = fleet
        self._held_here_only = held_here_only
        self._series: dict[tuple[str, str], _Series] = {}
        self._lock = threading.Lock()

    def connectivity(self) -> str:
        """The three connectivity families, every known host."""
        connected, last_seen, info = [], [], []
        for host in self._fleet.snapshot():
            labels = host_labels(host)
            connected.append(f"aftercare_agent_connected{{{labels}}} {float(host.connected)!r}\n")
            if host.last_seen_ms is not None:
                last_seen.append(
                    f"aftercare_agent_last_seen_timestamp_seconds{{{labels}}} "
                    f"{host.last_seen_ms / 1000!r}\n"
                )
            version = escape(host.agent_version)
            info.append(f'aftercare_agent_info{{{labels},version="{version}"}} 1.0\n')
        return "".join(
            [
                _header(
                    "aftercare_agent_connected",
                    "1 if the agent has a control stream open to this collector.",
                    "gauge",
                ),
                *connected,
                _header(
                    "aftercare_agent_last_seen_timestamp_seconds",
                    "Unix time the agent was last heard from.",
                    "gauge",
                ),
                *last_seen,
                _header("aftercare_agent_info", "Agent version (value always 1).", "gauge"),
                *info,
            ]
        )

    def host_samples(self, selection: HostSelection) -> str:
        """The selected hosts' latest samples, one contiguous block per family, families
        in name order."""
        lines: dict[str, list[str]] = {}
        names: dict[str, str] = {}
        known = self._series
        for host in self._fleet.snapshot():
            if (self._held_here_only and host.connections == 0) or not selection.includes_host(
                host
            ):
                continue
            labels = host_labels(host)
            for name, sample_labels, value in host.samples:
                series = known.get((name, _labels_key(sample_labels)))
                if series is None:
                    series = self._remember(name, sample_labels)
                family = series.family
                bucket = lines.get(family)
                if bucket is None:
                    wanted = selection.includes_family(series.sample_name)
                    bucket = lines[family] = [] if wanted else _Discard()
                    names[family] = series.sample_name
                text = repr(value) if value - value == 0 else format_value(value)
                bucket.append(f"{series.head}{labels}{series.tail}{text}\n")
        parts: list[str] = []
        for family in sorted(lines):
            if isinstance(lines[family], _Discard):
                continue
            kind = "counter" if family.endswith("_total") else "gauge"
            help_text = f"Agent sample {names[family]} (see docs/metrics.md)."
            parts.append(_header(family, help_text, kind))
            parts += lines[family]
        return "".join(parts)

    def _remember(self, name: str, labels: Mapping[str, str]) -> _Series:
        """Make and keep the text of a series not seen before."""
        series = _series_text(name, labels)
        key = (name, _labels_key(labels))
        with self._lock:
            if len(self._series) >= MAX_REMEMBERED_SERIES:
                self._series.clear()
            self._series[key] = series
        return series


def _labels_key(labels: Mapping[str, str]) -> str:
    """A hashable key for a label set: the decoder's canonical JSON when it has one."""
    canonical = getattr(labels, "canonical_json", None)
    if isinstance(canonical, str):
        return canonical
    return repr(sorted(labels.items()))


def _series_text(name: str, labels: Mapping[str, str]) -> _Series:
    sample_name = _BAD_METRIC_CHARS.sub("_", name)
    family = HOST_PREFIX + sample_name
    extra: dict[str, str] = {}
    for key in sorted(labels):
        label = label_name(key)
        if label not in HOST_LABELS and label not in extra:
            extra[label] = labels[key]
    tail = "".join(f',{k}="{escape(v)}"' for k, v in extra.items())
    return _Series(family, sample_name, family + "{", tail + "} ")


def label_name(key: str) -> str:
    """``key`` as a legal, non-reserved Prometheus label name."""
    name = _BAD_LABEL_CHARS.sub("_", key)
    if not name or name[0].isdigit() or name.startswith("__"):
        name = "label_" + name
    return name


def host_labels(host: HostState) -> str:
    """The collector's labels of ``host``, escaped, without braces."""
    return (
        f'agent_id="{escape(host.agent_id)}",customer="{escape(host.customer)}",'
        f'host="{escape(host.hostname)}"'
    )


def escape(value: str) -> str:
    """A label value as the exposition format writes it inside quotes."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def format_value(value: float) -> str:
    """A sample value as Prometheus reads it (NaN, +Inf, -Inf spelt its way)."""
    if math.isfinite(value):
        return repr(float(value))
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def _header(name: str, help_text: str, kind: str) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"
