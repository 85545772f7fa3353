"""The rule package's exception tree (one class: rules fail in one way, with a list).

    collector.errors.InvalidRequest
    └── RuleFileError       one or more problems in rule files, each ``FILE:LINE: message``

A running collector that gets a ``RuleFileError`` on reload keeps its old rules and
reports ``problems``; at start it refuses to serve. ``warnings`` (unknown metric names
and similar doubts) never make a file invalid; they ride along for the caller to show.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.errors import InvalidRequest

__all__ = ["RuleFileError"]


class RuleFileError(InvalidRequest):
    """Rule files that cannot be used; ``problems`` lists every error found."""

    def __init__(self, problems: Sequence[str], warnings: Sequence[str] = ()) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        self.warnings: tuple[str, ...] = tuple(warnings)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(
            f"invalid rules ({count} {noun}):\n" + "\n".join(f"  {p}" for p in self.problems)
        )
