"""GroupCommitter: batches queued by many streams share commits; each future says what
happened to its own batch, only after the commit."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from collector.errors import StoreError, UnknownAgent
from collector.server.group_commit import GroupCommitter
from collector.store import HelloRecord, Store
from collector.store.group_call import GroupCall
from collector.store.writer import StoreThread
from tests.collector.test_store_contract import make_agent
from tests.collector.test_store_group_commit import Decoder


def test_many_queued_batches_share_few_commits(store: Store) -> None:
    for n in range(20):
        store.add_agent(make_agent(f"a{n}", hostname=f"web{n}"))
    decoder = Decoder()
    db = StoreThread(store)

    async def main() -> list[bool]:
        committer = GroupCommitter(db)
        futures = [
            committer.submit(decoder.batch(f"a{n}", seq), 2)
            for seq in range(1, 6)
            for n in range(20)
        ]
        outcomes = await asyncio.gather(*futures)
        assert committer.groups < len(futures) // 10, committer.groups
        return [o.stored for o in outcomes]

    assert asyncio.run(main()) == [True] * 100
    for n in range(20):
        assert store.stored_sequences(f"a{n}") == [1, 2, 3, 4, 5]


def test_groups_are_bounded_and_errors_stay_with_their_batch(store: Store) -> None:
    store.add_agent(make_agent("a1"))
    decoder = Decoder()
    db = StoreThread(store)

    async def main() -> None:
        committer = GroupCommitter(db, max_group_samples=4)  # two batches of 2 samples
        futures = [committer.submit(decoder.batch("a1", seq), 2) for seq in range(1, 7)]
        ghost = committer.submit(decoder.batch("ghost", 1), 2)
        outcomes = await asyncio.gather(*futures)
        assert all(o.stored and o.error is None for o in outcomes)
        assert isinstance((await ghost).error, UnknownAgent)
        assert committer.groups >= 3  # never more than 4 samples in one

    asyncio.run(main())
    assert store.stored_sequences("a1") == [1, 2, 3, 4, 5, 6]


def test_a_batch_waits_for_the_commit(store: Store) -> None:
    store.add_agent(make_agent("a1"))
    decoder = Decoder()
    db = StoreThread(store)

    async def main() -> None:
        committer = GroupCommitter(db)
        future = committer.submit(decoder.batch("a1", 1), 2)
        assert not future.done()
        assert (await future).stored
        assert store.stored_sequences("a1") == [1]
        again = await committer.submit(decoder.batch("a1", 1), 2)
        assert not again.stored and again.error is None

    asyncio.run(main())


def test_hellos_arriving_together_share_one_transaction(store: Store) -> None:
    for n in range(30):
        store.add_agent(make_agent(f"a{n}", hostname=f"web{n}"))
    db = StoreThread(store)

    async def main() -> list[int | None]:
        hellos: GroupCall[HelloRecord, int | None] = GroupCall(
            db, store.record_hellos, "hello-group"
        )
        futures = [hellos.submit(HelloRecord(f"a{n}", f"h{n}", "1.0", n)) for n in range(30)]
        futures.append(hellos.submit(HelloRecord("ghost", "h", "1.0", 1)))
        results = await asyncio.gather(*futures)
        assert hellos.groups <= 2, hellos.groups  # the first alone, the rest together
        return results

    assert asyncio.run(main()) == [0] * 30 + [None]
    agent = store.get_agent("a29")
    assert agent is not None and agent.hostname == "h29"


def test_a_failing_group_gives_every_submitter_the_error() -> None:
    class Broken:
        fold_beside_writer = False

        def fail(self, items: Sequence[int]) -> list[int]:
            raise StoreError("disk full")

    async def main() -> None:
        db = StoreThread(Broken())  # type: ignore[arg-type]  # only call() is used
        group: GroupCall[int, int] = GroupCall(db, Broken().fail, "broken")
        futures = [group.submit(n) for n in range(3)]
        for outcome in await asyncio.gather(*futures, return_exceptions=True):
            assert isinstance(outcome, StoreError) and "disk full" in str(outcome)

    asyncio.run(main())
