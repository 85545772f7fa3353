"""The agent's on-disk spool: sequences, durability, bounds, gaps, failures, corruption."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import SpoolError
from agent.spool import REASON_AGE, REASON_SIZE, Spool, SpoolEntry, read_stats
from proto import agent_pb2
from tests.fakes import FakeClock

T0_MS = 1_700_000_000_000
BIG = 1 << 40  # "no limit" for max_bytes / max_age_seconds


def batch(collected_ms: int = T0_MS, samples: int = 5) -> agent_pb2.MetricBatch:
    return agent_pb2.MetricBatch(
        collected_unix_ms=collected_ms,
        samples=[
            agent_pb2.Sample(name="cpu_seconds_total", labels={"cpu": str(i)}, value=i)
            for i in range(samples)
        ],
    )


def decode(entry: SpoolEntry) -> agent_pb2.AgentMessage:
    """Parse an entry, checking that its payload carries the entry's sequence."""
    message = agent_pb2.AgentMessage.FromString(entry.payload)
    kind = message.WhichOneof("kind")
    assert kind in ("batch", "gap")
    inner = message.batch if kind == "batch" else message.gap
    assert inner.sequence == entry.sequence
    return message


def everything(spool: Spool) -> list[SpoolEntry]:
    return spool.pending(limit=100_000)


def batches(spool: Spool) -> dict[int, agent_pb2.MetricBatch]:
    found = {}
    for entry in everything(spool):
        message = decode(entry)
        if message.HasField("batch"):
            found[entry.sequence] = message.batch
    return found


def gaps(spool: Spool) -> list[agent_pb2.Gap]:
    return [m.gap for m in map(decode, everything(spool)) if m.HasField("gap")]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "spool.db"


@pytest.fixture
def spool(path: Path) -> Iterator[Spool]:
    opened = Spool(path, max_bytes=BIG, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    yield opened
    opened.close()


# --- sequences ---------------------------------------------------------------------


def test_append_assigns_increasing_sequences_and_sets_them_on_the_batch(spool: Spool) -> None:
    appended = [batch(T0_MS + i) for i in range(3)]
    assert [spool.append_batch(b) for b in appended] == [1, 2, 3]
    assert [b.sequence for b in appended] == [1, 2, 3]

    stored = batches(spool)
    assert sorted(stored) == [1, 2, 3]
    assert [stored[s].collected_unix_ms for s in (1, 2, 3)] == [T0_MS, T0_MS + 1, T0_MS + 2]
    assert stored[1].samples == appended[0].samples


def test_sequences_are_never_reused_after_everything_is_acked_and_reopened(path: Path) -> None:
    spool = Spool(path, max_bytes=BIG, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    for _ in range(3):
        spool.append_batch(batch())
    for entry in everything(spool):
        spool.ack(entry.sequence)
    assert spool.stats().entries == 0
    spool.close()

    reopened = Spool(path, max_bytes=BIG, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    assert reopened.stats().next_sequence == 4
    assert reopened.append_batch(batch()) == 4
    reopened.close()


def test_appended_entries_survive_a_process_that_dies_without_closing(path: Path) -> None:
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from agent.spool import Spool\n"
        "from proto import agent_pb2\n"
        f"spool = Spool(Path(sys.argv[1]), max_bytes={BIG}, max_age_seconds={BIG},"
        f" clock=lambda: {T0_MS / 1000})\n"
        f"for i in range(2): spool.append_batch(agent_pb2.MetricBatch(collected_unix_ms={T0_MS}))\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)

    spool = Spool(path, max_bytes=BIG, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    assert sorted(batches(spool)) == [1, 2]
    assert spool.append_batch(batch()) == 3
    spool.close()


# --- pending and ack ---------------------------------------------------------------


def test_pending_is_oldest_first_after_a_sequence_and_limited(spool: Spool) -> None:
    for _ in range(5):
        spool.append_batch(batch())
    assert [e.sequence for e in spool.pending(limit=2)] == [1, 2]
    assert [e.sequence for e in spool.pending(after_sequence=2, limit=2)] == [3, 4]
    assert [e.sequence for e in spool.pending(after_sequence=4)] == [5]
    assert spool.pending(after_sequence=5) == []
    with pytest.raises(ValueError, match="limit"):
        spool.pending(limit=0)


def test_ack_removes_only_that_entry_and_ignores_unknown_sequences(spool: Spool) -> None:
    for _ in range(4):
        spool.append_batch(batch())
    spool.ack(2)
    spool.ack(2)
    spool.ack(99)
    assert [e.sequence for e in everything(spool)] == [1, 3, 4]
    assert spool.stats().entries == 3


def test_append_entry_returns_the_stored_payload(spool: Spool) -> None:
    sequence, entry = spool.append_entry(batch())
    assert entry is not None and entry.sequence == sequence == 1
    assert everything(spool) == [entry]
    assert decode(entry).batch.collected_unix_ms == T0_MS


def test_an_oversized_batch_yields_no_entry(path: Path) -> None:
    spool = Spool(path, max_bytes=10, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    sequence, entry = spool.append_entry(batch())
    assert entry is None
    assert [decode(e).WhichOneof("kind") for e in everything(spool)] == ["gap"]
    assert sequence == 1
    spool.close()


def test_ack_later_deletes_with_the_next_append_in_the_same_commit(spool: Spool) -> None:
    for _ in range(3):
        spool.append_batch(batch())
    spool.ack_later(1)
    spool.ack_later(2)
    spool.ack_later(99)
    assert [e.sequence for e in everything(spool)] == [1, 2, 3], "nothing written yet"
    spool.append_batch(batch())
    assert [e.sequence for e in everything(spool)] == [3, 4]
    assert spool.stats().entries == 2
    assert spool.stats().bytes == sum(len(e.payload) for e in everything(spool))


def test_ack_later_is_written_by_advance_sequence_and_close(path: Path) -> None:
    spool = Spool(path, max_bytes=BIG, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    for _ in range(3):
        spool.append_batch(batch())
    spool.ack_later(1)
    spool.advance_sequence(0)
    assert [e.sequence for e in everything(spool)] == [2, 3]
    spool.ack_later(2)
    spool.close()
    reopened = Spool(path, max_bytes=BIG, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    assert [e.sequence for e in everything(reopened)] == [3]
    reopened.close()


def test_an_ack_noted_but_not_written_before_a_crash_means_a_resend(path: Path) -> None:
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from agent.spool import Spool\n"
        "from proto import agent_pb2\n"
        f"spool = Spool(Path(sys.argv[1]), max_bytes={BIG}, max_age_seconds={BIG},"
        f" clock=lambda: {T0_MS / 1000})\n"
        f"for i in range(2): spool.append_batch(agent_pb2.MetricBatch(collected_unix_ms={T0_MS}))\n"
        "spool.ack_later(1)\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)

    spool = Spool(path, max_bytes=BIG, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    assert sorted(batches(spool)) == [1, 2], "kept: sent again, the collector de-duplicates"
    spool.close()


def test_acked_entries_are_deleted_before_the_bounds_drop_anything(path: Path) -> None:
    one = len(agent_pb2.AgentMessage(batch=batch()).SerializeToString()) + 2
    spool = Spool(path, max_bytes=2 * one, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    spool.append_batch(batch())
    spool.append_batch(batch())
    spool.ack_later(1)
    spool.append_batch(batch())
    assert [e.sequence for e in everything(spool)] == [2, 3]
    assert spool.stats().dropped_batches_total == 0, "an acked batch is no loss"
    spool.close()


def test_stats_count_entries_bytes_and_the_oldest_time(spool: Spool) -> None:
    assert spool.stats().oldest_unix_ms is None
    spool.append_batch(batch(T0_MS + 5))
    spool.append_batch(batch(T0_MS + 9))
    stats = spool.stats()
    assert stats.entries == 2
    assert stats.bytes == sum(len(e.payload) for e in everything(spool))
    assert stats.oldest_unix_ms == T0_MS + 5
    assert stats.next_sequence == 3
    assert stats.dropped_batches_total == 0
    spool.ack(1)
    assert spool.stats().oldest_unix_ms == T0_MS + 9


# --- advance_sequence --------------------------------------------------------------


def test_advance_sequence_moves_forward_only_and_persists(path: Path) -> None:
    spool = Spool(path, max_bytes=BIG, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    spool.advance_sequence(0)
    spool.append_batch(batch())
    spool.advance_sequence(10)
    assert spool.append_batch(batch()) == 11
    spool.advance_sequence(5)
    assert spool.append_batch(batch()) == 12
    spool.advance_sequence(20)
    spool.close()

    reopened = Spool(path, max_bytes=BIG, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    assert reopened.append_batch(batch()) == 21
    assert [e.sequence for e in everything(reopened)] == [1, 11, 12, 21]
    reopened.close()


def test_advance_sequence_renumbers_what_a_fresh_spool_wrote_before_the_welcome(
    path: Path,
) -> None:
    spool = Spool(path, max_bytes=BIG, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    spool.append_batch(batch(T0_MS + 1))
    spool.append_batch(batch(T0_MS + 2))

    spool.advance_sequence(100)  # the collector already holds 1..100 from a lost spool

    stored = batches(spool)  # decode() checks payload sequences were rewritten too
    assert sorted(stored) == [101, 102]
    assert stored[101].collected_unix_ms == T0_MS + 1
    assert spool.stats().bytes == sum(len(e.payload) for e in everything(spool))
    assert spool.append_batch(batch()) == 103
    spool.close()

    # Once numbering is confirmed, later entries at or below last_stored are duplicates
    # the collector already has: they keep their numbers.
    reopened = Spool(path, max_bytes=BIG, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    reopened.advance_sequence(102)
    assert [e.sequence for e in everything(reopened)] == [101, 102, 103]
    assert reopened.append_batch(batch()) == 104
    reopened.close()


# --- size bound ----------------------------------------------------------------------


def check_every_batch_is_pending_or_reported_lost(
    spool: Spool, appended: dict[int, int], kept_bytes_max: int
) -> list[agent_pb2.Gap]:
    """Invariants after drops; ``appended`` maps batch sequence -> collection time."""
    kept = batches(spool)
    lost = {seq: ms for seq, ms in appended.items() if seq not in kept}
    found_gaps = gaps(spool)
    assert lost, "expected some batches to be dropped"
    assert sum(g.lost_batches for g in found_gaps) == len(lost)
    assert spool.stats().dropped_batches_total == len(lost)
    for seq, ms in lost.items():
        covering = [g for g in found_gaps if g.first_lost_sequence <= seq <= g.last_lost_sequence]
        assert len(covering) == 1, f"batch {seq} lost without exactly one gap"
        assert covering[0].start_unix_ms <= ms <= covering[0].end_unix_ms
    for gap in found_gaps:
        inside = {
            s: ms
            for s, ms in lost.items()
            if gap.first_lost_sequence <= s <= gap.last_lost_sequence
        }
        assert gap.lost_batches == len(inside)
        assert gap.first_lost_sequence == min(inside)
        assert gap.last_lost_sequence == max(inside)
        assert gap.start_unix_ms == min(inside.values())
        assert gap.end_unix_ms == max(inside.values())
        assert not set(kept) & set(range(gap.first_lost_sequence, gap.last_lost_sequence + 1))
        assert gap.sequence > gap.last_lost_sequence  # a gap follows what it covers
    assert spool.stats().bytes <= kept_bytes_max
    return found_gaps


def payload_size(collected_ms: int = T0_MS) -> int:
    one = batch(collected_ms)
    one.sequence = 1
    return len(agent_pb2.AgentMessage(batch=one).SerializeToString())


def test_size_limit_drops_the_oldest_batches_and_records_a_gap(path: Path) -> None:
    max_bytes = 4 * payload_size() + 100
    spool = Spool(path, max_bytes=max_bytes, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    appended = {}
    for i in range(6):
        seq = spool.append_batch(batch(T0_MS + i * 1000))
        appended[seq] = T0_MS + i * 1000

    (gap,) = check_every_batch_is_pending_or_reported_lost(spool, appended, max_bytes)
    assert gap.reason == REASON_SIZE
    assert (gap.first_lost_sequence, gap.last_lost_sequence, gap.lost_batches) == (1, 2, 2)
    assert (gap.start_unix_ms, gap.end_unix_ms) == (T0_MS, T0_MS + 1000)
    assert gap.sequence == 6  # taken when batch 5 overflowed the spool
    assert sorted(batches(spool)) == [3, 4, 5, 7]
    spool.close()


def test_a_long_overflow_is_merged_into_few_gaps(path: Path) -> None:
    max_bytes = 10 * payload_size() + 200
    spool = Spool(path, max_bytes=max_bytes, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    appended = {}
    for i in range(200):
        collected = T0_MS + (i * 7919) % 1000  # the clock jumps around: not in sequence order
        appended[spool.append_batch(batch(collected))] = collected

    found = check_every_batch_is_pending_or_reported_lost(spool, appended, max_bytes)
    dropped = sum(g.lost_batches for g in found)
    assert dropped > 150
    assert len(found) <= dropped // 5  # one gap per spool-full of drops, not one per drop
    spool.close()


def test_a_gap_handed_out_by_pending_is_never_changed(path: Path) -> None:
    max_bytes = 3 * payload_size() + 100
    spool = Spool(path, max_bytes=max_bytes, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    appended = {}
    for i in range(4):
        appended[spool.append_batch(batch(T0_MS + i))] = T0_MS + i
    (first_gap,) = gaps(spool)
    sent = {e.sequence: e.payload for e in everything(spool)}  # hands the gap out
    spool.close()

    spool = Spool(path, max_bytes=max_bytes, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    for i in range(4, 6):
        appended[spool.append_batch(batch(T0_MS + i))] = T0_MS + i

    now = {e.sequence: e.payload for e in everything(spool)}
    assert now[first_gap.sequence] == sent[first_gap.sequence]
    assert len(gaps(spool)) == 2
    check_every_batch_is_pending_or_reported_lost(spool, appended, max_bytes)
    spool.close()


def test_a_batch_larger_than_the_spool_is_reported_lost_without_evicting_others(
    path: Path,
) -> None:
    spool = Spool(
        path, max_bytes=2 * payload_size(), max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000)
    )
    spool.append_batch(batch(T0_MS))
    huge = spool.append_batch(batch(T0_MS + 1, samples=500))

    assert sorted(batches(spool)) == [1]
    (gap,) = gaps(spool)
    assert (gap.first_lost_sequence, gap.last_lost_sequence, gap.lost_batches) == (huge, huge, 1)
    assert gap.start_unix_ms == gap.end_unix_ms == T0_MS + 1
    assert gap.reason == REASON_SIZE
    spool.close()


def test_a_smaller_limit_is_applied_when_the_spool_is_reopened(path: Path) -> None:
    spool = Spool(path, max_bytes=BIG, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    for i in range(5):
        spool.append_batch(batch(T0_MS + i))
    spool.close()

    max_bytes = 2 * payload_size() + 100
    spool = Spool(path, max_bytes=max_bytes, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))
    check_every_batch_is_pending_or_reported_lost(
        spool, {i + 1: T0_MS + i for i in range(5)}, max_bytes
    )
    assert sorted(batches(spool)) == [4, 5]
    spool.close()


# --- age bound -----------------------------------------------------------------------


def test_age_limit_drops_batches_older_than_max_age(path: Path) -> None:
    clock = FakeClock(T0_MS / 1000)
    spool = Spool(path, max_bytes=BIG, max_age_seconds=60, clock=clock)
    for _ in range(3):  # collected at t0, t0+10s, t0+20s
        spool.append_batch(batch(int(clock() * 1000)))
        clock.advance(10)
    clock.now = T0_MS / 1000 + 75
    spool.append_batch(batch(int(clock() * 1000)))

    assert sorted(batches(spool)) == [3, 4]
    (gap,) = gaps(spool)
    assert gap.reason == REASON_AGE
    assert (gap.first_lost_sequence, gap.last_lost_sequence, gap.lost_batches) == (1, 2, 2)
    assert (gap.start_unix_ms, gap.end_unix_ms) == (T0_MS, T0_MS + 10_000)
    assert gap.sequence == 5
    assert spool.stats().dropped_batches_total == 2
    spool.close()


def test_age_limit_is_applied_at_open_after_downtime(path: Path) -> None:
    clock = FakeClock(T0_MS / 1000)
    spool = Spool(path, max_bytes=BIG, max_age_seconds=3600, clock=clock)
    spool.append_batch(batch(T0_MS))
    spool.close()

    clock.advance(2 * 3600)
    spool = Spool(path, max_bytes=BIG, max_age_seconds=3600, clock=clock)
    assert batches(spool) == {}
    (gap,) = gaps(spool)
    assert (gap.reason, gap.first_lost_sequence, gap.lost_batches) == (REASON_AGE, 1, 1)
    spool.close()


# --- write failures ------------------------------------------------------------------


def test_write_failures_are_reported_as_a_gap_once_writing_works_again(path: Path) -> None:
    """A real "database or disk is full": the file is capped with SQLite max_page_count."""
    spool = Spool(
        path,
        max_bytes=BIG,
        max_age_seconds=BIG,
        clock=FakeClock(T0_MS / 1000),
        max_file_bytes=48 * 1024,
    )
    appended: dict[int, int] = {}
    failed: list[int] = []
    for i in range(500):
        entries_before = spool.stats().entries
        seq = spool.append_batch(batch(T0_MS + i, samples=20))  # must not raise
        appended[seq] = T0_MS + i
        if spool.stats().entries == entries_before:
            failed.append(seq)
        if len(failed) == 3:
            break
    assert failed == [failed[0], failed[0] + 1, failed[0] + 2], "the file never filled up"
    assert spool.stats().dropped_batches_total == 3
    assert gaps(spool) == []  # nothing can be written yet

    for entry in spool.pending(limit=10):  # the collector catches up: room again
        spool.ack(entry.sequence)
    recovered = spool.append_batch(batch(T0_MS + 999))

    assert recovered == failed[-1] + 1
    assert recovered in batches(spool)
    (gap,) = gaps(spool)
    assert gap.reason == "spool write failed: database or disk is full"
    assert (gap.first_lost_sequence, gap.last_lost_sequence) == (failed[0], failed[-1])
    assert gap.lost_batches == 3
    assert (gap.start_unix_ms, gap.end_unix_ms) == (appended[failed[0]], appended[failed[-1]])
    assert gap.sequence == recovered + 1
    assert spool.stats().dropped_batches_total == 3
    spool.close()


# --- opening, corruption, locking ------------------------------------------------------


def test_the_file_is_private(spool: Spool, path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_corrupt_file_is_moved_aside_and_the_loss_recorded(path: Path) -> None:
    garbage = b"this is not an sqlite database " * 200
    path.write_bytes(garbage)

    spool = Spool(path, max_bytes=BIG, max_age_seconds=BIG, clock=FakeClock(T0_MS / 1000))

    (aside,) = path.parent.glob("spool.db.corrupt-*")
    assert aside.read_bytes() == garbage
    (gap,) = gaps(spool)
    assert gap.reason.startswith("spool file corrupt: moved aside to ")
    assert str(aside) in gap.reason
    assert gap.lost_batches == 0  # unknown
    assert spool.append_batch(batch()) == gap.sequence + 1
    spool.close()


def test_a_spool_from_a_newer_agent_is_refused_and_left_alone(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    before = path.read_bytes()
    with pytest.raises(SpoolError, match="newer agent"):
        Spool(path, max_bytes=BIG, max_age_seconds=BIG)
    assert path.read_bytes() == before


def test_a_foreign_sqlite_file_is_refused(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE something_else (x)")
    with pytest.raises(SpoolError, match="not an aftercare spool"):
        Spool(path, max_bytes=BIG, max_age_seconds=BIG)


def test_a_second_spool_on_the_same_file_is_refused(spool: Spool, path: Path) -> None:
    with pytest.raises(SpoolError, match="another aftercare-agent"):
        Spool(path, max_bytes=BIG, max_age_seconds=BIG)
    assert spool.append_batch(batch()) == 1


def test_read_stats_works_while_the_agent_has_the_spool_open(spool: Spool, path: Path) -> None:
    spool.append_batch(batch(T0_MS + 7))
    spool.append_batch(batch(T0_MS + 8))
    assert read_stats(path) == spool.stats()
    spool.ack(1)
    assert read_stats(path) == spool.stats()
    assert spool.append_batch(batch()) == 3  # the reader took no lock


def test_read_stats_of_a_missing_file_is_a_spool_error(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="no spool"):
        read_stats(tmp_path / "spool.db")
    assert not (tmp_path / "spool.db").exists()


def test_a_missing_directory_is_a_spool_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "spool.db"
    with pytest.raises(SpoolError, match="nowhere") as caught:
        Spool(missing, max_bytes=BIG, max_age_seconds=BIG)
    assert caught.value.path == missing


def test_a_closed_spool_refuses_to_work_and_closing_twice_is_fine(spool: Spool) -> None:
    spool.close()
    spool.close()
    with pytest.raises(SpoolError, match="closed"):
        spool.append_batch(batch())
    with pytest.raises(SpoolError, match="closed"):
        spool.pending()
