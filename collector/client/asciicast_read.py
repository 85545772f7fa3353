"""Reading session recordings (asciicast v2): parse, replay with timing, typed lines.

Pure functions, no I/O: the commands in ``recordings`` fetch the bytes, parse them
with ``agent.session.asciicast.parse_cast`` and pass ``write``/``sleep`` in. An
asciicast v2 file is a JSON header object on the first line
(``version`` 2, ``width``, ``height``, optional ``timestamp`` in unix seconds) and then
one ``[time, code, data]`` array per line: ``time`` in seconds since the start, ``code``
"o" (output), "i" (input), "r" (resize, data "COLSxROWS") or "m" (marker).

``typed_entries`` reconstructs what was typed at a shell prompt from the input events,
best effort: it cannot know what tab completion, history recall or cursor movement
did, so lines that used them are marked ``uncertain``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from agent.session.asciicast import Event

__all__ = ["TypedLine", "play", "typed_entries", "typed_lines"]


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
    for time, code, data in events:
        gap = max(0.0, time - previous)
        previous = max(previous, time)
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
    for time, code, data in events:
        if code == "i":
            reader.feed(time, data)
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
