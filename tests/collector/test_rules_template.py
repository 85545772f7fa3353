"""The annotation template mini-language: rendering, filters and load-time errors."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from collector.rules.template import (
    TemplateContext,
    TemplateError,
    format_bytes,
    format_duration,
    parse_template,
)

FIELDS = {"host", "customer", "agent_id", "rule", "level", "value", "threshold", "labels"}
CONTEXT = TemplateContext(
    host="web1",
    customer="acme",
    agent_id="a-1",
    rule="disk",
    level=3,
    value=0.9234,
    threshold=0.9,
    labels={"mountpoint": "/var"},
)


def render(source: str, **changes: Any) -> str:
    context = dataclasses.replace(CONTEXT, **changes)
    return parse_template(source, fields=FIELDS | {"eta"}).render(context)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("plain text", "plain text"),
        ("", ""),
        ("{{ host }} of {{customer}} ({{ agent_id }})", "web1 of acme (a-1)"),
        ("{{ rule }} L{{ level }}", "disk L3"),
        ("{{ labels.mountpoint }}|{{ labels.nope }}|", "/var||"),
        ("{{ value }}", "0.9234"),
        ("{{ value | percent }}", "92.3%"),
        ("{{ value | percent(0) }}", "92%"),
        ("{{ threshold|percent }}", "90.0%"),
        ("{{ value | round }}", "1"),
        ("{{ value | round(2) }}", "0.92"),
        ("{ single } braces }} stay", "{ single } braces }} stay"),
    ],
)
def test_render(source: str, expected: str) -> None:
    assert render(source) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1536, "1.5 KiB"),
        (2**30, "1 GiB"),
        (3e9, "2.8 GiB"),
        (-2048, "-2 KiB"),
    ],
)
def test_bytes(value: float, expected: str) -> None:
    assert format_bytes(value) == expected
    assert render("{{ value | bytes }}", value=value) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.25, "250ms"),
        (45, "45s"),
        (60, "1m"),
        (125, "2m 5s"),
        (5400, "1h 30m"),
        (3600, "1h"),
        (93784, "1d 2h"),
        (86400 * 3 + 59, "3d"),
        (-90, "-1m 30s"),
    ],
)
def test_duration(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected


def test_infinite_and_nan_values() -> None:
    assert render("{{ eta | duration }}", eta=math.inf) == "never"
    assert render("{{ value }}", value=math.nan) == "nan"


def test_numbers_without_a_filter() -> None:
    assert render("{{ value }}", value=3.0) == "3"
    assert render("{{ value }}", value=123456789.0) == "123456789"
    assert render("{{ value }}", value=0.000123456) == "0.0001235"


@pytest.mark.parametrize(
    ("source", "message", "offset"),
    [
        ("{{ hots }}", "unknown placeholder 'hots'", 0),
        ("ok {{ eta }}", "unknown placeholder 'eta'", 3),
        ("{{ labels }}", "write labels.NAME", 0),
        ("{{ host.name }}", "write labels.NAME", 0),
        ("{{ labels.unit }}", "has no label 'unit'", 0),
        ("{{ value | pct }}", "unknown filter 'pct'", 0),
        ("{{ host | percent }}", "needs a number", 0),
        ("{{ value | bytes(1) }}", "takes no argument", 0),
        ("{{ value | round(9) }}", "at most 6 decimals", 0),
        ("{{ value | round | percent }}", "cannot read placeholder", 0),
        ("{{ value.__class__ }}", "write labels.NAME", 0),
        ("{{ labels.__class__.x }}", "cannot read placeholder", 0),
        ("{{ value() }}", "cannot read placeholder", 0),
        ("abc {{ value", "without a closing", 4),
    ],
)
def test_errors(source: str, message: str, offset: int) -> None:
    with pytest.raises(TemplateError, match=message) as caught:
        parse_template(source, fields=FIELDS, labels={"mountpoint"})
    assert caught.value.offset == offset


def test_templates_compare_by_source() -> None:
    assert parse_template("{{ host }}", fields=FIELDS) == parse_template(
        "{{ host }}", fields={"host"}
    )
