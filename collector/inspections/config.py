"""Inspections configuration (``aftercare-collector serve --inspections-config FILE``).

One frozen dataclass loaded from YAML and validated at start; unknown keys are errors
naming the key path. docs/inspections.md documents every key::

    calendar:                      # working days for the report's due date
      timezone: Asia/Shanghai
      weekend: [5, 6]              # Monday is 0
      holidays: ["2027-10-01"]
      extra_working_days: ["2027-09-26"]   # make-up working days (调休)
    run_timeout: 15m               # how long a run waits for every host's result
    playbook: quarterly-inspection
    announce:                      # who receives a customer's inspection application
      acme: [{webhook: "https://..."}, {email: ops@acme.example}]
    late_report:                   # told once when a report passes its due date
      recipients: [{email: lead@vendor.example}]

E-mail goes through the relay of the tickets configuration (escalation.smtp).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collector.calendar import CalendarError, WorkingCalendar, calendar_from_mapping
from collector.inspections.errors import InspectionConfigError
from collector.notify import url_problem
from collector.tickets.escalation import Channel, Recipient
from common.durations import parse_duration

__all__ = ["InspectionsConfig", "inspections_config_from_mapping", "load_inspections_config"]

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_TOP_KEYS = {"calendar", "run_timeout", "playbook", "announce", "late_report"}


@dataclass(frozen=True)
class InspectionsConfig:
    """Everything the inspection service reads from configuration."""

    calendar: WorkingCalendar = field(default_factory=WorkingCalendar)
    run_timeout_ms: int = 15 * 60_000
    playbook: str = "quarterly-inspection"
    announce: Mapping[str, tuple[Recipient, ...]] = field(default_factory=dict)
    late_report: tuple[Recipient, ...] = ()

    def announce_to(self, customer: str) -> tuple[Recipient, ...]:
        """The recipients of ``customer``'s inspection applications (may be none)."""
        return self.announce.get(customer, ())


def load_inspections_config(path: Path | str | None) -> InspectionsConfig:
    """The configuration in ``path``; the defaults when None. InspectionConfigError
    naming the file and key on any problem."""
    if path is None:
        return InspectionsConfig()
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InspectionConfigError("", f"cannot read: {exc.strerror or exc}", source) from exc
    except yaml.YAMLError as exc:
        raise InspectionConfigError("", f"not valid YAML: {exc}", source) from exc
    try:
        return inspections_config_from_mapping({} if data is None else data)
    except InspectionConfigError as exc:
        raise InspectionConfigError(exc.key_path, exc.detail, source) from None


def inspections_config_from_mapping(data: Any) -> InspectionsConfig:
    """The configuration from parsed YAML; InspectionConfigError on a bad key."""
    top = _mapping(data, "", _TOP_KEYS)
    config: dict[str, Any] = {}
    if "calendar" in top:
        config["calendar"] = _calendar(top["calendar"])
    if "run_timeout" in top:
        try:
            seconds = parse_duration(top["run_timeout"])
        except ValueError as exc:
            raise InspectionConfigError("run_timeout", str(exc)) from None
        if not 10 <= seconds <= 6 * 3600:
            raise InspectionConfigError("run_timeout", "must be between 10s and 6h")
        config["run_timeout_ms"] = round(seconds * 1000)
    if "playbook" in top:
        if not isinstance(top["playbook"], str) or not top["playbook"].strip():
            raise InspectionConfigError("playbook", "must name a playbook of the catalogue")
        config["playbook"] = top["playbook"].strip()
    if "announce" in top:
        announce = _mapping(top["announce"], "announce", None)
        config["announce"] = {
            str(customer): _recipients(value, f"announce.{customer}")
            for customer, value in announce.items()
        }
    if "late_report" in top:
        late = _mapping(top["late_report"], "late_report", {"recipients"})
        config["late_report"] = _recipients(late.get("recipients"), "late_report.recipients")
    return InspectionsConfig(**config)


def _calendar(value: Any) -> WorkingCalendar:
    try:
        return calendar_from_mapping(value)
    except (CalendarError, ValueError, TypeError) as exc:
        raise InspectionConfigError("calendar", str(exc)) from None


def _recipients(value: Any, path: str) -> tuple[Recipient, ...]:
    items = _list(value, path)
    recipients = []
    for index, item in enumerate(items):
        where = f"{path}[{index}]"
        data = _mapping(item, where, {"webhook", "email"})
        if len(data) != 1:
            raise InspectionConfigError(where, "give exactly one of webhook: URL or email: ADDRESS")
        channel: Channel = "webhook" if "webhook" in data else "email"
        target = data[channel]
        if not isinstance(target, str):
            raise InspectionConfigError(f"{where}.{channel}", "must be a string")
        if channel == "webhook" and (problem := url_problem(target)) is not None:
            raise InspectionConfigError(f"{where}.webhook", f"not a usable webhook URL: {problem}")
        if channel == "email" and not _EMAIL.fullmatch(target):
            raise InspectionConfigError(f"{where}.email", f"{target!r} is not an e-mail address")
        recipients.append(Recipient(channel, target))
    return tuple(recipients)


def _mapping(value: Any, path: str, allowed: set[str] | None) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise InspectionConfigError(path, "must be a mapping")
    if allowed is not None:
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise InspectionConfigError(
                path, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})"
            )
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise InspectionConfigError(path, "must be a list")
    return value
