"""Secret redaction applied on the agent to every byte of playbook output before it leaves.

A ``Redactor`` is an immutable set of rules: the built-in rules of
``agent.playbook.redact_rules`` (secret keys and flags, program password options,
URL credentials, HTTP authorization, token formats; listed in docs/playbooks.md), a
playbook's own ``redact`` regexes and the literal values of its ``secret`` parameters
(``Redactor.extended``). Output arrives in arbitrary
chunks, so redaction runs through a per-stream ``StreamRedactor`` that

* redacts complete lines only and carries the partial last line into the next
  chunk, so a secret split across two chunks is still found (every rule is
  line-local: none of them matches across a newline);
* swallows PEM private-key blocks (``-----BEGIN ... PRIVATE KEY-----`` through
  ``-----END ... PRIVATE KEY-----``) with a small state machine, however many
  chunks and lines they span; a block that never ends is never emitted;
* keeps its memory bounded: a "line" longer than ``MAX_LINE`` bytes is flushed in
  pieces, holding back the last ``HOLD`` bytes (and never cutting through a match)
  so that a secret straddling the flush point is still found whole. Only a single
  secret value longer than ``MAX_LINE - HOLD`` bytes can be cut, and then its tail
  may be emitted.

Every replacement writes ``[REDACTED]`` and counts one redaction (a PEM block counts
one). A rule with capturing groups replaces only the text of its groups (so
``password=hunter2`` becomes ``password=[REDACTED]``); a rule without groups
replaces the whole match. Text that is already ``[REDACTED]`` is not counted again.
Patterns are bytes regexes: playbook patterns are compiled from their UTF-8 form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from agent.playbook.errors import RedactPatternError
from agent.playbook.redact_rules import MARKER, PatternRule, Rule, all_spans, default_rules

if TYPE_CHECKING:  # keeps the playbooks package (YAML, signatures) out of the agent at run time
    from playbooks.model import Playbook

__all__ = [
    "HOLD",
    "MARKER",
    "MAX_LINE",
    "Redactor",
    "StreamRedactor",
    "secret_values",
]

MAX_LINE = 64 * 1024  # a partial line longer than this is flushed in pieces
HOLD = 4096  # bytes held back at such a flush; longer than any key, marker or token
_PEM_TAIL = 128  # bytes kept while discarding a PEM body: longer than an END line

_PEM_BEGIN = re.compile(rb"-----BEGIN (?:[A-Z0-9]{1,20} ){0,4}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(rb"-----END (?:[A-Z0-9]{1,20} ){0,4}PRIVATE KEY(?: BLOCK)?-----")


class _Rules:
    """Line-local rules (``agent.playbook.redact_rules``), applied one after the other."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules

    def apply(self, text: bytes) -> tuple[bytes, int]:
        """``text`` with every match redacted, and the number of replacements."""
        if not text:
            return text, 0
        lowered = text.lower()  # for the rules' trigger words; redaction adds none
        count = 0
        for rule in self.rules:
            text, n = rule.apply(text, lowered)
            count += n
        return text, count

    def cut_point(self, text: bytes, cut: int) -> int:
        """The largest position ``<= cut`` that lies inside no match of any rule."""
        spans = all_spans(self.rules, text)
        moved = True
        while moved:
            moved = False
            for start, end in spans:
                if start < cut < end:
                    cut, moved = start, True
        return cut


class StreamRedactor:
    """Redacts one output stream chunk by chunk; see the module docstring.

    ``feed`` returns the redacted bytes that are safe to emit now; ``finish`` (at
    end of stream) returns the rest. ``redactions`` counts replacements so far.
    """

    def __init__(self, rules: _Rules) -> None:
        self._rules = rules
        self._pending = b""
        self._in_pem = False
        self.redactions = 0

    def feed(self, data: bytes) -> bytes:
        buffer = self._pending + data
        newline = buffer.rfind(b"\n")
        out = self._lines(buffer[: newline + 1]) if newline >= 0 else b""
        return out + self._partial(buffer[newline + 1 :])

    def finish(self) -> bytes:
        """Redact and return what is left; a PEM block still open is dropped."""
        rest, self._pending = self._pending, b""
        return self._lines(rest)

    def _apply(self, text: bytes) -> bytes:
        redacted, count = self._rules.apply(text)
        self.redactions += count
        return redacted

    def _lines(self, block: bytes) -> bytes:
        """Redact ``block``, which ends at a line end (or at the end of the stream)."""
        out: list[bytes] = []
        position = 0
        while position < len(block):
            if self._in_pem:
                end = _PEM_END.search(block, position)
                if end is None:
                    break
                position, self._in_pem = end.end(), False
                continue
            begin = _PEM_BEGIN.search(block, position)
            if begin is None:
                out.append(self._apply(block[position:]))
                break
            out += [self._apply(block[position : begin.start()]), MARKER]
            self.redactions += 1
            position, self._in_pem = begin.end(), True
        return b"".join(out)

    def _partial(self, rest: bytes) -> bytes:
        """Keep the partial last line, flushing a bounded prefix if it is too long."""
        out: list[bytes] = []
        while True:
            if self._in_pem:
                end = _PEM_END.search(rest)
                if end is None:
                    self._pending = rest[-_PEM_TAIL:]
                    break
                rest, self._in_pem = rest[end.end() :], False
                continue
            begin = _PEM_BEGIN.search(rest)
            if begin is not None:
                out += [self._apply(rest[: begin.start()]), MARKER]
                self.redactions += 1
                rest, self._in_pem = rest[begin.end() :], True
                continue
            if len(rest) <= MAX_LINE:
                self._pending = rest
                break
            cut = self._rules.cut_point(rest, len(rest) - HOLD)
            if cut <= 0:  # one match fills the window: cut through it
                cut = len(rest) - HOLD
            out.append(self._apply(rest[:cut]))
            self._pending = rest[cut:]
            break
        return b"".join(out)


class Redactor:
    """An immutable rule set; ``stream()`` starts redacting one output stream.

    ``patterns`` are extra regexes (str or bytes) on top of the built-in rules
    (unless ``defaults`` is False); ``literals`` are exact values to redact (secret
    parameters). Raises RedactPatternError for a pattern that does not compile or
    that matches the empty string.
    """

    def __init__(
        self,
        patterns: Iterable[str | bytes] = (),
        *,
        literals: Iterable[str | bytes] = (),
        defaults: bool = True,
    ) -> None:
        self._extra = tuple(_as_bytes(p) for p in patterns)
        self._literals = tuple(sorted({_as_bytes(v) for v in literals if v}, key=len, reverse=True))
        self._defaults = defaults
        compiled: list[Rule] = [PatternRule(_compile(p)) for p in self._extra]
        if self._literals:
            exact = re.compile(b"|".join(re.escape(v) for v in self._literals))
            compiled.insert(0, PatternRule(exact))
        builtin = default_rules() if defaults else ()
        self._rules = _Rules((*compiled, *builtin))

    def extended(
        self, patterns: Iterable[str | bytes] = (), literals: Iterable[str | bytes] = ()
    ) -> Redactor:
        """A redactor with these rules added to this one's."""
        return Redactor(
            (*self._extra, *patterns),
            literals=(*self._literals, *literals),
            defaults=self._defaults,
        )

    def stream(self) -> StreamRedactor:
        """A fresh redactor for one output stream."""
        return StreamRedactor(self._rules)

    def redact(self, data: bytes) -> tuple[bytes, int]:
        """Redact a complete text at once; returns it and the number of replacements."""
        stream = self.stream()
        out = stream.feed(data) + stream.finish()
        return out, stream.redactions

    def redact_text(self, text: str) -> str:
        """Redact a short complete string (an error message, say)."""
        return self.redact(text.encode("utf-8", "surrogateescape"))[0].decode(
            "utf-8", "surrogateescape"
        )


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _compile(pattern: bytes) -> re.Pattern[bytes]:
    shown = pattern.decode("utf-8", "replace")
    try:
        compiled = re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:  # a{99999999999}: Overflow
        raise RedactPatternError(f"redact pattern {shown!r} does not compile: {exc}") from exc
    if compiled.search(b"") is not None:
        raise RedactPatternError(f"redact pattern {shown!r} matches the empty string")
    return compiled


def secret_values(playbook: Playbook, values: Mapping[str, object]) -> tuple[str, ...]:
    """The rendered values of ``playbook``'s ``secret`` parameters, for ``literals``."""
    secrets = []
    for name, value in values.items():
        parameter = playbook.parameter(name)
        if parameter is not None and parameter.secret and value is not None and str(value):
            secrets.append(str(value))
    return tuple(secrets)
