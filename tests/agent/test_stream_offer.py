"""The link sends a just-appended (durable) batch from memory only when it is next in order."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent.config import AgentConfig
from agent.main_loop import hello_for
from agent.spool import Spool, SpoolEntry
from agent.stream import OFFERED_KEPT, CollectorLink, SpoolWorker
from common.one_thread import OneThread
from proto import agent_pb2


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


NOW_MS = int(time.time() * 1000)


class FakeCall:
    """Records what the link writes on the control stream."""

    def __init__(self) -> None:
        self.written: list[int] = []

    async def write(self, payload: bytes) -> None:
        message = agent_pb2.AgentMessage.FromString(payload)
        inner = message.batch if message.HasField("batch") else message.gap
        self.written.append(inner.sequence)


class CountingSpool(Spool):
    """A real spool that counts ``pending`` reads."""

    reads = 0

    def pending(self, after_sequence: int = 0, limit: int = 100) -> list[SpoolEntry]:
        self.reads += 1
        return super().pending(after_sequence, limit)


def test_the_send_loop_reads_the_spool_only_when_memory_cannot_continue(tmp_path: Path) -> None:
    async def main() -> None:
        worker = SpoolWorker.__new__(SpoolWorker)
        worker._thread = OneThread("spool")
        spool = CountingSpool(tmp_path / "spool.db", max_bytes=1 << 30, max_age_seconds=1e9)
        worker._spool = spool
        config = AgentConfig()
        sender = CollectorLink(tmp_path, worker, config.stream, hello_for(config))
        call = FakeCall()
        for _ in range(3):  # a backlog from before the session
            spool.append_batch(agent_pb2.MetricBatch(collected_unix_ms=NOW_MS))
        task = asyncio.create_task(sender._send_pending(call, set(), asyncio.Event()))  # type: ignore[arg-type]

        async def settle(written: int) -> None:
            for _ in range(200):
                if len(call.written) >= written:
                    return
                await asyncio.sleep(0.01)

        await settle(3)
        assert call.written == [1, 2, 3] and spool.reads == 1, "the backlog, in one read"
        for _ in range(3):
            _, fresh = spool.append_entry(agent_pb2.MetricBatch(collected_unix_ms=NOW_MS))
            assert fresh is not None
            sender.offer(fresh)
            await settle(len(call.written) + 1)
        assert call.written == [1, 2, 3, 4, 5, 6]
        assert spool.reads == 1, "fresh batches next in order come from memory"
        spool.append_batch(agent_pb2.MetricBatch(collected_unix_ms=NOW_MS))  # 7: not offered
        _, fresh = spool.append_entry(agent_pb2.MetricBatch(collected_unix_ms=NOW_MS))
        assert fresh is not None
        sender.offer(fresh)  # 8 does not continue 6: read 7 and 8 from the spool
        await settle(8)
        assert call.written == [1, 2, 3, 4, 5, 6, 7, 8]
        assert spool.reads == 2
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        worker.close()

    asyncio.run(main())
