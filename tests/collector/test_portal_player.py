"""The portal's terminal player over real HTTPS: the vendored asciinema-player files,
a session's recording as one asciicast file, and the live Server-Sent Events stream
(tenancy, audit, what the engineer typed never sent)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from collector.gateway.recording import WatchItem
from collector.portal import player
from collector.portal.pages import MAX_WATCHES_PER_USER, PAGES
from collector.sessions.model import RemoteSession
from collector.store.base import RecordingRecord
from common.clock import wall_ms
from tests.collector.portal_support import Browser, PortalCollector

needs_player = pytest.mark.skipif(
    not player.player_available(), reason="asciinema-player not vendored: run make vendor"
)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[PortalCollector]:
    portal = PortalCollector(tmp_path / "data")
    portal.add_user("carol", "customer", "acme")
    portal.add_user("mallory", "customer", "globex")
    try:
        yield portal
    finally:
        portal.stop()


def signed_in(collector: PortalCollector, name: str = "carol") -> Browser:
    b = Browser(collector.url, collector.ca_file)
    assert b.sign_in(name).status == 303
    return b


def recorded(
    collector: PortalCollector,
    session: RemoteSession,
    part: int,
    events: list[list[object]],
    width: int = 100,
) -> None:
    """A recording part of ``session`` on disk and in the store, as the gateway leaves it."""
    relative = f"recordings/{session.session_id}/part{part}.cast"
    path = collector.server.data_dir.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"version": 2, "width": width, "height": 30}
    path.write_text("\n".join([json.dumps(header), *(json.dumps(e) for e in events)]) + "\n")
    collector.db(
        "add_recording", RecordingRecord(session.session_id, part, "shell", "", relative, wall_ms())
    )


def approved_session(collector: PortalCollector) -> tuple[Browser, RemoteSession]:
    session = collector.request_session(collector.add_host("ag-acme1", "acme", "db1"))
    b = signed_in(collector)
    b.post(f"/sessions/{session.session_id}/approve", {"csrf": b.csrf("/")})
    return b, session


@needs_player
def test_player_files_are_served_with_their_content_types(collector: PortalCollector) -> None:
    b = signed_in(collector)
    for path, kind in (
        ("/static/player.js", "text/javascript"),
        ("/static/vendor/asciinema-player.min.js", "text/javascript"),
        ("/static/vendor/asciinema-player.css", "text/css"),
    ):
        answer = b.get(path)
        assert answer.status == 200 and answer.headers["Content-Type"].startswith(kind), path
    assert b.get("/static/vendor/LICENSE").status == 404  # only the listed files
    assert b.get("/static/vendor/../pages.py").status == 404


def test_recording_is_one_cast_of_every_part_without_what_was_typed(
    collector: PortalCollector,
) -> None:
    b, session = approved_session(collector)
    recorded(
        collector, session, 1, [[0.5, "o", "first$ "], [0.7, "i", "s3cret\r"], [1.0, "o", "ok\r\n"]]
    )
    recorded(collector, session, 2, [[0.25, "r", "120x40"], [0.5, "o", "second$ "]], width=120)
    answer = b.get(f"/sessions/{session.session_id}/recording.cast")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith(
        "application/x-asciicast"
    )
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert lines[0] == {"version": 2, "width": 100, "height": 30}  # the first part's size
    assert lines[1:] == [
        [0.5, "o", "first$ "],
        [1.0, "o", "ok\r\n"],
        [1.25, "r", "120x40"],
        [1.5, "o", "second$ "],
    ]
    assert "s3cret" not in answer.text
    attacker = signed_in(collector, "mallory")
    assert attacker.get(f"/sessions/{session.session_id}/recording.cast").status == 404
    assert attacker.get("/sessions/no-such-session/recording.cast").status == 404


def test_live_stream_replays_then_follows_until_the_session_ends(
    collector: PortalCollector,
) -> None:
    b, session = approved_session(collector)
    recorded(collector, session, 1, [[0.5, "o", "before$ "], [0.6, "i", "typed"]])
    hub = collector.server.watch_hub
    with b.stream(f"/sessions/{session.session_id}/live") as reply:
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        assert "default-src 'none'" in reply.headers["Content-Security-Policy"]
        assert reply.readline() == b'data: {"cols": 100, "rows": 30, "time": 0}\n'
        assert reply.readline() == b"\n"
        replayed = json.loads(reply.readline().removeprefix(b"data: "))
        assert replayed[1:] == ["o", "before$ "]
        reply.readline()
        # subscribed before the file was read: a live event now reaches this watcher
        sid = session.session_id
        collector.loop.call_soon_threadsafe(hub.publish, sid, WatchItem(1, 0.9, "i", "typed-live"))
        collector.loop.call_soon_threadsafe(hub.publish, sid, WatchItem(1, 1.0, "o", "MARKER"))
        collector.loop.call_soon_threadsafe(hub.end, sid)
        rest = reply.read().decode()
    assert '"MARKER"' in rest and "typed" not in rest
    assert rest.endswith("event: done\ndata: {}\n\n")
    watched = collector.audit("portal.session_watched")
    assert [(e.actor, e.target) for e in watched] == [("user:carol", session.session_id)]


def test_another_customer_cannot_watch_and_is_not_audited_as_watching(
    collector: PortalCollector,
) -> None:
    _, session = approved_session(collector)
    attacker = signed_in(collector, "mallory")
    assert attacker.get(f"/sessions/{session.session_id}/live").status == 404
    assert attacker.get(f"/sessions/{session.session_id}/terminal").status == 404
    assert collector.audit("portal.session_watched") == []


def test_an_ended_session_streams_its_recording_and_done(collector: PortalCollector) -> None:
    b, session = approved_session(collector)
    recorded(collector, session, 1, [[0.5, "o", "gone$ "]])
    b.post(f"/sessions/{session.session_id}/terminate", {"csrf": b.csrf("/")})
    answer = b.get(f"/sessions/{session.session_id}/live")
    assert answer.status == 200 and '"gone$ "' in answer.text
    assert answer.text.endswith("event: done\ndata: {}\n\n")


@needs_player
def test_terminal_page_starts_the_player_and_keeps_the_text_view(
    collector: PortalCollector,
) -> None:
    b, session = approved_session(collector)
    recorded(collector, session, 1, [[0.5, "o", "root@db1:~# "]])
    live = b.get(f"/sessions/{session.session_id}/terminal").text
    assert f'data-live="/sessions/{session.session_id}/live"' in live
    assert '<script src="/static/player.js" defer></script>' in live
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in live  # no JS: reloads
    assert 'id="terminate"' in live and "root@db1:~# " in live
    assert "<script>" not in live  # no inline script
    b.post(f"/sessions/{session.session_id}/terminate", {"csrf": b.csrf("/")})
    ended = b.get(f"/sessions/{session.session_id}/terminal").text
    assert f'data-cast="/sessions/{session.session_id}/recording.cast"' in ended
    assert 'http-equiv="refresh"' not in ended and 'id="terminate"' not in ended


def test_without_the_vendored_player_the_page_is_the_text_view_with_a_note(
    collector: PortalCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = {
        name: ("static/vendor/missing/" + name, kind)
        for name, (_, kind) in player.PLAYER_FILES.items()
    }
    monkeypatch.setattr(player, "PLAYER_FILES", missing)
    b, session = approved_session(collector)
    recorded(collector, session, 1, [[0.5, "o", "root@db1:~# "]])
    page = b.get(f"/sessions/{session.session_id}/terminal").text
    assert 'id="no-player"' in page and "<script" not in page and 'id="player"' not in page
    assert '<meta http-equiv="refresh" content="3">' in page and "root@db1:~# " in page
    assert b.get("/static/vendor/asciinema-player.min.js").status == 404


def test_live_messages_are_the_players_eventsource_format() -> None:
    assert player.live_message(WatchItem(1, 2.0, "i", "pw"), 0.0) == ""
    assert player.live_message(WatchItem(0, 0.0, "end"), 0.0) == "event: done\ndata: {}\n\n"
    message = player.live_message(WatchItem(1, 2.0, "o", "x"), 0.0)
    assert message.startswith("data: [") and message.endswith(', "o", "x"]\n\n')


def test_the_vendors_engineer_may_watch_and_is_audited(collector: PortalCollector) -> None:
    _, session = approved_session(collector)
    recorded(collector, session, 1, [[0.5, "o", "seen$ "]])
    collector.add_user("erin", "engineer")
    engineer = signed_in(collector, "erin")
    engineer.post(f"/sessions/{session.session_id}/terminate", {"csrf": engineer.csrf("/")})
    answer = engineer.get(f"/sessions/{session.session_id}/live")
    assert answer.status == 200 and '"seen$ "' in answer.text
    assert [e.actor for e in collector.audit("portal.session_watched")] == ["user:erin"]


def test_a_recording_without_a_terminal_size_plays_at_80x24(tmp_path: Path) -> None:
    (tmp_path / "part1.cast").write_text(
        '{"version": 2, "width": 0, "height": 0}\n[0.1, "o", "x"]\n'
    )
    record = RecordingRecord("ses-1", 1, "exec", "", "part1.cast", 0)
    assert player.terminal_size([record], tmp_path) == (80, 24)
    assert player.recording_cast([record], tmp_path).startswith(
        b'{"version": 2, "width": 80, "height": 24}\n'
    )


def test_the_collector_stops_promptly_while_a_page_is_watching(tmp_path: Path) -> None:
    portal = PortalCollector(tmp_path / "data")
    portal.add_user("carol", "customer", "acme")
    try:
        _, session = approved_session(portal)
        recorded(portal, session, 1, [[0.5, "o", "waiting$ "]])
        reply = signed_in(portal).stream(f"/sessions/{session.session_id}/live")
        reply.readline()  # the header: the watch is on
    finally:
        started = time.monotonic()
        portal.stop()
    assert time.monotonic() - started < 10  # the watch ended, not waited for
    reply.close()


def test_a_user_may_hold_only_so_many_live_views(collector: PortalCollector) -> None:
    b, session = approved_session(collector)
    path = f"/sessions/{session.session_id}/live"
    streams = [b.stream(path) for _ in range(MAX_WATCHES_PER_USER)]
    try:
        for reply in streams:
            reply.readline()  # each is open
        assert b.get(path).status == 429
        collector.add_user("dave", "customer", "acme")  # the limit is per user
        with signed_in(collector, "dave").stream(path) as other:
            assert other.readline().startswith(b"data: ")
    finally:
        for reply in streams:
            reply.close()


def test_live_view_follows_an_engineer_connected_through_another_replica(
    collector: PortalCollector,
) -> None:
    """The engineer's connection is on another replica's gateway: the live view shows
    the events that replica relays (ReplicaRouting.remote_watch), not this one's."""
    b, session = approved_session(collector)
    asked: list[str] = []

    async def relayed() -> AsyncIterator[WatchItem]:
        yield WatchItem(1, 0.5, "o", "REMOTE-PROMPT$ ")
        yield WatchItem(1, 0.7, "i", "typed-remotely")
        yield WatchItem(1, 0.9, "o", "REMOTE-OUTPUT")
        yield WatchItem(0, 0.0, "end")

    async def remote_watch(session_id: str) -> AsyncIterator[WatchItem] | None:
        asked.append(session_id)
        return relayed()

    assert collector.server.portal is not None
    pages = collector.server.portal._runner.app[PAGES]
    pages.portal.remote_watch = remote_watch
    answer = b.get(f"/sessions/{session.session_id}/live")
    assert answer.status == 200 and asked == [session.session_id]
    assert '"REMOTE-PROMPT$ "' in answer.text and '"REMOTE-OUTPUT"' in answer.text
    assert "typed-remotely" not in answer.text
    assert answer.text.endswith("event: done\ndata: {}\n\n")
