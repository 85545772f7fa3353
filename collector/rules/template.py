"""The annotation template mini-language: ``{{ name }}`` or ``{{ name | filter }}``.

Deliberately not Jinja: there are no expressions, attribute access, loops or calls,
only a fixed set of named values and formatting filters. Templates are parsed when the
rule file loads, so an unknown placeholder or filter is a load-time error and never
reaches a ticket. Rendering cannot fail and cannot run code.

Grammar (whitespace inside the braces is optional)::

    template    := (text | placeholder)*
    placeholder := "{{" name ["." label] ["|" filter ["(" digits ")"]] "}}"

Numbers: ``value``, ``threshold``, ``level``, ``eta`` (predict rules only). Text:
``host``, ``customer``, ``agent_id``, ``rule``, ``labels.NAME``. Filters apply to
numbers only: ``percent`` (0.923 -> "92.3%"), ``bytes`` (1536 -> "1.5 KiB"),
``duration`` (seconds: 5400 -> "1h 30m"), ``round`` (to N decimals, default 0).
A number without a filter renders with up to four significant digits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

__all__ = [
    "FILTERS",
    "NUMBER_FIELDS",
    "TEXT_FIELDS",
    "Placeholder",
    "Template",
    "TemplateContext",
    "TemplateError",
    "format_bytes",
    "format_duration",
    "format_number",
    "parse_template",
]

NUMBER_FIELDS = frozenset({"value", "threshold", "level", "eta"})
TEXT_FIELDS = frozenset({"host", "customer", "agent_id", "rule"})
FILTERS = frozenset({"percent", "bytes", "duration", "round"})
_DIGITS_MAX = 6

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_INSIDE = re.compile(
    r"\s*(?P<field>[A-Za-z_]\w*)(?:\.(?P<label>[A-Za-z_]\w*))?\s*"
    r"(?:\|\s*(?P<filter>[A-Za-z_]\w*)\s*(?:\(\s*(?P<arg>\d+)\s*\))?\s*)?"
)


class TemplateError(ValueError):
    """A template that does not parse; ``offset`` is where in the text it went wrong."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class TemplateContext:
    """The values a template may show, for one alert."""

    host: str
    customer: str
    agent_id: str
    rule: str
    level: int
    value: float
    threshold: float
    labels: Mapping[str, str]
    eta: float = math.inf


@dataclass(frozen=True)
class Placeholder:
    """``{{ field[.label] [| filter[(digits)]] }}``, already checked."""

    field: str
    label: str | None = None
    filter: str | None = None
    digits: int | None = None

    def render(self, context: TemplateContext) -> str:
        """The placeholder's text for ``context`` (a missing label renders empty)."""
        if self.field == "labels":
            return context.labels.get(self.label or "", "")
        if self.field in TEXT_FIELDS:
            text: str = getattr(context, self.field)
            return text
        number = float(getattr(context, self.field))
        return _apply_filter(self.filter, self.digits, number)


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and placeholders, in order."""

    source: str
    parts: tuple[str | Placeholder, ...] = field(compare=False, repr=False)

    def render(self, context: TemplateContext) -> str:
        """The text with every placeholder replaced."""
        return "".join(p if isinstance(p, str) else p.render(context) for p in self.parts)

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        """The template's placeholders, in order."""
        return tuple(p for p in self.parts if isinstance(p, Placeholder))


def parse_template(
    source: str, *, fields: Collection[str], labels: Collection[str] | None = None
) -> Template:
    """Parse ``source``; ``fields`` are the allowed names (a subset of the numbers and
    text fields, plus ``labels``), ``labels`` the allowed label names (None: any).

    Raises TemplateError naming the offending placeholder.
    """
    parts: list[str | Placeholder] = []
    position = 0
    for match in _PLACEHOLDER.finditer(source):
        _literal(source, position, match.start(), parts)
        parts.append(_placeholder(match, fields, labels))
        position = match.end()
    _literal(source, position, len(source), parts)
    return Template(source, tuple(parts))


def _literal(source: str, start: int, end: int, parts: list[str | Placeholder]) -> None:
    text = source[start:end]
    if "{{" in text:
        raise TemplateError("'{{' without a closing '}}'", start + text.index("{{"))
    if text:
        parts.append(text)


def _placeholder(
    match: re.Match[str], fields: Collection[str], labels: Collection[str] | None
) -> Placeholder:
    inside, offset = match.group(1), match.start()
    parsed = _INSIDE.fullmatch(inside)
    if parsed is None:
        raise TemplateError(
            f"cannot read placeholder {match.group(0)!r}: use {{{{ name }}}} or "
            f"{{{{ name | filter }}}}",
            offset,
        )
    name, label = parsed.group("field"), parsed.group("label")
    filter_name, arg = parsed.group("filter"), parsed.group("arg")
    _check_field(name, label, fields, labels, offset)
    if filter_name is not None:
        _check_filter(name, filter_name, arg, offset)
    digits = int(arg) if arg is not None else None
    return Placeholder(name, label, filter_name, digits)


def _check_field(
    name: str,
    label: str | None,
    fields: Collection[str],
    labels: Collection[str] | None,
    offset: int,
) -> None:
    shown = name if label is None else f"{name}.{label}"
    if name not in fields:
        allowed = ", ".join(sorted(f if f != "labels" else "labels.NAME" for f in fields))
        raise TemplateError(f"unknown placeholder {shown!r} (known: {allowed})", offset)
    if (name == "labels") != (label is not None):
        raise TemplateError(
            f"placeholder {shown!r}: write labels.NAME for a label, and other names alone",
            offset,
        )
    if label is not None and labels is not None and label not in labels:
        known = ", ".join(sorted(labels)) or "none"
        raise TemplateError(
            f"unknown placeholder {shown!r}: the alert has no label {label!r} "
            f"(its labels: {known})",
            offset,
        )


def _check_filter(name: str, filter_name: str, arg: str | None, offset: int) -> None:
    if filter_name not in FILTERS:
        raise TemplateError(
            f"unknown filter {filter_name!r} (known: {', '.join(sorted(FILTERS))})", offset
        )
    if name not in NUMBER_FIELDS:
        raise TemplateError(f"filter {filter_name!r} needs a number; {name!r} is text", offset)
    if arg is not None and (filter_name not in ("round", "percent") or int(arg) > _DIGITS_MAX):
        raise TemplateError(
            f"filter {filter_name!r} takes no argument"
            if filter_name not in ("round", "percent")
            else f"filter {filter_name!r}: at most {_DIGITS_MAX} decimals",
            offset,
        )


def _apply_filter(name: str | None, digits: int | None, number: float) -> str:
    if not math.isfinite(number):
        return "never" if name == "duration" else str(number)
    if name == "percent":
        return f"{number * 100:.{1 if digits is None else digits}f}%"
    if name == "bytes":
        return format_bytes(number)
    if name == "duration":
        return format_duration(number)
    if name == "round":
        return f"{number:.{digits or 0}f}"
    return format_number(number)


def format_number(number: float) -> str:
    """Whole numbers as integers, others with up to four significant digits."""
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.4g}"


def format_bytes(number: float) -> str:
    """Binary units: 512 -> "512 B", 1536 -> "1.5 KiB", 3e9 -> "2.8 GiB"."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    size, unit = abs(number), 0
    while size >= 1024 and unit < len(units) - 1:
        size /= 1024
        unit += 1
    sign = "-" if number < 0 else ""
    if unit == 0:
        return f"{sign}{size:.0f} B"
    return f"{sign}{size:.1f} {units[unit]}".replace(".0 ", " ")


def format_duration(seconds: float) -> str:
    """The two largest units: 45 -> "45s", 5400 -> "1h 30m", 93784 -> "1d 2h"."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    whole = round(seconds)
    amounts = (
        (whole // 86400, "d"),
        (whole % 86400 // 3600, "h"),
        (whole % 3600 // 60, "m"),
        (whole % 60, "s"),
    )
    first = next(i for i, (count, _) in enumerate(amounts) if count)
    return " ".join(f"{count}{unit}" for count, unit in amounts[first : first + 2] if count)
