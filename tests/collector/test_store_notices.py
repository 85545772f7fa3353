"""The Store contract for the approval notices' reads: every backend passes it unchanged."""

from __future__ import annotations

from collector.runs.model import RunState
from collector.store import Store
from tests.collector.test_store_runs import T0, new_run


def test_runs_waiting_approval_are_the_unapproved_ones_oldest_first(store: Store) -> None:
    states: list[RunState] = ["waiting_approval", "running", "waiting_approval", "sent"]
    for number, state in enumerate(states):
        run = store.create_run(new_run(f"run-{number:012x}", requested_ms=T0 - number))
        store.update_run(run.run_id, state=state, at_ms=T0)
    approved = store.create_run(new_run("run-0000000000aa"))
    store.update_run(approved.run_id, state="waiting_approval", at_ms=T0)
    store.update_run(approved.run_id, approved_by="user:carol", at_ms=T0)
    waiting = store.runs_waiting_approval(10)
    assert [r.run_id for r in waiting] == ["run-000000000002", "run-000000000000"]
    assert [r.run_id for r in store.runs_waiting_approval(1)] == ["run-000000000002"]
