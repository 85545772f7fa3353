"""Text that came from someone else, made safe to show in a terminal.

Hostnames, versions, ticket titles, reasons, audit details, usernames: any of them may
hold terminal control sequences (``ESC ]0;title BEL``, ``ESC [2J``), bidi overrides
that reorder what is shown, or a newline that forges an extra line of a table. The
CLIs show such text only after escaping it *visibly*, so nothing is hidden either:

- ``safe(text)``: one line (a table cell, a name, a reason). Every C0 control
  (``\\n`` and ``\\t`` included), DEL, every C1 control, the bidi controls
  U+202A..U+202E and U+2066..U+2069, U+2028/U+2029 and lone surrogates (undecodable
  bytes) become ``\\x1b``, ``\\u202e``, ``\\udcff`` style escapes (``\\n``, ``\\t``,
  ``\\r`` for those three).
- ``safe_block(text)``: a block of text (a description, playbook output): the same,
  but ``\\n``, ``\\t`` and ``\\r\\n`` are kept.
- ``SafeStream``: a text stream whose ``write`` applies ``safe_block``; the CLIs put it
  in front of stdout and stderr (``guarded_output``) so every print path, including
  ones added later, is covered. Raw bytes stay reachable through ``.buffer`` (for
  ``--json`` and ``--raw`` output, which keep the original).

Standard library only: the agent, the collector and the client all use it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

__all__ = [
    "SafeStream",
    "guarded_main",
    "guarded_output",
    "raw",
    "reader_gone",
    "safe",
    "safe_block",
    "terminal_display",
]

_UNSAFE = "\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE_LINE = re.compile(f"[{_UNSAFE}]")
# In a block: keep \n, \t and the \r of \r\n.
_UNSAFE_BLOCK = re.compile(
    "\r(?!\n)|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff]"
)


_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: object) -> str:
    """``text`` (``str()`` of it) as one line with every control escaped visibly."""
    return _UNSAFE_LINE.sub(_escape, text if isinstance(text, str) else str(text))


def safe_block(text: object) -> str:
    """``text`` with every control escaped visibly except newline, tab and CR LF."""
    return _UNSAFE_BLOCK.sub(_escape, text if isinstance(text, str) else str(text))


class SafeStream:
    """A text stream in front of ``stream`` that escapes what ``safe_block`` escapes.

    Everything else (``buffer``, ``isatty``, ``fileno``, ``encoding`` ...) is the
    wrapped stream's, so raw output stays possible through ``.buffer``.
    """

    def __init__(self, stream: TextIO) -> None:
        self.wrapped = stream

    def write(self, text: str) -> int:
        self.wrapped.write(safe_block(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def raw(stream: TextIO | SafeStream) -> TextIO:
    """The stream under a ``SafeStream`` (or ``stream`` itself): for output that must
    keep the original (JSON, ``--raw``)."""
    while isinstance(stream, SafeStream):
        stream = stream.wrapped
    return stream


@contextlib.contextmanager
def guarded_output(*, stdout: bool = True) -> Iterator[None]:
    """Put ``SafeStream`` in front of ``sys.stderr`` and (unless ``stdout=False``, for
    ``--json``) ``sys.stdout`` for the duration; both are flushed and restored after."""
    saved = sys.stdout, sys.stderr
    if stdout and not isinstance(sys.stdout, SafeStream):
        sys.stdout = SafeStream(sys.stdout)
    if not isinstance(sys.stderr, SafeStream):
        sys.stderr = SafeStream(sys.stderr)
    try:
        yield
        sys.stdout.flush()
    finally:
        sys.stdout, sys.stderr = saved


def guarded_main(
    parse: Callable[[], Any],
    run: Callable[[Any], int],
    raw_stdout: Callable[[Any], bool] = lambda args: bool(getattr(args, "json", False)),
    prepare: Callable[[Any], None] = lambda args: None,
) -> int:
    """A command line program's ``main``: ``parse()``, ``prepare(args)`` (unguarded:
    set up logging there, so a daemon's log is written as is), then ``run(args)``
    with stderr and, unless ``raw_stdout(args)`` (``--json``, a daemon), stdout
    escaped. Usage errors are escaped too. A reader that goes away (``| head``) ends
    the program quietly with 141, as SIGPIPE would; Ctrl-C with 130."""
    try:
        with guarded_output(stdout=False):
            args = parse()
        prepare(args)
        with guarded_output(stdout=not raw_stdout(args)):
            return run(args)
    except BrokenPipeError:
        return reader_gone()
    except KeyboardInterrupt:
        return 130


def reader_gone() -> int:
    """After ``BrokenPipeError`` on stdout (``aftercare host H | head``): point stdout at
    /dev/null so the interpreter's last flush stays quiet, and return 141 (128 +
    SIGPIPE), the status a shell reports for a Unix tool whose reader went away."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, raw(sys.stdout).fileno())
        os.close(devnull)
    return 141


# Terminal recordings (``session replay``, ``session watch``) are shown as a terminal
# shows them, so colours and cursor movement stay. Removed: the string sequences (OSC
# retitles, sets the clipboard, makes hyperlinks; DCS, APC, PM, SOS) and the CSI
# requests a terminal answers by typing into its input (device status, attributes,
# window reports) - what a recorded host could use against the person replaying it.
_STRING_SEQUENCE = re.compile(
    "(?:\x1b[P\\]X^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x9c|\x1b\\\\|$)", re.DOTALL
)
_ANSWERED_CSI = re.compile("(?:\x1b\\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[nct]")


def terminal_display(text: str) -> str:
    """A terminal recording's output without the sequences that act beyond the screen
    (best effort per chunk: a sequence split across two chunks loses its start only)."""
    return _ANSWERED_CSI.sub("", _STRING_SEQUENCE.sub("", text))
