"""Alert rules: YAML rule files, their validation, and the engine that evaluates them.

Pure domain logic (no gRPC, no SQL, no wall clock). Modules:

- ``model``     rule records, ``HostRef`` and ``Alert``
- ``loader``    ``load_rules`` / ``check_rules``: YAML -> ``RuleSet``, errors as FILE:LINE
- ``template``  the ``{{ placeholder | filter }}`` annotation language
- ``catalog``   ``KNOWN_METRICS``: the metrics (and labels) the agent sends
- ``window``    bounded per-series history for ``rate`` and ``predict``
- ``engine``    ``RuleEngine``: observe batches, evaluate firing alerts
- ``errors``    ``RuleFileError``
- ``default.yaml`` the shipped rules (``default_rules_path()``)

The rule format and the default rules are documented in docs/rules.md.
"""

from __future__ import annotations

from collector.rules.catalog import KNOWN_METRICS
from collector.rules.engine import EngineStats, RuleEngine, dedup_key
from collector.rules.errors import RuleFileError
from collector.rules.loader import check_rules, default_rules_path, load_rules
from collector.rules.model import (
    Alert,
    Condition,
    Heartbeat,
    HostRef,
    Matcher,
    Predict,
    Rule,
    RuleSet,
)

__all__ = [
    "KNOWN_METRICS",
    "Alert",
    "Condition",
    "EngineStats",
    "Heartbeat",
    "HostRef",
    "Matcher",
    "Predict",
    "Rule",
    "RuleEngine",
    "RuleFileError",
    "RuleSet",
    "check_rules",
    "dedup_key",
    "default_rules_path",
    "load_rules",
]
