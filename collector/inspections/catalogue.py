"""The recommendation catalogue: which finding rules the analysis applies, with their texts.

The shipped catalogue (``data/catalogue.yaml``, package data) binds each entry -
id, check, checklist item, state, ticket level, parameters, English and Chinese
title and recommendation - to one of the ``CHECKS`` the analysis implements. An
extension file may replace entries (same id) or add entries (new id, existing
check). Format and checks: docs/inspection-report.md.

    CatalogueError (ValueError)   the file cannot be read or an entry is invalid;
                                  the message names the file, entry and field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

__all__ = [
    "CHECKS",
    "LANGUAGES",
    "CatalogueEntry",
    "CatalogueError",
    "RecommendationCatalogue",
    "load_catalogue",
    "shipped_catalogue",
]

LANGUAGES = ("en", "zh-CN")
# check -> the parameters it accepts (name -> default)
CHECKS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "host_unreachable": {},
        "no_facts": {},
        "filesystem_predicted_full": {"within_days": 90},
        "filesystem_usage": {"above": 0.85},
        "filesystem_inodes": {"above": 0.85},
        "failed_units": {},
        "kernel_io_errors": {"at_least": 1},
        "oom_kills": {"at_least": 1},
        "memory_high": {"p95_above": 0.9},
        "clock_unsynchronised": {},
        "reboot_required": {},
        "security_updates": {"at_least": 1},
        "data_gaps": {"at_least_minutes": 60},
    }
)
_STATES = ("warning", "fault")
_LEVELS = ("1", "2", "3", "4")
_KEYS = {"id", "check", "item", "state", "level", "params", "title", "recommendation"}


class CatalogueError(ValueError):
    """The catalogue (or an extension) is unreadable or invalid."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One finding rule with its texts."""

    id: str
    check: str
    item: str
    state: str
    level: str | None
    params: Mapping[str, float]
    title: Mapping[str, str]
    recommendation: Mapping[str, str]

    def severity(self) -> tuple[int, int]:
        """Sort key: fault before warning, then level 1 before 4."""
        return (0 if self.state == "fault" else 1, int(self.level or 9))


@dataclass(frozen=True)
class RecommendationCatalogue:
    """Entries in file order (extensions after the shipped ones)."""

    entries: Sequence[CatalogueEntry] = field(default_factory=tuple)
    checklist: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def for_check(self, check: str) -> list[CatalogueEntry]:
        """The entries using ``check``, most severe first."""
        return sorted((e for e in self.entries if e.check == check), key=CatalogueEntry.severity)


def shipped_catalogue() -> RecommendationCatalogue:
    """The catalogue shipped with the collector."""
    text = resources.files("collector.inspections").joinpath("data/catalogue.yaml").read_text()
    document = _document(text, "shipped catalogue")
    return RecommendationCatalogue(
        tuple(_entries(document, "shipped catalogue")),
        _checklist(document.get("checklist"), "shipped catalogue", {}),
    )


def load_catalogue(extension: Path | None = None) -> RecommendationCatalogue:
    """The shipped catalogue, with ``extension``'s entries replacing (same id) or added."""
    base = shipped_catalogue()
    if extension is None:
        return base
    try:
        text = extension.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"cannot read the catalogue extension {extension}: {exc}") from exc
    document = _document(text, str(extension))
    added = {entry.id: entry for entry in _entries(document, str(extension))}
    merged = [added.pop(entry.id, entry) for entry in base.entries]
    checklist = _checklist(document.get("checklist"), str(extension), base.checklist)
    return RecommendationCatalogue((*merged, *added.values()), checklist)


def _document(text: str, where: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("entries", []), list):
        raise CatalogueError(f"{where}: expected a mapping with an 'entries' list")
    return document


def _checklist(
    raw: object, where: str, base: Mapping[str, Mapping[str, str]]
) -> Mapping[str, Mapping[str, str]]:
    """Item -> its "ok" title; an extension may retitle items, not add or drop them."""
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: checklist must be a mapping of item -> titles")
    if base and not set(raw) <= set(base):
        unknown = sorted(map(str, set(raw) - set(base)))
        raise CatalogueError(f"{where}: checklist items {unknown} are not checklist items")
    merged = dict(base)
    for item, titles in raw.items():
        merged[str(item)] = MappingProxyType(_texts(titles, f"checklist.{item}", where))
    return MappingProxyType(merged)


def _entries(document: Mapping[str, Any], where: str) -> list[CatalogueEntry]:
    entries, seen = [], set()
    for index, raw in enumerate(document.get("entries") or []):
        entry = _entry(raw, f"{where}: entry {index + 1}")
        if entry.id in seen:
            raise CatalogueError(f"{where}: entry id {entry.id!r} appears twice")
        seen.add(entry.id)
        entries.append(entry)
    return entries


def _entry(raw: object, where: str) -> CatalogueEntry:
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: expected a mapping")
    unknown = set(raw) - _KEYS
    if unknown:
        raise CatalogueError(f"{where}: unknown keys {sorted(map(str, unknown))}")
    entry_id = _text(raw, "id", where)
    where = f"{where} ({entry_id})"
    check = _text(raw, "check", where)
    if check not in CHECKS:
        raise CatalogueError(f"{where}: check must be one of {', '.join(CHECKS)}, got {check!r}")
    state = _text(raw, "state", where)
    if state not in _STATES:
        raise CatalogueError(f"{where}: state must be warning or fault, got {state!r}")
    level = raw.get("level")
    level = None if level is None else str(level)
    if (state == "fault") != (level is not None) or (level is not None and level not in _LEVELS):
        raise CatalogueError(f"{where}: level must be 1..4 for a fault and null for a warning")
    return CatalogueEntry(
        id=entry_id,
        check=check,
        item=_text(raw, "item", where),
        state=state,
        level=level,
        params=MappingProxyType(_params(raw.get("params"), check, where)),
        title=MappingProxyType(_texts(raw.get("title"), "title", where)),
        recommendation=MappingProxyType(_texts(raw.get("recommendation"), "recommendation", where)),
    )


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise CatalogueError(f"{where}: {key} must be a non-empty string")
    return value


def _params(raw: object, check: str, where: str) -> dict[str, float]:
    params = dict(CHECKS[check])
    if raw is None:
        return params
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: params must be a mapping")
    for name, value in raw.items():
        if name not in params:
            allowed = ", ".join(params) or "none"
            raise CatalogueError(f"{where}: check {check} has no parameter {name!r} ({allowed})")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise CatalogueError(f"{where}: params.{name} must be a non-negative number")
        params[name] = float(value)
    return params


def _texts(raw: object, key: str, where: str) -> dict[str, str]:
    if not isinstance(raw, dict) or set(raw) != set(LANGUAGES):
        raise CatalogueError(f"{where}: {key} must have exactly the keys {', '.join(LANGUAGES)}")
    for lang, value in raw.items():
        if not isinstance(value, str) or not value.strip():
            raise CatalogueError(f"{where}: {key}.{lang} must be a non-empty string")
    return {str(lang): str(value) for lang, value in raw.items()}
