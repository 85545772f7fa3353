"""asciicast v2 recordings of terminal sessions (https://docs.asciinema.org, plays in asciinema):
write (``CastWriter``), read (``parse_cast``), replay (``play``) and typed lines
(``typed_entries``).

Shared by the agent (the customer's own copy on the host), the collector's SSH
gateway and the ``aftercare`` client, so it lives in ``common``: standard library only.

A recording is one file: a JSON header line, then one JSON array per event,
``[time, code, data]`` with ``time`` in seconds since the start (rounded to 6
decimals, never decreasing) and ``code`` ``"o"`` (output), ``"i"`` (input) or
``"r"`` (resize, data ``"COLSxROWS"``). Bytes are decoded as UTF-8 incrementally,
so a character split across two chunks comes out whole; undecodable bytes become
U+FFFD. Every event is flushed as it is written, so a crash loses at most the event
being written; ``close`` fsyncs and returns the file's SHA-256 and size.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from common.clock import Clock

__all__ = [
    "CastWriter",
    "Event",
    "RecordingSummary",
    "TypedLine",
    "parse_cast",
    "play",
    "typed_entries",
    "typed_lines",
]

Event = tuple[float, str, str]  # (seconds since start, code, data)

_FILE_MODE = 0o600


@dataclass(frozen=True)
class RecordingSummary:
    """A finished recording: ``sha256`` (hex) and ``size`` (bytes) of the whole file."""

    sha256: str
    size: int


class CastWriter:
    """Writes one asciicast v2 recording (header line + one JSON event per line), flushed per event.

    The file is created with mode 0600 and O_EXCL (an existing file is an error,
    FileExistsError); its parent directory must exist. ``clock`` is monotonic
    seconds (event times are differences of it); ``started_unix`` is the header's
    ``timestamp`` (default: now). Not thread-safe: call it from one thread or task.
    """

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        title: str = "",
        command: str = "",
        record_input: bool = False,
        env: Mapping[str, str] | None = None,
        clock: Clock = time.monotonic,
        started_unix: float | None = None,
    ) -> None:
        self.path = path
        self.record_input = record_input
        self._clock = clock
        self._start = clock()
        self._last = 0.0
        self._output = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._input = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._summary: RecordingSummary | None = None
        header: dict[str, Any] = {
            "version": 2,
            "width": max(1, int(width)),
            "height": max(1, int(height)),
            "timestamp": int(time.time() if started_unix is None else started_unix),
        }
        if title:
            header["title"] = title
        if command:
            header["command"] = command
        if env:
            header["env"] = dict(env)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._size = 0
        self._write_line(header)

    @property
    def closed(self) -> bool:
        return self._summary is not None

    def output(self, data: bytes) -> tuple[float, str] | None:
        """Record terminal output; returns the event written, None if nothing decodable yet."""
        return self._event("o", self._output.decode(data))

    def input(self, data: bytes) -> tuple[float, str] | None:
        """Record typed input (only with ``record_input``; otherwise a no-op returning None)."""
        if not self.record_input:
            return None
        return self._event("i", self._input.decode(data))

    def resize(self, cols: int, rows: int) -> tuple[float, str]:
        """Record a terminal size change as ``"COLSxROWS"`` (not written after close)."""
        text = f"{int(cols)}x{int(rows)}"
        return self._event("r", text, always=True) or (self._last, text)

    def close(self) -> RecordingSummary:
        """Flush what a split UTF-8 sequence left pending (as U+FFFD), fsync, close.

        Idempotent: later calls return the same summary. Events after close are
        ignored (they return None).
        """
        if self._summary is not None:
            return self._summary
        self._event("o", self._output.decode(b"", final=True))
        if self.record_input:
            self._event("i", self._input.decode(b"", final=True))
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._summary = RecordingSummary(self._hash.hexdigest(), self._size)
        return self._summary

    def _event(self, code: str, text: str, *, always: bool = False) -> tuple[float, str] | None:
        if self._summary is not None or (not text and not always):
            return None
        at = max(self._last, round(self._clock() - self._start, 6))
        self._last = at
        self._write_line([at, code, text])
        return at, text

    def _write_line(self, value: object) -> None:
        line = json.dumps(value, ensure_ascii=False, separators=(", ", ": ")).encode() + b"\n"
        self._file.write(line)
        self._file.flush()
        self._hash.update(line)
        self._size += len(line)


def parse_cast(data: bytes) -> tuple[dict[str, Any], list[Event]]:
    """Split an asciicast v2 file into its header and events.

    Raises ValueError saying what is wrong (with the line number) for anything that
    is not asciicast v2. A last line without its newline that is not valid JSON is
    taken as a recording still being written and left out.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not an asciicast file: not UTF-8 text ({exc})") from None
    lines = text.split("\n")
    complete = text.endswith("\n")
    if not text.strip():
        raise ValueError("empty recording: no asciicast header")
    header = _parse_header(lines[0])
    events: list[Event] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines) and not complete:
                break  # the recording is still being written
            raise ValueError(f"line {number}: not JSON ({exc.msg})") from None
        events.append(_event(value, number))
    return header, events


def _parse_header(line: str) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line 1: the asciicast header is not JSON ({exc.msg})") from None
    if isinstance(header, list):
        raise ValueError("line 1: missing asciicast header (the file starts with an event)")
    if not isinstance(header, dict):
        raise ValueError("line 1: the asciicast header is not a JSON object")
    version = header.get("version")
    if version != 2:
        raise ValueError(
            f"line 1: asciicast version {version!r} is not supported (expected version 2)"
        )
    return header


def _event(value: Any, number: int) -> Event:
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError(f"line {number}: an event must be [time, code, data]")
    time, code, data = value
    if isinstance(time, bool) or not isinstance(time, int | float) or time < 0:
        raise ValueError(f"line {number}: the event time {time!r} is not a number of seconds")
    if not isinstance(code, str) or not isinstance(data, str):
        raise ValueError(f"line {number}: the event code and data must be strings")
    return float(time), code, data


# -- reading: replay and typed lines (pure, no I/O) ---------------------------------------


_ESC = "\x1b"
_ENTER = "\r\n"
_BACKSPACE = "\x7f\x08"
_CTRL_C = "\x03"
_CTRL_U = "\x15"
_CTRL_W = "\x17"
_TAB = "\t"
_HARMLESS = "\x04\x0c"  # Ctrl-D (end of input), Ctrl-L (clear screen): the line is unchanged
_PASTE_MARKERS = ("\x1b[200~", "\x1b[201~")  # bracketed paste: the text between is typed


class TypedLine(NamedTuple):
    """One line entered at the keyboard (ended by Enter)."""

    time: float  # the Enter key's event time, seconds since the recording started
    text: str
    uncertain: bool  # tab completion, history recall or cursor keys were used


def play(
    events: Iterable[Event],
    write: Callable[[str], object],
    sleep: Callable[[float], object],
    speed: float = 1.0,
    max_wait: float | None = 2.0,
) -> None:
    """Replay output events with their timing: wait for each gap (capped at
    ``max_wait`` seconds, None for no cap), divided by ``speed``, then ``write`` the
    data of "o" events; other events only advance the clock."""
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    previous = 0.0
    for at, code, data in events:
        gap = max(0.0, at - previous)
        previous = max(previous, at)
        if max_wait is not None:
            gap = min(gap, max_wait)
        if gap > 0:
            sleep(gap / speed)
        if code == "o":
            write(data)


def typed_lines(events: Iterable[Event]) -> list[tuple[float, str]]:
    """The non-empty lines typed, as (time, text); see ``typed_entries``."""
    return [(e.time, e.text) for e in typed_entries(events) if e.text]


def typed_entries(events: Iterable[Event]) -> list[TypedLine]:
    """Reconstruct the lines typed from the "i" events (other events are ignored).

    Characters accumulate until Enter (CR or LF; CRLF counts once); backspace deletes
    one character, Ctrl-W one word, Ctrl-U the whole line; Ctrl-C discards the line.
    Escape sequences (arrow keys, function keys) are dropped and, like Tab, mark the
    line uncertain; other control characters are ignored. Input split across events
    is joined. Empty lines are left out unless uncertain (e.g. history recall + Enter).
    """
    reader = _LineReader()
    for at, code, data in events:
        if code == "i":
            reader.feed(at, data)
    return reader.lines


class _LineReader:
    """The line-editing state machine behind ``typed_entries``."""

    def __init__(self) -> None:
        self.lines: list[TypedLine] = []
        self._chars: list[str] = []
        self._uncertain = False
        self._escape = ""  # an escape sequence read so far (may span events)

    def feed(self, time: float, data: str) -> None:
        for char in data:
            if self._escape:
                self._escape_char(char)
            elif char == _ESC:
                self._escape = char
            elif char in _ENTER:
                self._enter(time)
            elif char in _BACKSPACE:
                if self._chars:
                    self._chars.pop()
            elif char == _CTRL_U:
                self._chars.clear()
            elif char == _CTRL_W:
                self._delete_word()
            elif char == _CTRL_C:
                self._reset()
            elif char == _TAB:
                self._uncertain = True
            elif char < " " or char == "\x7f" or "\x80" <= char < "\xa0":
                if char not in _HARMLESS:
                    self._uncertain = True  # Ctrl-R, Ctrl-A, ...: effect unknown
            else:
                self._chars.append(char)

    def _escape_char(self, char: str) -> None:
        sequence = self._escape + char
        if _complete(sequence):
            self._escape = ""
            if sequence not in _PASTE_MARKERS:
                self._uncertain = True
        else:
            self._escape = sequence

    def _enter(self, time: float) -> None:
        text = "".join(self._chars).strip()
        if text or self._uncertain:
            self.lines.append(TypedLine(time, text, self._uncertain))
        self._reset()

    def _delete_word(self) -> None:
        while self._chars and self._chars[-1] == " ":
            self._chars.pop()
        while self._chars and self._chars[-1] != " ":
            self._chars.pop()

    def _reset(self) -> None:
        self._chars.clear()
        self._uncertain = False


def _complete(sequence: str) -> bool:
    """Whether an escape sequence (starting with ESC) is complete."""
    if len(sequence) < 2:
        return False
    kind = sequence[1]
    if kind == "[":  # CSI: parameters, then a final byte @..~
        return len(sequence) > 2 and "@" <= sequence[-1] <= "~"
    if kind == "O":  # SS3: one more character (keypad, F1-F4, arrows in app mode)
        return len(sequence) == 3
    if kind in "]P_^X":  # OSC and string sequences: end with BEL or ESC \
        return sequence.endswith(("\x07", "\x1b\\")) and len(sequence) > 2
    return True  # ESC + one character (Alt-key)
