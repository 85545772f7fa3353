"""Reading a composed PyYAML node tree, every problem reported as ``SOURCE:LINE: message``.

The rule files (``collector.rules.loader``) and the playbooks (``playbooks.loader``) are
composed, not constructed, so that every key and value keeps its line; their schemas are
then checked by hand. This module is the shared, schema-free part: ``NodeReader`` (one
file's problems, and readers for lists, scalars, strings, numbers, durations … that
report a problem on the node's line and raise ``Invalid``), ``attempt`` (a reader's
result or None), ``by_line`` (messages in line order) and ``suggest`` (" (did you mean
…?)"). Each loader subclasses ``NodeReader`` with its own mappings and domain values.

This module imports PyYAML: only the two loaders import it (the agent does not load
PyYAML at start-up).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection
from typing import ParamSpec, TypeVar, cast

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from common.durations import parse_duration

__all__ = ["Entries", "Invalid", "NodeReader", "attempt", "by_line", "suggest"]

Entries = dict[str, tuple[ScalarNode, Node]]
"""A mapping's entries: key -> (key node, value node)."""

_T = TypeVar("_T")
_P = ParamSpec("_P")


class Invalid(Exception):
    """The value was reported as a problem; skip what depends on it."""


def attempt(read: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T | None:
    """``read(*args, **kwargs)``, or None if it reported a problem (raised Invalid)."""
    try:
        return read(*args, **kwargs)
    except Invalid:
        return None


def by_line(messages: list[str]) -> list[str]:
    """Messages (``SOURCE:LINE: message``) ordered by line number (stable); a message
    without a line comes first."""

    def line(message: str) -> int:
        match = re.match(r"[^\n]*?:(\d+): ", message)
        return int(match.group(1)) if match else 0

    return sorted(messages, key=line)


def suggest(word: str, choices: Collection[str]) -> str:
    """`` (did you mean 'CHOICE'?)`` for the choice closest to ``word``, or ``""``."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class NodeReader:
    """Reads the YAML nodes of one file named ``source``, collecting problems.

    The readers (``key``, ``sequence``, ``scalar``, ``string``, ``number`` …) return the
    value, or report a problem (``SOURCE:LINE: message``, in ``problems``) and raise
    ``Invalid``. ``key_of`` maps id(value node) -> its key node, for subclasses reading
    mappings that report on the line naming a value."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        self.key_of: dict[int, Node] = {}
        self._constructor = SafeConstructor()

    # -- reporting -----------------------------------------------------------------

    def where(self, node: Node, offset_lines: int = 0) -> str:
        """``SOURCE:LINE`` of ``node`` (``offset_lines`` further down)."""
        return f"{self.source}:{node.start_mark.line + 1 + offset_lines}"

    def error(self, node: Node, message: str, offset_lines: int = 0) -> Invalid:
        """Reports ``message`` on the line of ``node``; returns the Invalid to raise."""
        self.problems.append(f"{self.where(node, offset_lines)}: {message}")
        return Invalid(message)

    def problem(self, line: int | None, message: str) -> None:
        """Reports ``message`` on ``line`` (None: the file as a whole, no line)."""
        where = self.source if line is None else f"{self.source}:{line}"
        self.problems.append(f"{where}: {message}")

    # -- the document --------------------------------------------------------------

    def compose_text(
        self,
        text: str,
        *,
        empty: str,
        check: Callable[[str], bool] | None = None,
        unplaced_line: int | None = None,
    ) -> Node | None:
        """The node tree of ``text``, or None with the problem reported: a syntax error
        on its line, another YAML error on ``unplaced_line``, an empty document as
        ``empty`` on line 1. ``check(text)`` (if given) runs first; False stops."""
        try:
            if check is not None and not check(text):
                return None
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "invalid YAML"
            self.problem(mark.line + 1 if mark is not None else 1, f"YAML syntax error: {problem}")
            return None
        except yaml.YAMLError as exc:
            self.problem(unplaced_line, f"YAML error: {exc}")
            return None
        if root is None:
            self.problem(1, empty)
        return root

    # -- node readers: each reports a problem and raises Invalid ---------------------

    def key(self, node: Node) -> str:
        """A mapping key: a scalar, as written."""
        if not isinstance(node, ScalarNode):
            raise self.error(node, f"keys must be words, got {self.describe(node)}")
        return str(node.value)

    def sequence(self, node: Node, what: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            raise self.error(node, f"{what} must be a list, got {self.describe(node)}")
        return list(node.value)

    def scalar(self, node: Node) -> object:
        """The value YAML makes of a scalar node (other nodes are returned as they are)."""
        if not isinstance(node, ScalarNode):
            return node
        try:
            return cast(object, self._constructor.construct_object(node))
        except ConstructorError as exc:
            raise self.error(node, f"unsupported YAML value: {exc.problem}") from exc

    def describe(self, node: Node) -> str:
        """What ``node`` is, for messages: ``a mapping``, ``a list``, ``int 3`` …"""
        if isinstance(node, MappingNode):
            return "a mapping"
        if isinstance(node, SequenceNode):
            return "a list"
        try:
            value = self.scalar(node)
        except Invalid:
            return repr(node.value)
        return "nothing" if value is None else f"{type(value).__name__} {value!r}"

    def string(self, node: Node, what: str, *, empty: bool = False) -> str:
        """A string, non-empty unless ``empty``."""
        value = self.scalar(node)
        if not isinstance(value, str) or (not value and not empty):
            raise self.error(node, f"{what} must be a non-empty string, got {self.describe(node)}")
        return value

    def text(self, node: Node, what: str) -> str:
        """A scalar's source text, whatever YAML would make of it (label values)."""
        if not isinstance(node, ScalarNode):
            raise self.error(node, f"{what} must be a string, got {self.describe(node)}")
        self.scalar(node)
        return str(node.value)

    def word(self, node: Node, what: str) -> str:
        """A string or number scalar, as written (argv elements, env values, choices)."""
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(node, f"{what} must be a string (quote it), got {self.describe(node)}")
        assert isinstance(node, ScalarNode)
        return str(node.value)

    def pattern(self, node: Node, what: str, pattern: re.Pattern[str], hint: str) -> str:
        """A non-empty string that ``pattern`` matches in full (``hint`` says how)."""
        value = self.string(node, what)
        if not pattern.fullmatch(value):
            raise self.error(node, f"{what} {value!r} is not valid: {hint}")
        return value

    def regex(self, node: Node, what: str) -> str:
        """A non-empty string that compiles as a regular expression."""
        text = self.string(node, what)
        try:
            re.compile(text)
        except (re.error, OverflowError, RecursionError) as exc:  # a{99999999999}: Overflow
            raise self.error(node, f"{what} is not a valid regular expression: {exc}") from exc
        return text

    def number(self, node: Node, what: str) -> float:
        """A finite int or float (not a boolean)."""
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(node, f"{what} must be a number, got {self.describe(node)}")
        if not math.isfinite(value):
            raise self.error(node, f"{what} must be a finite number, got {value!r}")
        return float(value)

    def integer(self, node: Node, what: str) -> int:
        """A whole number (not a boolean)."""
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(node, f"{what} must be a whole number, got {self.describe(node)}")
        return value

    def boolean(self, node: Node, what: str) -> bool:
        value = self.scalar(node)
        if not isinstance(value, bool):
            raise self.error(node, f"{what} must be true or false, got {self.describe(node)}")
        return value

    def duration(
        self, node: Node, what: str, *, positive: bool = False, maximum: float | None = None
    ) -> float:
        """Seconds of a duration (``30s``, ``5m``, a number of seconds): longer than 0 if
        ``positive``; longer than 0 and at most ``maximum`` seconds if that is given."""
        value = self.scalar(node)
        try:
            seconds = parse_duration(cast(str | float, value))
        except ValueError as exc:
            raise self.error(node, f"{what}: {exc}") from exc
        if maximum is not None and not 0 < seconds <= maximum:
            raise self.error(node, f"{what} must be longer than 0 and at most {maximum:g}s")
        if positive and seconds <= 0:
            raise self.error(node, f"{what} must be longer than 0")
        return seconds
