"""The shared YAML node reader: values or ``SOURCE:LINE: message`` problems."""

from __future__ import annotations

import re

import pytest
from yaml.nodes import MappingNode, Node

from playbooks.yamlnodes import Invalid, NodeReader, attempt, by_line, suggest


def compose(text: str) -> tuple[NodeReader, dict[str, Node]]:
    """A reader for ``text`` (a mapping) and its values by key."""
    reader = NodeReader("f.yaml")
    root = reader.compose_text(text, empty="empty")
    assert isinstance(root, MappingNode)
    return reader, {reader.key(k): v for k, v in root.value}


def test_readers_return_values() -> None:
    reader, values = compose(
        "s: text\nn: 1.5\ni: 3\nb: true\nd: 5m\nl: [1, 2]\nw: 007\nr: 'a+'\np: abc\n"
    )
    assert reader.string(values["s"], "s") == "text"
    assert reader.number(values["n"], "n") == 1.5
    assert reader.integer(values["i"], "i") == 3
    assert reader.boolean(values["b"], "b") is True
    assert reader.duration(values["d"], "d", positive=True, maximum=600) == 300.0
    assert len(reader.sequence(values["l"], "l")) == 2
    assert reader.word(values["w"], "w") == "007"
    assert reader.text(values["w"], "w") == "007"
    assert reader.regex(values["r"], "r") == "a+"
    assert reader.pattern(values["p"], "p", re.compile("[a-z]+"), "letters") == "abc"
    assert reader.problems == []


def test_problems_name_the_line_and_raise_invalid() -> None:
    reader, values = compose("a: 1\nb: [x]\nc: ''\nd: yes\n")
    with pytest.raises(Invalid):
        reader.string(values["a"], "a")
    assert attempt(reader.integer, values["b"], "b") is None
    assert attempt(reader.string, values["c"], "c") is None
    assert reader.string(values["c"], "c", empty=True) == ""
    assert attempt(reader.number, values["d"], "d") is None
    assert reader.problems == [
        "f.yaml:1: a must be a non-empty string, got int 1",
        "f.yaml:2: b must be a whole number, got a list",
        "f.yaml:3: c must be a non-empty string, got str ''",
        "f.yaml:4: d must be a number, got bool True",
    ]


def test_duration_limits() -> None:
    reader, values = compose("zero: 0s\nlong: 2h\n")
    assert reader.duration(values["zero"], "zero") == 0.0
    assert attempt(reader.duration, values["zero"], "zero", positive=True) is None
    assert attempt(reader.duration, values["long"], "long", maximum=3600) is None
    assert reader.problems == [
        "f.yaml:1: zero must be longer than 0",
        "f.yaml:2: long must be longer than 0 and at most 3600s",
    ]


def test_compose_reports_syntax_errors_and_empty_documents() -> None:
    reader = NodeReader("f.yaml")
    assert reader.compose_text("a: 1\nb: [\n", empty="empty") is None
    assert reader.compose_text("", empty="nothing here") is None
    assert reader.compose_text("a: \x01\n", empty="empty", unplaced_line=1) is None
    assert reader.compose_text("a: 1\n", empty="empty", check=lambda _: False) is None
    assert [p.split(": ", 2)[:2] for p in reader.problems] == [
        ["f.yaml:3", "YAML syntax error"],
        ["f.yaml:1", "nothing here"],
        ["f.yaml:1", "YAML error"],
    ]


def test_by_line_and_suggest() -> None:
    assert by_line(["f:10: b", "f: whole file", "f:2: a", "f:10: c"]) == [
        "f: whole file",
        "f:2: a",
        "f:10: b",
        "f:10: c",
    ]
    assert suggest("nmae", ("name", "mode")) == " (did you mean 'name'?)"
    assert suggest("zzz", ("name",)) == ""
