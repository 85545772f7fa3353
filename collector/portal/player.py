"""The portal's terminal player: recordings replayed and live sessions watched in the page.

asciinema-player (npm, fetched at build time by ``packaging/vendor.sh`` into
``static/vendor/asciinema-player/``, never committed) plays them; our
``static/player.js`` starts it from the page's ``data-`` attributes (CSP: no inline
script). Without the vendored files the terminal page keeps its plain text view.

Contracts:
- ``recording_cast``: every part of a session as ONE asciicast v2 file (the first
  part's size; later parts follow on the time line), output and resizes only: what
  the engineer typed ("i" events) is never sent to the page.
- ``live_events``: Server-Sent Events in the player's ``eventsource`` format: first
  the terminal size ``{"cols", "rows", "time": 0}``, then ``[seconds, "o"|"r", data]``
  (what was shown so far, then live output from the gateway's ``WatchHub``), and a
  ``done`` event when the session is over (live_sse.py frames them into the stream:
  ids for resuming, keep-alives).
- Tenancy is the caller's: these functions are given records the principal may see.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from collector.gateway.recording import WatchItem, recorded_events
from collector.store.base import RecordingRecord
from common.asciicast import parse_cast

__all__ = [
    "PLAYER_FILES",
    "live_header",
    "live_message",
    "player_available",
    "player_file",
    "recording_cast",
    "terminal_size",
]

DEFAULT_SIZE = (80, 24)
VENDOR_DIR = "static/vendor/asciinema-player"
# name under /static/ -> (file in the package, content type)
PLAYER_FILES: dict[str, tuple[str, str]] = {
    "player.js": ("static/player.js", "text/javascript"),
    "vendor/asciinema-player.min.js": (
        f"{VENDOR_DIR}/asciinema-player.min.js",
        "text/javascript",
    ),
    "vendor/asciinema-player.css": (f"{VENDOR_DIR}/asciinema-player.css", "text/css"),
}
KEPT_EVENTS = ("o", "r")  # output and resize; never "i" (what the engineer typed)


def _package_file(relative: str) -> Traversable:
    return resources.files("collector.portal").joinpath(relative)


def player_available() -> bool:
    """Whether the vendored asciinema-player is installed (else: the text view)."""
    return all(_package_file(path).is_file() for path, _ in PLAYER_FILES.values())


def player_file(name: str) -> tuple[bytes, str] | None:
    """The bytes and content type of a player file served under /static/, or None."""
    entry = PLAYER_FILES.get(name)
    if entry is None or not _package_file(entry[0]).is_file():
        return None
    return _package_file(entry[0]).read_bytes(), entry[1]


def terminal_size(records: Sequence[RecordingRecord], data_dir: Path) -> tuple[int, int]:
    """The (cols, rows) of the session's first part with a size in its header, else 80x24."""
    for record in sorted(records, key=lambda r: r.part):
        try:
            data = (data_dir / record.path).read_bytes()
            header = parse_cast(data[: data.rfind(b"\n") + 1])[0]
            cols, rows = int(header["width"]), int(header["height"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if cols > 0 and rows > 0:  # a client without a terminal asks for 0x0
            return cols, rows
    return DEFAULT_SIZE


def recording_cast(records: Sequence[RecordingRecord], data_dir: Path) -> bytes:
    """All parts of a session as one asciicast v2 file (output and resizes only)."""
    cols, rows = terminal_size(records, data_dir)
    lines = [json.dumps({"version": 2, "width": cols, "height": rows})]
    offset = 0.0
    for record in sorted(records, key=lambda r: r.part):
        last = 0.0
        for at, kind, data in recorded_events(data_dir / record.path):
            last = at
            if kind in KEPT_EVENTS:
                lines.append(json.dumps([round(offset + at, 6), kind, data]))
        offset += last
    return ("\n".join(lines) + "\n").encode()


def live_header(records: Sequence[RecordingRecord], data_dir: Path) -> str:
    """The stream's first SSE message: the terminal's size (a player reset)."""
    cols, rows = terminal_size(records, data_dir)
    return _sse({"cols": cols, "rows": rows, "time": 0})


def live_message(item: WatchItem, started: float) -> str:
    """One watch item as an SSE message; times are seconds since the stream began
    (what was recorded before replays at once); "end" is the ``done`` event."""
    if item.type == "end":
        return "event: done\ndata: {}\n\n"
    if item.type not in KEPT_EVENTS:
        return ""
    return _sse([round(time.monotonic() - started, 3), item.type, item.data])


def _sse(value: Any) -> str:
    return f"data: {json.dumps(value)}\n\n"
