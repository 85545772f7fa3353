"""The Store contract for the approval notices' reads: every backend passes it unchanged."""

from __future__ import annotations

import pytest

from collector.errors import InvalidRequest
from collector.runs.model import RunState
from collector.store import Store
from tests.collector.test_store_runs import T0, new_run


def test_audit_targets_follow_one_action_from_a_watermark(store: Store) -> None:
    first = store.append_audit("system", "customer.notice_sent", "k1", {}, T0)
    store.append_audit("user:erin", "session.requested", "ses-1", {}, T0)
    second = store.append_audit("system", "customer.notice_sent", "k2", {}, T0)
    third = store.append_audit("system", "customer.notice_sent", "k3", {}, T0)
    everything = store.audit_targets("customer.notice_sent", 0, 10)
    assert everything == [(first.id, "k1"), (second.id, "k2"), (third.id, "k3")]
    assert store.audit_targets("customer.notice_sent", first.id, 10) == everything[1:]
    assert store.audit_targets("customer.notice_sent", 0, 2) == everything[:2]
    assert store.audit_targets("customer.notice_sent", third.id, 10) == []
    assert store.audit_targets("nothing.like.it", 0, 10) == []
    with pytest.raises(InvalidRequest):
        store.audit_targets("customer.notice_sent", 0, 0)


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
