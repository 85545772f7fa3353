"""The Store contract for playbook runs: every backend passes it unchanged."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from collector.errors import Conflict, InvalidRequest, NotFound, StoreError
from collector.runs.errors import UnknownRun
from collector.runs.model import FINISHED_RUN_STATES, RUN_STATES, RunRecord
from collector.store import Store
from collector.store.migrate import load_migrations
from tests.collector.conftest import StoreBackend

T0 = 1_700_000_000_000  # an arbitrary "now" in unix ms


def new_run(
    run_id: str = "run-1a2b3c4d5e6f",
    customer: str = "acme",
    agent_id: str = "a1",
    requested_ms: int = T0,
    **changes: Any,
) -> RunRecord:
    base = RunRecord(
        run_id=run_id,
        agent_id=agent_id,
        customer=customer,
        hostname="web1",
        playbook="restart_service",
        version="1.2.0",
        mode="mutating",
        params={"service": "nginx", "password": "***"},
        requested_by="user:erin",
        requested_ms=requested_ms,
    )
    return replace(base, **changes)


# -- create and read ------------------------------------------------------------------


def test_create_and_get(store: Store) -> None:
    stored = store.create_run(new_run(ticket_id=7))
    assert stored == new_run(ticket_id=7, updated_ms=T0)  # updated_ms defaults to requested
    assert (stored.state, stored.message, stored.finished_ms) == ("pending", "", None)
    assert (stored.result, stored.output_bytes, stored.output_sha256) == ({}, 0, "")
    assert stored.approved_by is None
    assert store.get_run(stored.run_id) == stored
    assert store.get_run("run-000000000000") is None


def test_create_keeps_every_field(store: Store) -> None:
    run = new_run(
        mode="read-only",
        ticket_id=None,
        state="running",
        message="step 2 of 3",
        updated_ms=T0 + 5,
        result={"steps": [{"name": "check", "exit_code": 0}]},
        output_bytes=120,
        output_sha256="ab" * 32,
        approved_by="user:bob",
    )
    assert store.create_run(run) == run
    assert store.get_run(run.run_id) == run


def test_create_finished_run_sets_finished_ms(store: Store) -> None:
    refused = store.create_run(new_run(state="refused", message="mutating runs are off"))
    assert (refused.finished_ms, refused.updated_ms) == (T0, T0)
    assert store.get_run(refused.run_id) == refused
    with pytest.raises(Conflict, match="finished"):
        store.update_run(refused.run_id, state="running", at_ms=T0 + 1)


def test_duplicate_run_id_conflicts(store: Store) -> None:
    first = store.create_run(new_run())
    with pytest.raises(Conflict, match="already exists"):
        store.create_run(new_run(customer="zeta", playbook="other"))
    assert store.get_run(first.run_id) == first
    assert store.list_runs() == [first]


def test_create_refuses_bad_input(store: Store) -> None:
    bad: list[tuple[str, dict[str, Any]]] = [
        ("run_id", {"run_id": ""}),
        ("customer", {"customer": ""}),
        ("agent_id", {"agent_id": ""}),
        ("playbook", {"playbook": ""}),
        ("requested_by", {"requested_by": ""}),
        ("state", {"state": "exploded"}),
        ("mode", {"mode": "yolo"}),
        ("params", {"params": {"n": 1}}),
        ("JSON", {"result": {"bad": object()}}),
        ("output_bytes", {"output_bytes": -1}),
        ("finished_ms", {"finished_ms": T0}),  # on a pending run
    ]
    for match, change in bad:
        with pytest.raises(InvalidRequest, match=match):
            store.create_run(new_run(**change))
    assert store.list_runs() == []


# -- lists ----------------------------------------------------------------------------


@pytest.fixture
def several(store: Store) -> dict[str, RunRecord]:
    """acme/a1: r1 (T0), r2 (T0+2); acme/a2: r3 (T0+1); zeta/z1: r4 (T0+3); and
    acme/a1: r0 and r5, both at T0+2 beside r2 (ties order by run_id)."""
    specs = {
        "r1": ("acme", "a1", T0),
        "r2": ("acme", "a1", T0 + 2),
        "r3": ("acme", "a2", T0 + 1),
        "r4": ("zeta", "z1", T0 + 3),
        "r5": ("acme", "a1", T0 + 2),
        "r0": ("acme", "a1", T0 + 2),
    }
    return {
        name: store.create_run(new_run(f"run-{name}", customer, agent, at))
        for name, (customer, agent, at) in specs.items()
    }


def names(runs: list[RunRecord]) -> list[str]:
    return [run.run_id.removeprefix("run-") for run in runs]


def test_list_newest_first(store: Store, several: dict[str, RunRecord]) -> None:
    assert names(store.list_runs()) == ["r4", "r0", "r2", "r5", "r3", "r1"]
    assert store.list_runs()[0] == several["r4"]  # the stored record, not a summary


def test_list_filters_and_limit(store: Store, several: dict[str, RunRecord]) -> None:
    assert names(store.list_runs(customer="acme")) == ["r0", "r2", "r5", "r3", "r1"]
    assert names(store.list_runs(agent_id="a1")) == ["r0", "r2", "r5", "r1"]
    assert names(store.list_runs("acme", "a2")) == ["r3"]
    assert names(store.list_runs(customer="zeta", agent_id="a1")) == []
    assert names(store.list_runs(customer="nobody")) == []
    assert names(store.list_runs(limit=2)) == ["r4", "r0"]
    assert names(store.list_runs(customer="acme", limit=1)) == ["r0"]
    with pytest.raises(InvalidRequest, match="limit"):
        store.list_runs(limit=0)


def test_list_a_tickets_runs(store: Store) -> None:
    store.create_run(new_run("run-t1", ticket_id=7, requested_ms=T0))
    store.create_run(new_run("run-t2", ticket_id=7, requested_ms=T0 + 1))
    store.create_run(new_run("run-t3", ticket_id=8, requested_ms=T0 + 2))
    store.create_run(new_run("run-t4", customer="zeta", ticket_id=7, requested_ms=T0 + 3))
    store.create_run(new_run("run-none", requested_ms=T0 + 4))
    assert names(store.list_runs(ticket_id=7)) == ["t4", "t2", "t1"]
    assert names(store.list_runs("acme", ticket_id=7)) == ["t2", "t1"]
    assert names(store.list_runs(ticket_id=7, limit=1)) == ["t4"]
    assert names(store.list_runs(ticket_id=9)) == []


def test_list_default_limit_is_100(store: Store) -> None:
    for n in range(105):
        store.create_run(new_run(f"run-{n:03d}", requested_ms=T0 + n))
    runs = store.list_runs()
    assert len(runs) == 100 and runs[0].run_id == "run-104" and runs[-1].run_id == "run-005"


# -- updates --------------------------------------------------------------------------


def test_update_changes_only_the_given_fields(store: Store) -> None:
    run = store.create_run(new_run(ticket_id=3))
    sent = store.update_run(run.run_id, state="sent", at_ms=T0 + 1)
    assert sent == replace(run, state="sent", updated_ms=T0 + 1)
    waiting = store.update_run(
        run.run_id, state="waiting_approval", message="needs a second pair of eyes", at_ms=T0 + 2
    )
    assert waiting == replace(
        sent, state="waiting_approval", message="needs a second pair of eyes", updated_ms=T0 + 2
    )
    approved = store.update_run(run.run_id, approved_by="user:bob", at_ms=T0 + 3)
    assert approved == replace(waiting, approved_by="user:bob", updated_ms=T0 + 3)
    running = store.update_run(run.run_id, state="running", message="", at_ms=T0 + 4)
    assert running == replace(approved, state="running", message="", updated_ms=T0 + 4)
    partial = store.update_run(
        run.run_id, result={"steps": [{"name": "stop", "exit_code": 0}]}, at_ms=T0 + 5
    )
    assert partial.result == {"steps": [{"name": "stop", "exit_code": 0}]}
    assert (partial.state, partial.finished_ms, partial.updated_ms) == ("running", None, T0 + 5)
    assert store.get_run(run.run_id) == partial


def test_finishing_a_run(store: Store) -> None:
    run = store.create_run(new_run())
    store.update_run(run.run_id, state="running", at_ms=T0 + 1)
    result = {
        "steps": [{"name": "restart", "exit_code": 0, "duration_ms": 812}],
        "truncated": False,
        "redactions": 2,
    }
    done = store.update_run(
        run.run_id,
        state="ok",
        message="done",
        at_ms=T0 + 10,
        result=result,
        output_bytes=2048,
        output_sha256="cd" * 32,
    )
    assert done == replace(
        run,
        state="ok",
        message="done",
        updated_ms=T0 + 10,
        finished_ms=T0 + 10,  # defaults to at_ms
        result=result,
        output_bytes=2048,
        output_sha256="cd" * 32,
    )
    assert store.get_run(run.run_id) == done
    other = store.create_run(new_run("run-2"))
    timed_out = store.update_run(
        other.run_id, state="timed_out", at_ms=T0 + 30, finished_ms=T0 + 20
    )
    assert (timed_out.finished_ms, timed_out.updated_ms) == (T0 + 20, T0 + 30)


@pytest.mark.parametrize("final", sorted(FINISHED_RUN_STATES))
def test_finished_run_never_changes(store: Store, final: Any) -> None:
    run = store.create_run(new_run())
    done = store.update_run(run.run_id, state=final, at_ms=T0 + 1)
    assert done.finished_ms == T0 + 1
    late: list[dict[str, Any]] = [
        {"state": "running"},
        {"state": final},  # even a repeat of the same report
        {"state": "ok" if final != "ok" else "failed"},
        {"message": "late"},
        {"result": {"late": True}},
        {"output_bytes": 1, "output_sha256": "ef" * 32},
        {"approved_by": "user:bob"},
        {},
    ]
    for change in late:
        with pytest.raises(Conflict, match="finished"):
            store.update_run(run.run_id, at_ms=T0 + 2, **change)
    assert store.get_run(run.run_id) == done


def test_update_refuses_bad_input_and_writes_nothing(store: Store) -> None:
    run = store.create_run(new_run())
    with pytest.raises(InvalidRequest, match="state"):
        store.update_run(run.run_id, state="exploded", at_ms=T0 + 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="JSON"):
        store.update_run(run.run_id, state="ok", result={"x": {1, 2}}, at_ms=T0 + 1)
    with pytest.raises(InvalidRequest, match="output_bytes"):
        store.update_run(run.run_id, output_bytes=-5, at_ms=T0 + 1)
    with pytest.raises(InvalidRequest, match="finished_ms"):
        store.update_run(run.run_id, state="running", finished_ms=T0 + 1, at_ms=T0 + 1)
    assert store.get_run(run.run_id) == run


def test_update_unknown_run(store: Store) -> None:
    with pytest.raises(UnknownRun, match="run-nope") as raised:
        store.update_run("run-nope", state="sent", at_ms=T0)
    assert isinstance(raised.value, NotFound) and raised.value.run_id == "run-nope"
    assert store.get_run("run-nope") is None


def test_every_state_is_storable(store: Store) -> None:
    for n, state in enumerate(RUN_STATES):
        run = store.create_run(new_run(f"run-{n}", state=state))
        assert store.get_run(run.run_id) == run
        assert (run.finished_ms is not None) == (state in FINISHED_RUN_STATES)


# -- JSON, persistence, schema --------------------------------------------------------


def test_json_round_trip_with_unicode(store: Store) -> None:
    params = {"路径": "/数据/日志", "emoji": "🔥", "quote": "a\"b'c\\", "empty": ""}
    run = store.create_run(new_run(params=params, hostname="服务器-1", message="排队中"))
    result = {
        "steps": [{"name": "清理", "exit_code": 0, "duration_ms": 1.5, "stderr": None}],
        "truncated": True,
        "redactions": {"password": 2},
        "说明": "完成 ✓",
        "n": -7,
    }
    done = store.update_run(run.run_id, state="ok", message="完成", result=result, at_ms=T0 + 1)
    again = store.get_run(run.run_id)
    assert again == done
    assert again.params == params and again.result == result
    assert (again.hostname, again.message) == ("服务器-1", "完成")


def test_runs_survive_close_and_reopen(store_backend: StoreBackend) -> None:
    first = store_backend.open()
    run = first.create_run(new_run(params={"机房": "北京"}))
    running = first.update_run(run.run_id, state="running", at_ms=T0 + 1)
    done = first.create_run(new_run("run-2", requested_ms=T0 + 5, state="failed"))
    first.close()
    again = store_backend.open()
    assert again.get_run(run.run_id) == running
    assert again.list_runs(customer="acme") == [done, running]
    with pytest.raises(Conflict):  # ids stay taken
        again.create_run(new_run())
    with pytest.raises(Conflict, match="finished"):  # and finished runs final
        again.update_run(done.run_id, state="ok", at_ms=T0 + 6)
    assert again.update_run(run.run_id, state="ok", at_ms=T0 + 7).finished_ms == T0 + 7


def test_runs_migration_applied_once(store_backend: StoreBackend) -> None:
    migrations = {m.version: m.name for m in load_migrations(store_backend.dialect)}
    assert migrations[3] == "runs"
    store_backend.open().close()
    store_backend.open().close()
    rows = store_backend.query_raw("SELECT version FROM schema_migrations WHERE version = 3")
    assert rows == [(3,)]
    assert store_backend.query_raw("SELECT COUNT(*) FROM runs") == [(0,)]


def test_corrupt_run_row_is_a_store_error(store_backend: StoreBackend) -> None:
    store = store_backend.open()
    run = store.create_run(new_run())
    store_backend.execute_raw("UPDATE runs SET state = ? WHERE run_id = ?", ("gone", run.run_id))
    with pytest.raises(StoreError, match="corrupt"):
        store.get_run(run.run_id)
    store_backend.execute_raw(
        "UPDATE runs SET state = 'ok', result = ? WHERE run_id = ?", ("[1]", run.run_id)
    )
    with pytest.raises(StoreError, match="result"):
        store.get_run(run.run_id)


def test_the_reason_is_kept_with_the_run(store: Store) -> None:
    why = store.create_run(new_run(reason="磁盘告警 disk alert on web1", ticket_id=7))
    bare = store.create_run(new_run("run-2", requested_ms=T0 + 1))
    assert store.get_run(why.run_id).reason == "磁盘告警 disk alert on web1"  # type: ignore[union-attr]
    assert store.get_run(bare.run_id).reason == ""  # type: ignore[union-attr]
    assert [r.reason for r in store.list_runs(customer="acme", ticket_id=7)] == [why.reason]
    done = store.update_run(why.run_id, state="ok", at_ms=T0 + 9)
    assert done.reason == why.reason  # updates never touch it
    with pytest.raises(InvalidRequest, match="reason"):
        store.create_run(new_run("run-3", reason=None))  # type: ignore[arg-type]
    assert store.get_run("run-3") is None


def test_ticket_runs_and_waiting_runs_are_read_by_index(store_backend: StoreBackend) -> None:
    if store_backend.dialect != "sqlite":
        pytest.skip("query plans are checked on SQLite")
    store_backend.open().close()
    plans = {
        "runs_by_ticket": "SELECT run_id FROM runs WHERE ticket_id = 7 ORDER BY requested_ms DESC",
        "runs_by_state": "SELECT run_id FROM runs WHERE state = 'waiting_approval' "
        "AND approved_by IS NULL ORDER BY requested_ms, run_id",
    }
    for index, query in plans.items():
        plan = " ".join(str(row) for row in store_backend.query_raw("EXPLAIN QUERY PLAN " + query))
        assert index in plan, (index, plan)
