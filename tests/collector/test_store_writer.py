"""The store writer times every call: the collector's aftercare_store_call_seconds
and a warning for a call that held the writer long (every call behind it waited)."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.errors import UnknownAgent
from collector.store import SQLiteStore
from collector.store import writer as writer_module
from collector.store.writer import StoreThread
from tests.collector.test_store_contract import make_agent


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StoreThread]:
    thread = StoreThread(SQLiteStore(tmp_path / "store.db"))
    yield thread
    thread.close()


def test_every_call_is_observed_by_its_method_name(db: StoreThread) -> None:
    seen: list[tuple[str, float]] = []
    db.observe = lambda call, seconds: seen.append((call, seconds))

    async def calls() -> None:
        await db.call(db.store.add_agent, make_agent("a1"))
        await db.call(functools.partial(db.store.get_agent, "a1"))

    asyncio.run(calls())
    assert [call for call, _ in seen] == ["add_agent", "get_agent"]
    assert all(seconds >= 0 for _, seconds in seen)


def test_a_failing_call_is_observed_and_its_error_reaches_the_caller(db: StoreThread) -> None:
    seen: list[str] = []
    db.observe = lambda call, seconds: seen.append(call)
    with pytest.raises(UnknownAgent):
        asyncio.run(db.call(db.store.revoke_agent, "no-such-agent", 1))
    assert seen == ["revoke_agent"]


def test_a_slow_call_is_logged(
    db: StoreThread, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(writer_module, "SLOW_CALL_SECONDS", 0.0)
    with caplog.at_level(logging.WARNING, logger="collector.store.writer"):
        asyncio.run(db.call(db.store.get_agent, "a1"))
    assert "store call get_agent held the writer" in caplog.text


class FoldingStore:
    """Records which thread each call ran on."""

    def __init__(self, beside: bool) -> None:
        self.fold_beside_writer = beside
        self.threads: dict[str, str] = {}

    def fold_history(self, now_ms: int, from_agent: str, max_rows: int) -> tuple[int, None]:
        self.threads["fold_history"] = threading.current_thread().name
        return max_rows, None

    def get_agent(self, agent_id: str) -> None:
        self.threads["get_agent"] = threading.current_thread().name

    def close(self) -> None:
        pass


@pytest.mark.parametrize("beside", [False, True])
def test_the_fold_runs_on_the_writer_unless_the_store_folds_beside_it(beside: bool) -> None:
    store = FoldingStore(beside)
    db = StoreThread(store)  # type: ignore[arg-type]  # the calls it makes are these
    seen: list[str] = []
    db.observe = lambda call, seconds: seen.append(call)

    async def calls() -> tuple[int, str | None]:
        await db.call(store.get_agent, "a1")
        return await db.fold_history(1_000, "", 250)

    try:
        assert asyncio.run(calls()) == (250, None)
    finally:
        db.close()
    assert store.threads["get_agent"].startswith("store-writer")
    fold_thread = store.threads["fold_history"]
    assert fold_thread.startswith("history-fold" if beside else "store-writer")
    assert seen == (["get_agent"] if beside else ["get_agent", "fold_history"])
