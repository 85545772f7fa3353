"""The bounded FIFO behind the tunnel's backpressure."""

from __future__ import annotations

import asyncio

from agent.session.fifo import Fifo


def test_put_waits_for_room_force_does_not() -> None:
    async def test() -> None:
        fifo: Fifo[int] = Fifo(2)
        assert await fifo.put(1) and await fifo.put(2)
        waiting = asyncio.create_task(fifo.put(3))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        assert fifo.force(99)  # control items never wait
        assert await fifo.get() == 1
        await asyncio.sleep(0.01)
        assert not waiting.done()  # still 2 queued (2, 99)
        assert await fifo.get() == 2
        assert await waiting
        assert [await fifo.get(), await fifo.get()] == [99, 3]

    asyncio.run(test())


def test_close_hands_out_the_rest_then_none_and_releases_producers() -> None:
    async def test() -> None:
        fifo: Fifo[str] = Fifo(1)
        await fifo.put("a")
        waiting = asyncio.create_task(fifo.put("b"))
        await asyncio.sleep(0.01)
        fifo.close()
        assert await waiting is False
        assert not fifo.force("c")
        assert await fifo.get() == "a"
        assert await fifo.get() is None

    asyncio.run(test())


def test_close_with_drop_discards_the_queue() -> None:
    async def test() -> None:
        fifo: Fifo[str] = Fifo(4)
        fifo.force("a")
        fifo.close(drop=True)
        assert await fifo.get() is None

    asyncio.run(test())


def test_released_producers_drop_but_forced_items_still_queue() -> None:
    async def test() -> None:
        fifo: Fifo[str] = Fifo(1)
        await fifo.put("data")
        waiting = asyncio.create_task(fifo.put("more data"))
        await asyncio.sleep(0.01)
        fifo.release_producers()
        assert await waiting is False
        assert not await fifo.put("late data")
        assert fifo.force("end")
        fifo.close()
        assert [await fifo.get(), await fifo.get(), await fifo.get()] == ["data", "end", None]

    asyncio.run(test())
