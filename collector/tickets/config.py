"""Tickets configuration: one frozen dataclass loaded from YAML and validated at start.

``load_tickets_config(None)`` gives the defaults; a file overrides any subset of
them. Every error is a ``TicketConfigError`` naming the file and the key path
("escalation.steps[1].trigger: invalid trigger 'breech': ..."). Unknown keys are
errors too, so a typo never silently falls back to a default. docs/tickets.md
documents every key; deploy/tickets.example.yaml uses them all.

Durations are strings with units ("30m", "7d", "1h30m") or numbers of seconds.
Fault levels are 1, 2, 3, 4, consult or other (numbers or strings).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from collector.alertmanager import DEFAULT_LEVELS
from collector.calendar import calendar_from_mapping
from collector.notify import SmtpSettings, url_problem
from collector.tickets.customer_notices import CustomerNoticePolicy
from collector.tickets.errors import TicketConfigError
from collector.tickets.escalation import (
    DEFAULT_CLOCKS,
    Channel,
    EscalationPolicy,
    EscalationStep,
    Recipient,
    Trigger,
)
from collector.tickets.model import LEVELS, Level
from collector.tickets.sla import (
    CLOCK_NAMES,
    DAY_MS,
    DEFAULT_TARGETS,
    ClockName,
    LevelTargets,
    SlaPolicy,
)
from collector.tickets.teams import Engineer, Team, Teams
from common.durations import parse_duration

__all__ = [
    "DEFAULT_LEVEL_MAP",
    "AlertmanagerConfig",
    "SmtpConfig",
    "TicketsConfig",
    "load_tickets_config",
    "tickets_config_from_mapping",
]

DEFAULT_LEVEL_MAP: Mapping[str, Level] = DEFAULT_LEVELS  # one table: docs/alertmanager.md
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_LEVEL_HELP = "use 1, 2, 3, 4, consult or other"


@dataclass(frozen=True)
class SmtpConfig:
    """How e-mail notifications are sent. ``host`` empty: e-mail is disabled."""

    host: str = ""
    port: int = 587
    sender: str = ""  # the "from" key
    starttls: bool = True
    username: str = ""
    password_file: Path | None = None
    timeout_s: float = 10.0
    ca_file: Path | None = None  # PEM bundle for the relay's certificate; default: system

    @property
    def enabled(self) -> bool:
        """Whether e-mail can be sent at all."""
        return bool(self.host)

    def settings(self) -> SmtpSettings:
        """The relay settings for ``collector.notify.send_email`` (reads the password
        file). Raises TicketConfigError if e-mail is not configured or the file cannot
        be read, ConfigError from SmtpSettings' own checks."""
        if not self.enabled or not self.sender:
            raise TicketConfigError("escalation.smtp", "e-mail needs host and from")
        return SmtpSettings(
            host=self.host,
            port=self.port,
            sender=self.sender,
            starttls=self.starttls,
            username=self.username or None,
            password=self.read_password(),
            timeout=self.timeout_s,
            ca_file=str(self.ca_file) if self.ca_file is not None else None,
        )

    def read_password(self) -> str | None:
        """The password (first line of ``password_file``), None without one.
        Call it at start: TicketConfigError if the file cannot be read."""
        if self.password_file is None:
            return None
        try:
            text = self.password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise TicketConfigError(
                "escalation.smtp.password_file", f"cannot read {self.password_file}: {exc}"
            ) from exc
        return text.splitlines()[0] if text else ""


@dataclass(frozen=True)
class AlertmanagerConfig:
    """How an Alertmanager alert's labels give the ticket's fault level."""

    default_level: Level = "3"
    level_label: str = "severity"
    level_map: Mapping[str, Level] = field(default_factory=lambda: dict(DEFAULT_LEVEL_MAP))

    def level_for(self, labels: Mapping[str, str]) -> Level:
        """The level for an alert: ``level_map`` of the ``level_label`` value
        (case-insensitive), else that value itself if it names a level ("1",
        "consult"), else ``default_level``."""
        value = labels.get(self.level_label, "").strip().lower()
        mapped = {k.lower(): v for k, v in self.level_map.items()}.get(value)
        if mapped is not None:
            return mapped
        for level in LEVELS:
            if value == level:
                return level
        return self.default_level


@dataclass(frozen=True)
class TicketsConfig:
    """Everything the ticket service reads from configuration (durations in ms)."""

    reopen_window_ms: int = 7 * DAY_MS
    auto_confirm_ms: int = 7 * DAY_MS
    sla: SlaPolicy = field(default_factory=SlaPolicy)
    escalation: EscalationPolicy = field(default_factory=EscalationPolicy)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    alertmanager: AlertmanagerConfig = field(default_factory=AlertmanagerConfig)
    complaint_recipients: tuple[Recipient, ...] = ()  # the vendor's management
    customer_notices: CustomerNoticePolicy = field(default_factory=CustomerNoticePolicy)
    report_vendor: str = ""  # the vendor's name in the fault analysis report's header
    report_timezone: str = "UTC"  # times in the report, unless the customer has its own
    report_timezones: Mapping[str, str] = field(default_factory=dict)  # customer -> zone
    teams: Teams = field(default_factory=Teams)  # level-by-level escalation chains

    def timezone_of(self, customer: str) -> str:
        """The IANA time zone the customer's reports are written in."""
        return self.report_timezones.get(customer, self.report_timezone)


# -- loading -----------------------------------------------------------------------------


def load_tickets_config(path: Path | str | None) -> TicketsConfig:
    """The configuration in ``path`` (YAML); the defaults when ``path`` is None.

    Raises TicketConfigError naming the file (and the key path) if the file is
    missing, is not YAML, or holds an unknown key or a bad value.
    """
    if path is None:
        return TicketsConfig()
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TicketConfigError("", f"cannot read: {exc.strerror or exc}", source) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TicketConfigError("", f"not valid YAML: {_yaml_problem(exc)}", source) from exc
    try:
        return tickets_config_from_mapping({} if data is None else data)
    except TicketConfigError as exc:
        raise TicketConfigError(exc.key_path, exc.detail, source, exc.problems) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1} column {mark.column + 1}: {problem}"
    return str(problem)


# escalation before customer_notices: e-mail recipients need its smtp settings
_SECTIONS = (
    "reopen_window",
    "auto_confirm",
    "sla",
    "escalation",
    "alertmanager",
    "calendar",  # after sla: it goes into the SLA policy
    "complaints",  # after escalation: e-mail recipients need its smtp settings
    "teams",  # after escalation: e-mail recipients need its smtp settings
    "customer_notices",
    "report",
)


def tickets_config_from_mapping(data: Any) -> TicketsConfig:
    """The configuration from parsed YAML (a mapping).

    Every section is checked even after one fails: TicketConfigError reports every
    problem found (one per unknown top-level key and per bad section or escalation
    step), so a file is fixed in one go.
    """
    top = _mapping(data, "", None)
    problems = [
        TicketConfigError(str(key), f"unknown key; expected one of: {', '.join(sorted(_SECTIONS))}")
        for key in top
        if key not in _SECTIONS
    ]
    config = TicketsConfig()
    for section in _SECTIONS:
        if section not in top:
            continue
        try:
            config = _apply_section(config, section, top[section])
        except TicketConfigError as exc:
            problems.extend(exc.problems or [exc])
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise TicketConfigError.several(problems)
    return config


def _apply_section(config: TicketsConfig, section: str, value: Any) -> TicketsConfig:
    if section == "reopen_window":
        return replace(config, reopen_window_ms=_duration_ms(value, section))
    if section == "auto_confirm":
        return replace(config, auto_confirm_ms=_duration_ms(value, section, positive=True))
    if section == "sla":
        return replace(config, sla=_sla(value, section))
    if section == "escalation":
        steps, smtp = _escalation(value, section)
        return replace(config, escalation=steps, smtp=smtp)
    if section == "calendar":
        try:
            calendar = calendar_from_mapping(value)
        except ValueError as exc:
            raise TicketConfigError(section, str(exc)) from None
        return replace(config, sla=replace(config.sla, calendar=calendar))
    if section == "complaints":
        data = _mapping(value, section, {"recipients"})
        path = _join(section, "recipients")
        return replace(
            config, complaint_recipients=_recipients(data.get("recipients"), path, config.smtp)
        )
    if section == "report":
        return _report(config, value, section)
    if section == "teams":
        return replace(config, teams=_teams(value, section, config.smtp))
    if section == "customer_notices":
        return replace(config, customer_notices=_customer_notices(value, section, config.smtp))
    return replace(config, alertmanager=_alertmanager(value, section))


# -- sla -------------------------------------------------------------------------------


def _sla(value: Any, path: str) -> SlaPolicy:
    data = _mapping(value, path, {"warning_fraction", "levels", "customers"})
    fraction = 0.75
    if "warning_fraction" in data:
        fraction = _fraction(data["warning_fraction"], _join(path, "warning_fraction"))
    levels = _level_table(data.get("levels", {}), _join(path, "levels"), DEFAULT_TARGETS)
    customers_path = _join(path, "customers")
    customers = {
        str(name): _level_table(table, _join(customers_path, str(name)), levels, only_given=True)
        for name, table in _mapping(data.get("customers", {}), customers_path, None).items()
    }
    return SlaPolicy(levels=levels, customers=customers, warning_fraction=fraction)


def _level_table(
    value: Any, path: str, base: Mapping[Level, LevelTargets], only_given: bool = False
) -> dict[Level, LevelTargets]:
    """Level → targets, each entry merged over ``base``; all levels unless only_given."""
    table: dict[Level, LevelTargets] = {} if only_given else dict(base)
    for key, entry in _mapping(value, path, None).items():
        level = _level(key, _join(path, str(key)))
        table[level] = _targets(entry, _join(path, level), base[level])
    return table


def _targets(value: Any, path: str, base: LevelTargets) -> LevelTargets:
    data = _mapping(value, path, {"response", "resolution", "remote_response"})
    targets = base
    if "response" in data:
        response = _duration_ms(data["response"], _join(path, "response"), positive=True)
        targets = replace(targets, response_ms=response)
    if "resolution" in data:
        resolution = _duration_ms(data["resolution"], _join(path, "resolution"), positive=True)
        targets = replace(targets, resolution_ms=resolution)
    if "remote_response" in data:
        remote = data["remote_response"]
        remote_ms = (
            None
            if remote is None or remote == "none"
            else _duration_ms(remote, _join(path, "remote_response"), positive=True)
        )
        targets = replace(targets, remote_response_ms=remote_ms)
    return targets


# -- escalation --------------------------------------------------------------------------


def _escalation(value: Any, path: str) -> tuple[EscalationPolicy, SmtpConfig]:
    data = _mapping(value, path, {"steps", "smtp"})
    smtp = _smtp(data["smtp"], _join(path, "smtp")) if "smtp" in data else SmtpConfig()
    steps_path = _join(path, "steps")
    raw_steps = data.get("steps", [])
    if not isinstance(raw_steps, list):
        raise TicketConfigError(steps_path, "must be a list of steps")
    steps = []
    problems = []
    for index, raw in enumerate(raw_steps):
        try:
            steps.append(_step(raw, f"{steps_path}[{index}]", smtp))
        except TicketConfigError as exc:
            problems.append(exc)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise TicketConfigError.several(problems)
    return EscalationPolicy(steps=tuple(steps)), smtp


def _step(value: Any, path: str, smtp: SmtpConfig) -> EscalationStep:
    data = _mapping(value, path, {"trigger", "clocks", "min_level", "recipients"})
    if "trigger" not in data:
        raise TicketConfigError(
            _join(path, "trigger"), "required (warning, breach or breach+DURATION)"
        )
    try:
        trigger = Trigger.parse(_string(data["trigger"], _join(path, "trigger")))
    except ValueError as exc:
        raise TicketConfigError(_join(path, "trigger"), str(exc)) from None
    min_level = None
    if data.get("min_level") is not None:
        min_level = _level(data["min_level"], _join(path, "min_level"))
    clocks = _clocks(data["clocks"], _join(path, "clocks")) if "clocks" in data else DEFAULT_CLOCKS
    recipients = _recipients(data.get("recipients"), _join(path, "recipients"), smtp)
    return EscalationStep(trigger, recipients, clocks, min_level)


def _clocks(value: Any, path: str) -> frozenset[ClockName]:
    if not isinstance(value, list) or not value:
        raise TicketConfigError(path, f"must be a non-empty list of: {', '.join(CLOCK_NAMES)}")
    clocks: set[ClockName] = set()
    for index, item in enumerate(value):
        name = next((c for c in CLOCK_NAMES if c == item), None)
        if name is None:
            raise TicketConfigError(
                f"{path}[{index}]", f"unknown clock {item!r}; use {', '.join(CLOCK_NAMES)}"
            )
        clocks.add(name)
    return frozenset(clocks)


def _recipients(value: Any, path: str, smtp: SmtpConfig) -> tuple[Recipient, ...]:
    if not isinstance(value, list) or not value:
        raise TicketConfigError(
            path, "required: a non-empty list of {webhook: URL} or {email: ADDRESS}"
        )
    return tuple(_recipient(item, f"{path}[{i}]", smtp) for i, item in enumerate(value))


def _recipient(value: Any, path: str, smtp: SmtpConfig) -> Recipient:
    data = _mapping(value, path, {"webhook", "email"})
    if len(data) != 1:
        raise TicketConfigError(path, "give exactly one of webhook: URL or email: ADDRESS")
    channel: Channel = "webhook" if "webhook" in data else "email"
    key_path = _join(path, channel)
    target = _string(data[channel], key_path)
    if channel == "webhook":
        _check_url(target, key_path)
    else:
        _check_email(target, key_path, smtp)
    return Recipient(channel, target)


# -- teams -------------------------------------------------------------------------------


def _teams(value: Any, path: str, smtp: SmtpConfig) -> Teams:
    data = _mapping(value, path, {"engineers", "teams"})
    engineers_path, teams_path = _join(path, "engineers"), _join(path, "teams")
    engineers = {
        str(name): _engineer(raw, _join(engineers_path, str(name)), smtp)
        for name, raw in _mapping(data.get("engineers", {}), engineers_path, None).items()
    }
    teams = {
        str(name): _team(raw, _join(teams_path, str(name)))
        for name, raw in _mapping(data.get("teams", {}), teams_path, None).items()
    }
    result = Teams(engineers, teams)
    problems = [TicketConfigError(key, detail) for key, detail in result.problems()]
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise TicketConfigError.several(problems)
    return result


def _engineer(value: Any, path: str, smtp: SmtpConfig) -> Engineer:
    data = _mapping(value, path, {"email", "webhook", "supervisor"})
    where = {k: v for k, v in data.items() if k != "supervisor"}
    supervisor = (
        _string(data["supervisor"], _join(path, "supervisor")) if "supervisor" in data else ""
    )
    return Engineer(_recipient(where, path, smtp), supervisor)


def _team(value: Any, path: str) -> Team:
    data = _mapping(value, path, {"customers", "on_call", "shift", "since"})
    customers = _names(data.get("customers"), _join(path, "customers"))
    on_call = _names(data.get("on_call"), _join(path, "on_call"))
    shift_ms = _duration_ms(data.get("shift", "7d"), _join(path, "shift"), positive=True)
    since_ms = _instant_ms(data["since"], _join(path, "since")) if "since" in data else 0
    return Team(customers, on_call, shift_ms, since_ms)


def _names(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise TicketConfigError(path, "required: a non-empty list of names")
    return tuple(_string(item, f"{path}[{i}]") for i, item in enumerate(value))


def _instant_ms(value: Any, path: str) -> int:
    text = value.isoformat() if isinstance(value, dt.datetime) else _string(value, path)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise TicketConfigError(
            path, f"{text!r} is not a time with its zone, e.g. 2026-01-05T09:00:00+08:00"
        )
    return int(moment.timestamp() * 1000)


# -- report ------------------------------------------------------------------------------


def _report(config: TicketsConfig, value: Any, path: str) -> TicketsConfig:
    data = _mapping(value, path, {"vendor", "timezone", "timezones"})
    if "vendor" in data:
        config = replace(config, report_vendor=_string(data["vendor"], _join(path, "vendor")))
    if "timezone" in data:
        zone = _timezone(data["timezone"], _join(path, "timezone"))
        config = replace(config, report_timezone=zone)
    zones_path = _join(path, "timezones")
    zones = {
        str(customer): _timezone(zone, _join(zones_path, str(customer)))
        for customer, zone in _mapping(data.get("timezones", {}), zones_path, None).items()
    }
    return replace(config, report_timezones=zones)


def _timezone(value: Any, path: str) -> str:
    name = _string(value, path)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TicketConfigError(
            path, f"unknown time zone {name!r}: use an IANA name such as Asia/Shanghai"
        ) from None
    return name


# -- customer notices --------------------------------------------------------------------


def _customer_notices(value: Any, path: str, smtp: SmtpConfig) -> CustomerNoticePolicy:
    data = _mapping(value, path, {"remind_before", "customers"})
    policy = CustomerNoticePolicy()
    if "remind_before" in data:
        remind = _duration_ms(data["remind_before"], _join(path, "remind_before"), positive=True)
        policy = replace(policy, remind_before_ms=remind)
    customers_path = _join(path, "customers")
    contacts = {
        str(name): _recipients(entry, _join(customers_path, str(name)), smtp)
        for name, entry in _mapping(data.get("customers", {}), customers_path, None).items()
    }
    return replace(policy, contacts=contacts)


def _check_url(url: str, path: str) -> None:
    problem = url_problem(url)
    if problem is not None:  # the URL itself stays out of the message: it may hold a secret
        raise TicketConfigError(path, f"not a usable webhook URL: {problem}")


def _check_email(address: str, path: str, smtp: SmtpConfig) -> None:
    if not _EMAIL.fullmatch(address):
        raise TicketConfigError(path, f"{address!r} is not an e-mail address")
    if not smtp.enabled or not smtp.sender:
        raise TicketConfigError(
            path, "e-mail recipients need escalation.smtp.host and escalation.smtp.from"
        )


def _smtp(value: Any, path: str) -> SmtpConfig:
    keys = {"host", "port", "from", "starttls", "username", "password_file", "timeout", "ca_file"}
    data = _mapping(value, path, keys)
    smtp = _smtp_fields(data, path)
    if smtp.username and smtp.password_file is None:
        raise TicketConfigError(_join(path, "password_file"), "required with username")
    if smtp.password_file is not None and not smtp.username:
        raise TicketConfigError(_join(path, "username"), "required with password_file")
    if smtp.username and not smtp.starttls:
        raise TicketConfigError(
            _join(path, "starttls"),
            "must be true with a username: the password would cross the network in clear",
        )
    return smtp


def _smtp_fields(data: Mapping[str, Any], path: str) -> SmtpConfig:
    smtp = SmtpConfig()
    if "host" in data:
        smtp = replace(smtp, host=_string(data["host"], _join(path, "host")))
    if "port" in data:
        smtp = replace(smtp, port=_port(data["port"], _join(path, "port")))
    if "from" in data:
        sender = _string(data["from"], _join(path, "from"))
        if not _EMAIL.fullmatch(sender):
            raise TicketConfigError(_join(path, "from"), f"{sender!r} is not an e-mail address")
        smtp = replace(smtp, sender=sender)
    if "starttls" in data:
        smtp = replace(smtp, starttls=_bool(data["starttls"], _join(path, "starttls")))
    if "username" in data:
        smtp = replace(smtp, username=_string(data["username"], _join(path, "username")))
    if "password_file" in data:
        password_file = Path(_string(data["password_file"], _join(path, "password_file")))
        smtp = replace(smtp, password_file=password_file)
    if "timeout" in data:
        timeout_ms = _duration_ms(data["timeout"], _join(path, "timeout"), positive=True)
        smtp = replace(smtp, timeout_s=timeout_ms / 1000)
    if "ca_file" in data:
        smtp = replace(smtp, ca_file=Path(_string(data["ca_file"], _join(path, "ca_file"))))
    return smtp


# -- alertmanager ------------------------------------------------------------------------


def _alertmanager(value: Any, path: str) -> AlertmanagerConfig:
    data = _mapping(value, path, {"default_level", "level_label", "level_map"})
    config = AlertmanagerConfig()
    if "default_level" in data:
        level = _level(data["default_level"], _join(path, "default_level"))
        config = replace(config, default_level=level)
    if "level_label" in data:
        label = _string(data["level_label"], _join(path, "level_label"))
        config = replace(config, level_label=label)
    if "level_map" in data:
        map_path = _join(path, "level_map")
        level_map = {
            str(name): _level(level, _join(map_path, str(name)))
            for name, level in _mapping(data["level_map"], map_path, None).items()
        }
        config = replace(config, level_map=level_map)
    return config


# -- scalar readers ----------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mapping(value: Any, path: str, allowed: set[str] | None) -> dict[Any, Any]:
    """``value`` as a mapping; unknown keys (when ``allowed`` is given) are errors."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TicketConfigError(path, f"must be a mapping, not {type(value).__name__}")
    if allowed is not None:
        for key in value:
            if key not in allowed:
                expected = ", ".join(sorted(allowed))
                raise TicketConfigError(
                    _join(path, str(key)), f"unknown key; expected one of: {expected}"
                )
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TicketConfigError(path, f"must be a non-empty string, not {value!r}")
    return value.strip()


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise TicketConfigError(path, f"must be true or false, not {value!r}")
    return value


def _port(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise TicketConfigError(path, f"must be a port number 1-65535, not {value!r}")
    return value


def _fraction(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise TicketConfigError(
            path, f"must be a number between 0 and 1 (exclusive), not {value!r}"
        )
    return float(value)


def _level(value: Any, path: str) -> Level:
    text = str(value).strip().lower() if not isinstance(value, bool) else ""
    for level in LEVELS:
        if text == level:
            return level
    raise TicketConfigError(path, f"unknown fault level {value!r}; {_LEVEL_HELP}")


def _duration_ms(value: Any, path: str, positive: bool = False) -> int:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise TicketConfigError(path, str(exc)) from None
    if positive and seconds <= 0:
        raise TicketConfigError(path, f"must be longer than 0, not {value!r}")
    return round(seconds * 1000)
