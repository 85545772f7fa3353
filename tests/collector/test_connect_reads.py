"""Agents connecting together (a reconnect storm after a replica restarts) share the
store reads of their hello: the pending session requests of their hosts and their
customers' approver revocations are read once per group, not once per agent, and each
agent still gets exactly its own."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from collector.approvers import ApproverService
from collector.sessions.model import RemoteSession
from collector.sessions.service import SessionService
from collector.store import Store
from collector.store.writer import StoreThread
from proto import agent_pb2
from tests.collector.test_store_approvers import revocation
from tests.collector.test_store_sessions import T0, create

HOSTS = 30


class Requested:
    """SessionSignals that records the requests told to hosts."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str]] = []

    def requested(self, session: RemoteSession) -> None:
        self.told.append((session.agent_id, session.session_id))

    def decided(self, session: RemoteSession, decision: str, by: str) -> None: ...

    def over(self, session: RemoteSession) -> None: ...


def counting(store: Store) -> tuple[StoreThread, list[str]]:
    db = StoreThread(store)
    calls: list[str] = []
    db.observe = lambda call, seconds: calls.append(call)
    return db, calls


def test_hosts_connecting_together_read_their_pending_requests_once(store: Store) -> None:
    waiting = {f"c{n}-a1": create(store, n, customer=f"c{n}").session_id for n in range(5)}
    db, calls = counting(store)
    signals = Requested()
    service = SessionService(db, lambda: T0 + 1000, signals)

    async def storm() -> None:
        await asyncio.gather(*(service.agent_connected(f"c{n}-a1") for n in range(HOSTS)))

    asyncio.run(storm())
    db.close()
    assert sorted(signals.told) == sorted(waiting.items())
    assert set(calls) == {"pending_sessions_of"} and len(calls) <= 2, calls


def test_hosts_connecting_together_read_their_revocations_once(store: Store) -> None:
    for customer in ("acme", "globex"):  # each signed revocation told apart by its bytes
        store.add_revocation(replace(revocation(customer=customer), revocation=customer.encode()))
    db, calls = counting(store)
    service = ApproverService(db, lambda agent_id, message: True, lambda: T0)
    customers = ["acme", "globex", "initech"] * (HOSTS // 3)

    async def storm() -> list[agent_pb2.CollectorMessage | None]:
        return await asyncio.gather(*(service.revocations_message(c) for c in customers))

    messages = asyncio.run(storm())
    db.close()
    for customer, message in zip(customers, messages, strict=True):
        if customer == "initech":
            assert message is None
        else:
            assert message is not None
            [told] = message.approver_revocations.revocations
            assert told == customer.encode()
    assert set(calls) == {"revocations_of"} and len(calls) <= 2, calls
