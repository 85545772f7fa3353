"""The live terminal stream's robustness over real HTTPS: keep-alive comments, the end
of the session ends the stream, and a browser that reconnects with Last-Event-ID
resumes without anything shown twice."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from collector.gateway.recording import WatchItem
from collector.portal import live_sse
from tests.collector.portal_support import PortalCollector
from tests.collector.test_portal_player import approved_session, collector, recorded

__all__ = ["collector"]  # the fixture used here


def messages(reply: object, count: int) -> list[str]:
    """The next ``count`` SSE messages (blocks separated by a blank line)."""
    found: list[str] = []
    block = b""
    while len(found) < count:
        line = reply.readline()  # type: ignore[attr-defined]
        assert line, f"the stream ended after {found}"
        if line == b"\n":
            found.append(block.decode())
            block = b""
        else:
            block += line
    return found


def fields(message: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in message.splitlines())


def test_an_idle_stream_gets_keep_alive_comments(
    collector: PortalCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_sse, "KEEPALIVE_S", 0.2)
    b, session = approved_session(collector)
    with b.stream(f"/sessions/{session.session_id}/live") as reply:
        header, first, second = messages(reply, 3)
    assert json.loads(fields(header)["data"])["cols"] == 80
    assert first == second == ": keep-alive\n"


def test_the_stream_ends_when_the_session_is_over_even_unsignalled(
    collector: PortalCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_sse, "KEEPALIVE_S", 0.2)
    b, session = approved_session(collector)
    with b.stream(f"/sessions/{session.session_id}/live") as reply:
        messages(reply, 1)
        # ended behind this replica's back: no "end" reaches its watch hub
        stored = collector.session(session.session_id)
        ended = replace(stored, state="ended", ended_ms=stored.approved_ms, end_reason="test")
        collector.db("update_session", ended, [])
        rest = reply.read().decode()  # returns only once the server ends the stream
    assert rest.endswith("event: done\ndata: {}\n\n")


def test_a_reconnecting_browser_resumes_after_its_last_event(
    collector: PortalCollector,
) -> None:
    b, session = approved_session(collector)
    shown = [[0.5, "o", "one "], [0.75, "o", "two "], [1.0, "r", "90x20"]]
    recorded(collector, session, 1, shown)
    path = f"/sessions/{session.session_id}/live"
    with b.stream(path) as reply:
        header, one, two = messages(reply, 3)
    assert "cols" in fields(header)["data"]
    assert fields(one)["id"] == "1:0.5" and fields(two)["id"] == "1:0.75"
    # the output went on while the browser was away: the recording grew
    cast = collector.server.data_dir.root / f"recordings/{session.session_id}/part1.cast"
    with cast.open("a") as file:
        file.write(json.dumps([1.5, "o", "three "]) + "\n")
    hub = collector.server.watch_hub
    with b.stream(path, {"Last-Event-ID": fields(two)["id"]}) as reply:
        resize, three = messages(reply, 2)
        sid = session.session_id
        collector.loop.call_soon_threadsafe(hub.publish, sid, WatchItem(1, 1.5, "o", "three "))
        collector.loop.call_soon_threadsafe(hub.publish, sid, WatchItem(1, 2.0, "o", "four "))
        collector.loop.call_soon_threadsafe(hub.end, sid)
        rest = reply.read().decode()
    assert json.loads(fields(resize)["data"])[1:] == ["r", "90x20"]  # no size header first
    assert json.loads(fields(three)["data"])[1:] == ["o", "three "]
    assert '"three "' not in rest and '"four "' in rest  # live copy of a replayed event: once
    assert "id: 1:2.0" in rest and rest.endswith("event: done\ndata: {}\n\n")


@pytest.mark.parametrize("bad", ["", "nonsense", "1:", "1:abc", "-1:2", "1:2:3"])
def test_an_unreadable_last_event_id_starts_over(bad: str) -> None:
    assert live_sse.resume_point(bad) is None


def test_last_event_ids_parse() -> None:
    assert live_sse.resume_point("2:1.25") == (2, 1.25)
    assert live_sse.resume_point(" 1:3 ") == (1, 3.0)
    assert live_sse.resume_point("1:1e-05") == (1, 1e-05)
