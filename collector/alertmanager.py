"""Alertmanager webhook payloads: authentication, strict parsing, mapping to tickets.

Pure functions (no HTTP server, no store): the collector's webhook endpoint calls
``check_bearer`` with the Authorization header, ``parse_payload`` with the body, then
for each alert ``ticket_fields`` (firing: open or add to the ticket) — the ticket
service does the rest. Everything wrong with a request is ``InvalidRequest`` (HTTP 400)
or ``Unauthenticated`` (HTTP 401), with a message that names the field, e.g.
``alerts[2].labels: expected an object``.

The payload is Alertmanager's webhook format, version "4"::

    {"version": "4", "groupKey": str, "truncatedAlerts": int,
     "status": "firing"|"resolved", "receiver": str,
     "groupLabels": {str: str}, "commonLabels": {...}, "commonAnnotations": {...},
     "externalURL": str,
     "alerts": [{"status": "firing"|"resolved", "labels": {...}, "annotations": {...},
                 "startsAt": RFC 3339, "endsAt": RFC 3339, "generatorURL": str,
                 "fingerprint": str}, ...]}

``groupKey``, ``truncatedAlerts`` and ``commonAnnotations`` are optional (older
releases omit some); unknown fields are ignored (Grafana adds its own). Times are
RFC 3339 with up to nine fractional digits; ``0001-01-01T00:00:00Z`` (Go's zero time)
means "unset" and becomes None.

Label conventions (see docs/alertmanager.md): ``customer`` (required — a ticket
belongs to a customer, so an alert without it is refused), ``host`` or ``instance``
(the host name on the ticket), ``severity`` (the fault level, via ``level_for``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from collector.errors import InvalidRequest, Unauthenticated
from collector.tickets.model import Level, NewTicket

__all__ = [
    "DEFAULT_LEVELS",
    "MAX_PAYLOAD_BYTES",
    "Alert",
    "AlertStatus",
    "AlertmanagerPayload",
    "check_bearer",
    "level_for",
    "parse_payload",
    "parse_time_ms",
    "ticket_fields",
]

AlertStatus = Literal["firing", "resolved"]
MAX_PAYLOAD_BYTES = 1 << 20

# Common severity label values → fault levels (SERVICE-COMMITMENTS.md); "1".."4" also
# work as values. Case-insensitive. Anything else gets level_for's default.
DEFAULT_LEVELS: Mapping[str, Level] = {
    "critical": "1",
    "emergency": "1",
    "page": "1",
    "major": "2",
    "high": "2",
    "error": "2",
    "warning": "3",
    "minor": "3",
    "medium": "3",
    "info": "4",
    "low": "4",
    "1": "1",
    "2": "2",
    "3": "3",
    "4": "4",
}

_TITLE_MAX = 200
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_GO_ZERO_TIME_MS = -62135596800000  # 0001-01-01T00:00:00Z in unix ms
_MS = dt.timedelta(milliseconds=1)


@dataclass(frozen=True)
class Alert:
    """One alert of a notification. ``ends_ms`` is None while Alertmanager does not
    know an end (it is often set for firing alerts too: the resolve timeout)."""

    status: AlertStatus
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_ms: int
    ends_ms: int | None
    generator_url: str
    fingerprint: str

    @property
    def name(self) -> str:
        """The alert's name (label ``alertname``); "" if missing."""
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class AlertmanagerPayload:
    """One webhook notification: a group of alerts sharing the route's group labels."""

    version: str
    receiver: str
    status: AlertStatus
    alerts: tuple[Alert, ...]
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    external_url: str
    group_key: str = ""
    truncated_alerts: int = 0


# -- authentication -------------------------------------------------------------------


def check_bearer(header_value: str | None, expected_tokens: Collection[str]) -> None:
    """Accept ``Authorization: Bearer <token>`` when the token is one of
    ``expected_tokens`` (several, so a token can be rotated without downtime).

    Every expected token is compared in constant time (``hmac.compare_digest`` over
    SHA-256 digests), so the answer's timing says nothing about how much of a token
    matched, nor about its length. Raises
    Unauthenticated for a missing header, another scheme, or an unknown token — and
    when no tokens are configured at all (the webhook is then closed, never open).
    """
    if not expected_tokens:
        raise Unauthenticated(
            "the Alertmanager webhook has no tokens configured, so it accepts no requests; "
            "configure one and put it in Alertmanager's http_config.authorization"
        )
    if not header_value:
        raise Unauthenticated("missing Authorization header; send 'Authorization: Bearer TOKEN'")
    scheme, _, token = header_value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization must be 'Bearer TOKEN'")
    offered = _digest(token.strip())
    matched = False
    for expected in expected_tokens:  # no early exit: every token is compared
        matched |= hmac.compare_digest(offered, _digest(expected))
    if not matched:
        raise Unauthenticated(
            "unknown bearer token; check the credentials_file in Alertmanager's http_config"
        )


def _digest(token: str) -> bytes:
    """Equal-length values to compare, whatever the tokens' lengths."""
    return hashlib.sha256(token.encode("utf-8")).digest()


# -- parsing --------------------------------------------------------------------------


def parse_payload(body: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> AlertmanagerPayload:
    """Parse and validate one webhook body (see the module docstring for the shape).

    Raises InvalidRequest naming the offending field: body over ``max_bytes``, not
    UTF-8 JSON, not an object, version other than "4", a required field missing, a
    field of the wrong type, an unknown status or a malformed time.
    """
    document = _load(body, max_bytes)
    version = _string(document, "version", "")
    if version != "4":
        raise InvalidRequest(
            f'version: expected "4" (Alertmanager\'s webhook format), got {version!r}'
        )
    raw_alerts = _required(document, "alerts", "")
    if not isinstance(raw_alerts, list):
        raise InvalidRequest(f"alerts: expected an array, got {_kind(raw_alerts)}")
    return AlertmanagerPayload(
        version=version,
        receiver=_string(document, "receiver", ""),
        status=_status(document, ""),
        alerts=tuple(_alert(item, f"alerts[{i}]") for i, item in enumerate(raw_alerts)),
        group_labels=_string_map(document, "groupLabels", ""),
        common_labels=_string_map(document, "commonLabels", ""),
        common_annotations=_string_map(document, "commonAnnotations", "", optional=True),
        external_url=_string(document, "externalURL", ""),
        group_key=_string(document, "groupKey", "", optional=True),
        truncated_alerts=_count(document, "truncatedAlerts", ""),
    )


def parse_time_ms(text: str, field: str = "time") -> int | None:
    """RFC 3339 text → unix ms (sub-millisecond digits truncated); Go's zero time
    ``0001-01-01T00:00:00Z`` → None. Raises InvalidRequest naming ``field``."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise InvalidRequest(
            f"{field}: expected an RFC 3339 time like 2024-05-01T12:00:00.123Z, got {text!r}"
        )
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    try:
        local = dt.datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise InvalidRequest(f"{field}: {text!r} is not a valid time ({exc})") from exc
    # Naive arithmetic: no overflow near year 1 or 9999, whatever the offset.
    ms = (local - dt.datetime(1970, 1, 1)) // _MS - _utc_offset(match, field) // _MS
    ms += int((match.group(7) or "0").ljust(3, "0")[:3])
    return None if ms == _GO_ZERO_TIME_MS else ms


def _utc_offset(match: re.Match[str], field: str) -> dt.timedelta:
    zulu, sign, hours, minutes = match.group(8, 9, 10, 11)
    if zulu:
        return dt.timedelta(0)
    if int(hours) > 23 or int(minutes) > 59:
        raise InvalidRequest(f"{field}: {match.group(0)!r} has an invalid UTC offset")
    offset = dt.timedelta(hours=int(hours), minutes=int(minutes))
    return -offset if sign == "-" else offset


def _load(body: bytes, max_bytes: int) -> dict[str, Any]:
    if len(body) > max_bytes:
        raise InvalidRequest(f"payload is {len(body)} bytes; the limit is {max_bytes}")
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"payload is not UTF-8 text: {exc}") from exc
    except ValueError as exc:  # json.JSONDecodeError, or NaN/Infinity refused
        raise InvalidRequest(f"payload is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidRequest("payload is nested too deeply to be an Alertmanager webhook") from exc
    if not isinstance(document, dict):
        raise InvalidRequest(f"payload: expected a JSON object, got {_kind(document)}")
    return document


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _alert(item: object, path: str) -> Alert:
    if not isinstance(item, dict):
        raise InvalidRequest(f"{path}: expected an object, got {_kind(item)}")
    starts_ms = parse_time_ms(_string(item, "startsAt", path), f"{path}.startsAt")
    if starts_ms is None:
        raise InvalidRequest(f"{path}.startsAt: must be set (got the zero time)")
    return Alert(
        status=_status(item, path),
        labels=_string_map(item, "labels", path),
        annotations=_string_map(item, "annotations", path),
        starts_ms=starts_ms,
        ends_ms=parse_time_ms(_string(item, "endsAt", path), f"{path}.endsAt"),
        generator_url=_string(item, "generatorURL", path),
        fingerprint=_fingerprint(item, path),
    )


def _fingerprint(item: dict[str, Any], path: str) -> str:
    value = _string(item, "fingerprint", path)
    if not value.strip():
        raise InvalidRequest(f"{path}.fingerprint: must not be empty")
    return value


def _dotted(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _required(document: dict[str, Any], key: str, path: str) -> Any:
    if key not in document:
        raise InvalidRequest(f"{_dotted(path, key)}: missing")
    return document[key]


def _string(document: dict[str, Any], key: str, path: str, *, optional: bool = False) -> str:
    if optional and key not in document:
        return ""
    value = _required(document, key, path)
    if not isinstance(value, str):
        raise InvalidRequest(f"{_dotted(path, key)}: expected a string, got {_kind(value)}")
    return value


def _status(document: dict[str, Any], path: str) -> AlertStatus:
    value = _string(document, "status", path)
    if value == "firing":
        return "firing"
    if value == "resolved":
        return "resolved"
    raise InvalidRequest(
        f'{_dotted(path, "status")}: expected "firing" or "resolved", got {value!r}'
    )


def _string_map(
    document: dict[str, Any], key: str, path: str, *, optional: bool = False
) -> dict[str, str]:
    if optional and key not in document:
        return {}
    where = _dotted(path, key)
    value = _required(document, key, path)
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}: expected an object, got {_kind(value)}")
    for name, item in value.items():
        if not isinstance(item, str):
            raise InvalidRequest(f"{where}.{name}: expected a string, got {_kind(item)}")
    return dict(value)


def _count(document: dict[str, Any], key: str, path: str) -> int:
    value = document.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest(f"{_dotted(path, key)}: expected a count (integer >= 0)")
    return value


def _kind(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# -- mapping to tickets ---------------------------------------------------------------


def level_for(
    alert: Alert,
    level_label: str = "severity",
    mapping: Mapping[str, Level] = DEFAULT_LEVELS,
    default: Level = "3",
) -> Level:
    """The fault level for an alert: its ``level_label`` value looked up in
    ``mapping`` (exact first, then lower-cased, trimmed); ``default`` if the label is
    missing or unmapped."""
    value = alert.labels.get(level_label)
    if value is None:
        return default
    found = mapping.get(value)
    if found is None:
        found = mapping.get(value.strip().lower())
    return default if found is None else found


def ticket_fields(alert: Alert, level: Level) -> NewTicket:
    """What a ticket opened for this alert holds.

    customer: label ``customer`` (required: InvalidRequest without it); title:
    annotation ``summary``, else the alert name (and host), shortened to 200
    characters; description: annotation ``description`` (plus the generator URL);
    hostname: label ``host``, else ``instance`` without its port; rule: the alert
    name; dedup_key: ``am:`` + fingerprint; labels: all the alert's labels.
    """
    customer = alert.labels.get("customer", "").strip()
    if not customer:
        raise InvalidRequest(
            f"alert {alert.name or alert.fingerprint!r} has no 'customer' label; every "
            f"ticket belongs to a customer — add the label in Prometheus (external_labels, "
            f"relabelling or the rule's labels)"
        )
    hostname = _hostname(alert.labels)
    return NewTicket(
        customer=customer,
        title=_title(alert, hostname),
        level=level,
        source="alertmanager",
        description=_description(alert),
        hostname=hostname,
        rule=alert.name or None,
        dedup_key=f"am:{alert.fingerprint}",
        labels=dict(alert.labels),
    )


def _hostname(labels: Mapping[str, str]) -> str:
    host = labels.get("host", "").strip()
    if host:
        return host
    instance = labels.get("instance", "").strip()
    if instance.startswith("["):  # [IPv6]:port
        return instance[1:].partition("]")[0]
    name, colon, port = instance.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else instance


def _title(alert: Alert, hostname: str) -> str:
    summary = " ".join(alert.annotations.get("summary", "").split())
    if not summary:
        name = alert.name or "Alertmanager alert"
        summary = f"{name} on {hostname}" if hostname else name
    return summary if len(summary) <= _TITLE_MAX else summary[: _TITLE_MAX - 1] + "…"


def _description(alert: Alert) -> str:
    text = alert.annotations.get("description", "").strip()
    if alert.generator_url:
        text = f"{text}\n\nSource: {alert.generator_url}" if text else alert.generator_url
    return text
