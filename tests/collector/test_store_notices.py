"""The Store contract for the approval notices' reads: every backend passes it unchanged."""

from __future__ import annotations

import pytest

from collector.errors import InvalidRequest
from collector.runs.model import RunState
from collector.store import Store
from collector.store.notice_sqlite import _WAITING_RUNS
from tests.collector.conftest import StoreBackend
from tests.collector.test_store_runs import T0, new_run


def test_runs_waiting_approval_are_the_unapproved_ones_oldest_first(store: Store) -> None:
    states: list[RunState] = ["waiting_approval", "running", "waiting_approval", "sent"]
    for number, state in enumerate(states):
        run = store.create_run(new_run(f"run-{number:012x}", requested_ms=T0 - number))
        store.update_run(run.run_id, state=state, at_ms=T0)
    approved = store.create_run(new_run("run-0000000000aa"))
    store.update_run(approved.run_id, state="waiting_approval", at_ms=T0)
    store.update_run(approved.run_id, approved_by="user:carol", at_ms=T0)
    waiting = store.runs_waiting_approval(["acme"], T0 - 10, 10)
    assert [r.run_id for r in waiting] == ["run-000000000002", "run-000000000000"]
    assert [r.run_id for r in store.runs_waiting_approval(["acme"], 0, 1)] == ["run-000000000002"]


def test_runs_waiting_approval_are_only_the_named_customers_recent_ones(store: Store) -> None:
    for run_id, customer, at in [
        ("run-00000000000a", "acme", T0),
        ("run-00000000000b", "globex", T0),
        ("run-00000000000c", "acme", T0 - 1000),  # before since_ms
        ("run-00000000000d", "initech", T0),
    ]:
        store.create_run(new_run(run_id, customer=customer, requested_ms=at))
        store.update_run(run_id, state="waiting_approval", at_ms=at)
    recent = store.runs_waiting_approval(["acme", "globex"], T0 - 999, 10)
    assert sorted(r.run_id for r in recent) == ["run-00000000000a", "run-00000000000b"]
    assert [r.run_id for r in store.runs_waiting_approval(["globex"], 0, 10)] == [
        "run-00000000000b"
    ]
    assert store.runs_waiting_approval([], 0, 10) == []
    with pytest.raises(InvalidRequest):
        store.runs_waiting_approval(["acme"], 0, 0)


def test_the_waiting_runs_query_reads_an_index_not_the_table(
    store_backend: StoreBackend,
) -> None:
    if store_backend.dialect != "sqlite":
        pytest.skip("the query plan is SQLite's")
    store_backend.open()  # migrated
    query = _WAITING_RUNS.format(customers="?, ?")
    plan = store_backend.query_raw(f"EXPLAIN QUERY PLAN {query}", ["a", "b", T0, 10])
    details = " ".join(str(row[-1]) for row in plan)
    # by customer (runs_by_customer) or by state (runs_by_state, migration 0016)
    assert "SEARCH runs USING INDEX" in details and "SCAN runs" not in details
