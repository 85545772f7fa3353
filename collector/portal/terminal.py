"""A session's terminal as plain text for the portal: what the recordings show so far.

The page has no script, so it cannot run a terminal emulator: the recorded output of
every part is joined, escape sequences (colours, cursor moves, titles) are removed,
carriage returns dropped, and only the last ``MAX_CHARS`` kept. While the session is
live the page reloads itself (``<meta http-equiv="refresh">``), which is a read-only
live view; the recording files themselves are what ``aftercare session replay`` plays.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from collector.gateway.recording import recorded_events
from collector.store.base import RecordingRecord

__all__ = ["MAX_CHARS", "TerminalText", "terminal_text"]

MAX_CHARS = 64 * 1024
# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), other two-character escapes
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class TerminalText:
    """The visible text of a session's recordings so far."""

    text: str
    parts: int
    cut: bool  # older output left out (more than MAX_CHARS)


def plain(output: str) -> str:
    """Terminal output without escape sequences and control characters (newlines kept)."""
    return _CONTROL.sub("", _ESCAPES.sub("", output.replace("\r\n", "\n")))


def terminal_text(records: Sequence[RecordingRecord], data_dir: Path) -> TerminalText:
    """The output of every recorded part, in order, as plain text (the last MAX_CHARS)."""
    chunks: list[str] = []
    for record in sorted(records, key=lambda r: r.part):
        chunks.extend(
            data for _, kind, data in recorded_events(data_dir / record.path) if kind == "o"
        )
        chunks.append("\n")
    text = plain("".join(chunks))
    cut = len(text) > MAX_CHARS
    return TerminalText(text[-MAX_CHARS:], len(records), cut)
