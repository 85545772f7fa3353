"""``aftercare session replay|log ID``: a session's recordings, played back or summarised.

Each channel of a session (the shell, every exec, scp or sftp) is a recording part in
asciicast v2. ``replay`` plays one part in the terminal with its timing, or writes the
file as is (for ``asciinema play``); ``log`` lists the commands run, best effort: exec
commands as recorded, the lines typed at the shell when input was recorded, and the
files copied with scp or sftp (from the timeline: they are not recorded).
The parsing and reconstruction are in ``common.asciicast``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.client import arguments
from collector.client.connection import Api
from collector.client.output import iso, raw_stdout, safe, size_text
from collector.client.session_show import session_detail, transfer_text
from common.asciicast import parse_cast, play, typed_entries
from common.safe_text import terminal_display
from proto import api_pb2

UNCERTAIN_MARK = "[?]"


def add_actions(sub: Any) -> None:
    """Register ``replay`` and ``log`` on the ``session`` parser's actions."""
    p = sub.add_parser(
        "replay",
        help="play a session recording in the terminal, or save it",
        description="Play one recording part of a session with its timing (output only), or "
        "with --raw / -o write the asciicast v2 file as is, for `asciinema play FILE`. "
        "Parts are listed by `aftercare session show`.",
    )
    p.add_argument("session_id", help="e.g. ses-0123456789ab")
    p.add_argument(
        "--part", type=arguments.part, default=0, help="recording part (default: the first)"
    )
    p.add_argument("--raw", action="store_true", help="write the asciicast file to stdout")
    p.add_argument("-o", "--output", metavar="FILE", help="write the asciicast file to FILE")
    p.add_argument("--speed", type=_positive, default=1.0, help="playback speed factor (1)")
    p.add_argument(
        "--max-wait",
        type=_not_negative,
        default=2.0,
        metavar="SECONDS",
        help="cap idle pauses at this many seconds (2)",
    )
    p.set_defaults(handler=_replay)

    p = sub.add_parser(
        "log",
        help="the commands run in a session (best effort)",
        description="List the commands of a session: exec commands (ssh HOST CMD) as "
        "recorded, the files copied with scp and sftp (name, direction, size), and lines "
        "typed at the shell, reconstructed from the recorded "
        f"input. Lines marked {UNCERTAIN_MARK} used tab completion, history or cursor keys, "
        "which cannot be reconstructed. Nothing typed is listed when input was not recorded.",
    )
    p.add_argument("session_id", help="e.g. ses-0123456789ab")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_log)


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _not_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def fetch(client: Api, session_id: str, rec: api_pb2.RecordingInfo) -> tuple[bytes, str | None]:
    """A recording part's bytes, and a warning when they do not match its stored sha256."""
    request = api_pb2.GetRecordingRequest(session_id=session_id, part=rec.part)
    data = b"".join(chunk.data for chunk in client.stream("GetRecording", request))
    if rec.sha256 and hashlib.sha256(data).hexdigest() != rec.sha256.lower():
        return data, (
            f"part {rec.part} does not match its stored sha256 {rec.sha256}: the recording "
            "was changed or cut short"
        )
    return data, None


# -- replay ----------------------------------------------------------------------------


def _replay(client: Api, args: argparse.Namespace) -> int:
    detail = client.call("GetSession", api_pb2.GetSessionRequest(session_id=args.session_id))
    parts = list(detail.recordings)
    if not parts:
        _err(f"{args.session_id} has no recordings (nobody has logged in yet?)")
        return 1
    chosen = [r for r in parts if r.part == args.part] if args.part else parts[:1]
    if not chosen:
        _err(f"{args.session_id} has no part {args.part}; parts: {_part_list(parts)}")
        return 1
    rec = chosen[0]
    if not args.part and len(parts) > 1:
        _err(f"part {rec.part}; the session's parts: {_part_list(parts)} (choose with --part N)")
    data, warning = fetch(client, args.session_id, rec)
    status = 0
    if warning:
        _err(f"warning: {warning}")
        status = 1
    if args.output:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            _err(f"cannot write {args.output}: {exc.strerror or exc}")
            return 1
        _err(
            f"wrote {args.output} ({size_text(len(data))}); "
            f"play it with `asciinema play {args.output}`"
        )
        return status
    if args.raw:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return status
    try:
        header, events = parse_cast(data)
    except ValueError as exc:
        _err(f"part {rec.part} is not a valid recording: {exc}")
        return 1
    _warn_if_small_terminal(header)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops the replay
        play(events, _write, time.sleep, speed=args.speed, max_wait=args.max_wait)
    return status


def _write(text: str) -> None:
    """Replayed output goes to the terminal as recorded (colours, cursor movement),
    without the sequences that act beyond the screen (``terminal_display``)."""
    out = raw_stdout()
    out.write(terminal_display(text))
    out.flush()


def _warn_if_small_terminal(header: dict[str, Any]) -> None:
    if not sys.stdout.isatty():
        return
    width, height = header.get("width"), header.get("height")
    size = shutil.get_terminal_size()
    if (
        isinstance(width, int)
        and isinstance(height, int)
        and (width > size.columns or height > size.lines)
    ):
        _err(
            f"recorded at {width}x{height}, your terminal is {size.columns}x{size.lines}: "
            "enlarge it for a faithful replay"
        )


def _part_list(parts: list[api_pb2.RecordingInfo]) -> str:
    return ", ".join(
        f"{r.part} ({safe(r.kind)}{' `' + safe(r.command) + '`' if r.command else ''})"
        for r in parts
    )


# -- log -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    """One command of the session log."""

    at_ms: int
    part: int
    kind: str  # "typed" (at the shell) | "exec" | "file" (a file copied; part 0)
    command: str
    uncertain: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": iso(self.at_ms),
            "part": self.part,
            "kind": self.kind,
            "command": self.command,
            "uncertain": self.uncertain,
        }


def _log(client: Api, args: argparse.Namespace) -> int:
    detail = session_detail(client, args.session_id)
    entries: list[LogEntry] = []
    notes: list[str] = []
    no_input: list[int] = []
    failed = False
    for rec in detail.recordings:
        if rec.kind != "shell":
            if rec.command:
                entries.append(LogEntry(rec.started_unix_ms, rec.part, "exec", rec.command))
            continue
        data, warning = fetch(client, args.session_id, rec)
        if warning:
            notes.append(f"warning: {warning}")
            failed = True
        try:
            header, events = parse_cast(data)
        except ValueError as exc:
            notes.append(f"part {rec.part} cannot be read: {exc}")
            failed = True
            continue
        if not rec.ended_unix_ms:
            notes.append(f"part {rec.part} is still recording: lines typed so far")
        if not any(code == "i" for _, code, _ in events):
            if not rec.input_recorded:
                no_input.append(rec.part)
            continue
        base_ms = _start_ms(header, rec)
        for line in typed_entries(events):
            at_ms = base_ms + round(line.time * 1000)
            entries.append(LogEntry(at_ms, rec.part, "typed", line.text, line.uncertain))
    entries += [
        LogEntry(e.at_unix_ms, 0, "file", transfer_text(e))
        for e in detail.events
        if e.kind == "file_transfer"
    ]
    entries.sort(key=lambda e: (e.at_ms, e.part))
    notes[:0] = _input_notes(detail, no_input)
    if any(e.uncertain for e in entries):
        notes.append(
            f"{UNCERTAIN_MARK}: tab completion, history recall or cursor keys were used on "
            "that line; what actually ran may differ (see `aftercare session replay`)"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "session_id": detail.session.session_id or args.session_id,
                    "entries": [e.as_dict() for e in entries],
                    "notes": notes,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for entry in entries:
            print(_entry_text(entry))
        if not detail.recordings:
            notes.append(f"{args.session_id} has no recordings (nobody has logged in yet?)")
        for note in notes:
            _err(f"note: {note}")
    return 1 if failed else 0


def _start_ms(header: dict[str, Any], rec: api_pb2.RecordingInfo) -> int:
    stamp = header.get("timestamp")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool) and stamp > 0:
        return round(stamp * 1000)
    return int(rec.started_unix_ms)


def _input_notes(detail: api_pb2.SessionDetail, no_input: list[int]) -> list[str]:
    if not no_input:
        return []
    shells = [r.part for r in detail.recordings if r.kind == "shell"]
    which = ("part " if len(no_input) == 1 else "parts ") + ", ".join(map(str, no_input))
    if len(no_input) == len(shells):
        return [f"input was not recorded for {which}; only exec commands are listed"]
    return [f"input was not recorded for {which}; commands typed there are missing"]


def _entry_text(entry: LogEntry) -> str:
    if entry.kind == "exec":
        command = f"exec: {safe(entry.command)}"
    elif entry.kind == "file":
        return f"{iso(entry.at_ms) or '-'}  file: {safe(entry.command)}"
    else:
        command = safe(entry.command) or "(a line recalled from history or completed)"
    mark = f"  {UNCERTAIN_MARK}" if entry.uncertain else ""
    return f"{iso(entry.at_ms) or '-'}  part {entry.part}  {command}{mark}"


def _err(text: str) -> None:
    print(text, file=sys.stderr)
