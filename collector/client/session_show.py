"""``aftercare session show ID``: one session's state, window, timeline and recordings."""

from __future__ import annotations

import argparse
import json
from typing import Any

from collector.client.connection import Api
from collector.client.output import duration_text, iso, safe, size_text
from collector.client.paging import fetch_all
from collector.client.sessions import session_dict
from proto import api_pb2

# Event details ending in "_ms" hold a time when at least this large (2001), else a duration.
_EPOCH_MS_FLOOR = 1_000_000_000_000


def add_actions(sub: Any) -> None:
    """Register ``show`` on the ``session`` parser's actions."""
    p = sub.add_parser(
        "show",
        help="state, window, timeline and recordings of a session",
        description="Show a session: state, access window, who approved it, its timeline "
        "and its recordings (part, kind, command, size, sha256, times).",
    )
    p.add_argument("session_id", help="e.g. ses-0123456789ab")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_show)


def session_detail(client: Api, session_id: str) -> api_pb2.SessionDetail:
    """The session with its whole timeline (every events page)."""
    detail: api_pb2.SessionDetail = fetch_all(
        client,
        "GetSession",
        api_pb2.GetSessionRequest(session_id=session_id),
        "events",
        "events_page_token",
        "next_events_page_token",
    )
    return detail


def _show(client: Api, args: argparse.Namespace) -> int:
    detail = session_detail(client, args.session_id)
    if args.json:
        print(json.dumps(detail_dict(detail), indent=2, ensure_ascii=False))
    else:
        print("\n".join(detail_lines(detail)))
    return 0


def detail_dict(detail: api_pb2.SessionDetail) -> dict[str, Any]:
    """The session detail as JSON: the session's fields as ``session request --json``
    prints them, plus ``gateway``, ``events`` (details as objects) and ``recordings``."""
    return session_dict(detail.session) | {
        "gateway": detail.gateway,
        "events": [
            {"at": iso(e.at_unix_ms), "actor": e.actor, "kind": e.kind, "details": _details(e)}
            for e in detail.events
        ],
        "recordings": [recording_dict(r) for r in detail.recordings],
    }


def recording_dict(rec: api_pb2.RecordingInfo) -> dict[str, Any]:
    """One recording part as JSON."""
    return {
        "part": rec.part,
        "kind": rec.kind,
        "command": rec.command,
        "started": iso(rec.started_unix_ms),
        "ended": iso(rec.ended_unix_ms),
        "size_bytes": rec.size_bytes,
        "sha256": rec.sha256,
        "input_recorded": rec.input_recorded,
    }


def detail_lines(detail: api_pb2.SessionDetail) -> list[str]:
    """The session detail as text, for people."""
    s = detail.session
    agent = f" ({safe(s.agent_id)})" if s.agent_id else ""
    lines = [
        f"{safe(s.session_id)}: {safe(s.state)}",
        f"  host       {safe(s.hostname)}{agent}, customer {safe(s.customer)}",
        f"  engineer   {safe(s.engineer)}",
        f"  reason     {safe(s.reason)}",
    ]
    if s.ticket_id:
        lines.append(f"  ticket     #{s.ticket_id}")
    lines.append(
        f"  requested  {iso(s.requested_unix_ms)} for {duration_text(s.requested_duration_ms)}"
        + (
            f" (lapses unapproved at {iso(s.pending_expires_unix_ms)})"
            if s.state == "pending" and s.pending_expires_unix_ms
            else ""
        )
    )
    if s.approved_by:
        lines.append(f"  approved   by {safe(s.approved_by)}")
    if s.window_start_unix_ms:
        lines.append(
            f"  window     {iso(s.window_start_unix_ms)} .. {iso(s.window_end_unix_ms) or '?'}"
        )
    if s.deny_reason:
        lines.append(f"  denied     {safe(s.deny_reason)}")
    if s.end_reason:
        lines.append(f"  ended      {safe(s.end_reason)}")
    lines.append(f"  gateway    {safe(detail.gateway or 'not served by this collector')}")
    lines.append("timeline:")
    for event in detail.events:
        details = " ".join(f"{safe(k)}={safe(v)}" for k, v in _detail_texts(event))
        lines.append(
            f"  {iso(event.at_unix_ms)}  {safe(event.kind):<12} {safe(event.actor):<16} "
            f"{details}".rstrip()
        )
    lines.append("recordings:" if detail.recordings else "recordings: none")
    for rec in detail.recordings:
        lines.extend(_recording_lines(rec))
    lines.extend(_transfer_lines(detail))
    return lines


def _transfer_lines(detail: api_pb2.SessionDetail) -> list[str]:
    """Files copied through the gateway (sftp, scp), from the timeline."""
    transfers = [e for e in detail.events if e.kind == "file_transfer"]
    if not transfers:
        return []
    return ["file transfers:"] + [
        f"  {iso(e.at_unix_ms)}  {transfer_text(e, padded=True)}" for e in transfers
    ]


def transfer_text(event: api_pb2.SessionEventInfo, padded: bool = False) -> str:
    """A ``file_transfer`` event as "upload sftp /path  2.0 KiB" (``padded``: aligned)."""
    d = _details(event)
    name = f" ({d['name']})" if d.get("name") else ""
    cut = "  (cut short)" if d.get("complete") is False else ""
    size = d.get("size_bytes")
    direction, protocol = str(d.get("direction", "?")), str(d.get("protocol", "?"))
    if padded:
        direction, protocol = f"{direction:<8}", f"{protocol:<4}"
    return (
        f"{direction}  {protocol}  {d.get('path', '?')}{name}  "
        f"{size_text(size if isinstance(size, int) else 0)}{cut}"
    )


def _recording_lines(rec: api_pb2.RecordingInfo) -> list[str]:
    what = f"{safe(rec.kind)} `{safe(rec.command)}`" if rec.command else safe(rec.kind)
    ended = iso(rec.ended_unix_ms) or "still recording"
    input_text = "input recorded" if rec.input_recorded else "output only"
    return [
        f"  part {rec.part}  {what}  {iso(rec.started_unix_ms)} .. {ended}  "
        f"{size_text(rec.size_bytes)}  {input_text}",
        f"          sha256 {safe(rec.sha256 or '(when finished)')}",
    ]


def _details(event: api_pb2.SessionEventInfo) -> dict[str, Any]:
    if not event.details_json:
        return {}
    try:
        value = json.loads(event.details_json)
    except ValueError:
        return {"raw": event.details_json}
    return value if isinstance(value, dict) else {"value": value}


def _detail_texts(event: api_pb2.SessionEventInfo) -> list[tuple[str, str]]:
    texts = []
    for key, value in _details(event).items():
        if value is None or value == "":
            continue
        if key.endswith("_ms") and isinstance(value, int) and not isinstance(value, bool):
            name = key.removesuffix("_ms")
            text = iso(value) if value >= _EPOCH_MS_FLOOR else duration_text(value)
            texts.append((name, text or "-"))
        elif isinstance(value, str):
            texts.append((key, json.dumps(value, ensure_ascii=False) if " " in value else value))
        else:
            texts.append((key, json.dumps(value, ensure_ascii=False)))
    return texts
