"""The link sends a just-appended (durable) batch from memory only when it is next in order."""

from __future__ import annotations

from pathlib import Path

from agent.config import AgentConfig
from agent.runner import hello_for
from agent.spool import SpoolEntry
from agent.stream import OFFERED_KEPT, CollectorLink


def link(tmp_path: Path) -> CollectorLink:
    config = AgentConfig()
    return CollectorLink(tmp_path, None, config.stream, hello_for(config))  # type: ignore[arg-type]


def entry(sequence: int) -> SpoolEntry:
    return SpoolEntry(sequence, f"payload {sequence}".encode())


def sequences(entries: list[SpoolEntry]) -> list[int]:
    return [e.sequence for e in entries]


def test_the_next_entry_in_order_is_taken_from_memory(tmp_path: Path) -> None:
    fresh = link(tmp_path)
    fresh.offer(entry(11))
    fresh.offer(entry(12))
    assert sequences(fresh._take_offered(10, room=5)) == [11, 12]
    assert fresh._take_offered(12, room=5) == []


def test_a_session_start_always_reads_the_spool(tmp_path: Path) -> None:
    fresh = link(tmp_path)
    fresh.offer(entry(1))
    assert fresh._take_offered(0, room=5) == [], "a fresh spool may have been renumbered"


def test_a_hole_before_the_offered_entry_means_reading_the_spool(tmp_path: Path) -> None:
    fresh = link(tmp_path)
    fresh.offer(entry(13))  # 11 (a gap entry, a backlog) is only in the spool
    assert fresh._take_offered(10, room=5) == []
    assert sequences(fresh._take_offered(12, room=5)) == [13], "kept until it is next"


def test_entries_already_sent_from_the_spool_are_dropped(tmp_path: Path) -> None:
    fresh = link(tmp_path)
    for sequence in (5, 6, 7):
        fresh.offer(entry(sequence))
    assert sequences(fresh._take_offered(6, room=5)) == [7]


def test_the_window_limits_what_is_taken(tmp_path: Path) -> None:
    fresh = link(tmp_path)
    for sequence in (2, 3, 4):
        fresh.offer(entry(sequence))
    assert sequences(fresh._take_offered(1, room=2)) == [2, 3]
    assert sequences(fresh._take_offered(3, room=2)) == [4]


def test_only_the_newest_offers_are_kept(tmp_path: Path) -> None:
    fresh = link(tmp_path)
    for sequence in range(1, OFFERED_KEPT + 3):
        fresh.offer(entry(sequence))
    assert fresh._take_offered(1, room=100) == [], "2 fell out: read from the spool"
