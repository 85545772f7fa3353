"""The Store contract for inspections: plans, occurrences, optimistic updates, the
write-once published report, change records and customer settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from collector.errors import Conflict, InvalidRequest, StoreError
from collector.inspections.errors import InspectionNotFound, PlanNotFound
from collector.inspections.model import (
    ChangeRecord,
    HostResult,
    NewInspection,
    NewInspectionEvent,
    Plan,
)
from collector.store import Store
from tests.collector.conftest import StoreBackend

T0 = 1_800_000_000_000
PLAN = Plan(
    0, "acme", "quarter", T0, "web-*", "erin", 7 * 86_400_000, ("/etc/a",), "active", T0, "erin", T0
)


def _occurrence(store: Store, index: int = 0, plan_id: int = 1) -> NewInspection:
    return NewInspection(plan_id, "acme", index, T0 + index, "erin", "web-*", 1000, ("/etc/a",))


def _planned(at: int = T0) -> NewInspectionEvent:
    return NewInspectionEvent(at, "system", "planned", {"plan_id": 1})


def test_plans_round_trip_and_update_optimistically(store: Store) -> None:
    plan = store.create_plan(PLAN)
    assert plan == replace(PLAN, id=plan.id)
    assert store.get_plan(plan.id) == plan and store.list_plans("acme") == [plan]
    assert store.list_plans("globex") == [] and store.get_plan(999) is None
    changed = store.update_plan(replace(plan, engineer="frank", updated_ms=T0 + 5))
    assert (changed.engineer, changed.version, changed.updated_ms) == ("frank", 2, T0 + 5)
    with pytest.raises(Conflict):
        store.update_plan(replace(plan, engineer="stale"))  # version 1 is gone
    with pytest.raises(PlanNotFound):
        store.update_plan(replace(plan, id=999))
    with pytest.raises(InvalidRequest, match="every"):
        store.create_plan(replace(PLAN, every="weekly"))  # type: ignore[arg-type]


def test_one_inspection_per_occurrence_with_its_timeline(store: Store) -> None:
    plan = store.create_plan(PLAN)
    first = store.create_inspection(_occurrence(store, 0, plan.id), _planned())
    assert (first.state, first.occurrence, first.version) == ("planned", 0, 1)
    assert first.config_files == ("/etc/a",) and first.host_results == ()
    with pytest.raises(Conflict, match="occurrence 0"):
        store.create_inspection(_occurrence(store, 0, plan.id), _planned())
    store.create_inspection(_occurrence(store, 1, plan.id), _planned())
    assert store.plan_occurrences(plan.id) == 2 and store.plan_occurrences(999) == 0
    listed = store.list_inspections("acme", None, 10)
    assert [i.occurrence for i in listed] == [1, 0]  # newest first
    assert store.list_inspections(None, {"signed"}, 10) == []
    assert store.list_inspections(None, None, 1, plan_id=plan.id)[0].occurrence == 1
    assert [e.kind for e in store.inspection_events(first.id)] == ["planned"]


def test_updates_store_every_field_and_refuse_stale_versions(store: Store) -> None:
    plan = store.create_plan(PLAN)
    inspection = store.create_inspection(_occurrence(store, 0, plan.id), _planned())
    running = replace(
        inspection,
        state="running",
        host_results=(HostResult("a1", "web-1", "pending", "", "run-1"),),
        draft={"hosts": []},
        ticket_ids=(4, 5),
        signoff=None,
        updated_ms=T0 + 10,
    )
    event = NewInspectionEvent(T0 + 10, "user:erin", "run_started", {"hosts": ["web-1"]})
    saved = store.update_inspection(running, [event])
    assert saved == replace(running, version=2)
    assert store.get_inspection(inspection.id) == saved
    with pytest.raises(Conflict, match="changed meanwhile"):
        store.update_inspection(running, [])
    with pytest.raises(InvalidRequest, match="state"):
        store.update_inspection(replace(saved, state="lost"), [])  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="kind"):
        store.update_inspection(saved, [replace(event, kind="exploded")])  # type: ignore[arg-type]
    assert store.get_inspection(inspection.id) == saved  # the refused ones changed nothing
    with pytest.raises(InspectionNotFound):
        store.update_inspection(replace(saved, id=999), [])


def test_the_published_report_is_written_once(store: Store) -> None:
    plan = store.create_plan(PLAN)
    inspection = store.create_inspection(_occurrence(store, 0, plan.id), _planned())
    assert store.inspection_report(inspection.id) is None
    published = store.update_inspection(
        replace(inspection, state="awaiting_signoff", report_sha256="ab" * 32), [], '{"a":1}'
    )
    assert store.inspection_report(inspection.id) == '{"a":1}'
    with pytest.raises(Conflict, match="immutable"):
        store.update_inspection(published, [], '{"a":2}')
    with pytest.raises(Conflict, match="immutable"):
        store.update_inspection(replace(published, report_sha256="cd" * 32), [])
    signed = store.update_inspection(replace(published, state="signed"), [])
    assert signed.report_sha256 == "ab" * 32
    assert store.inspection_report(inspection.id) == '{"a":1}'
    with pytest.raises(InspectionNotFound):
        store.inspection_report(999)


def test_change_records_form_the_hosts_archive(store: Store) -> None:
    records = [
        ChangeRecord("a1", T0 + 2, "inspection", "package", "nginx", "1.24", "1.26", 7),
        ChangeRecord("a1", T0 + 1, "inspection", "kernel", "kernel", "6.1", None, 7),
        ChangeRecord("a2", T0, "inspection", "port", "tcp/22", None, "sshd", 7),
    ]
    store.add_change_records(records)
    archive = store.change_records("a1")
    assert [(r.kind, r.before, r.after) for r in archive] == [
        ("kernel", "6.1", None),
        ("package", "1.24", "1.26"),
    ]
    assert all(r.id > 0 and r.inspection_id == 7 for r in archive)
    assert [r.item for r in store.change_records("a1", since_ms=T0 + 2)] == ["nginx"]
    with pytest.raises(InvalidRequest):
        store.add_change_records([replace(records[0], kind="")])


def test_customer_language_is_a_setting(store: Store) -> None:
    assert store.customer_language("acme") is None
    store.set_customer_language("acme", "en", "root", T0)
    store.set_customer_language("acme", "zh-CN", "root", T0 + 1)
    assert store.customer_language("acme") == "zh-CN"
    with pytest.raises(InvalidRequest, match="language"):
        store.set_customer_language("acme", "fr", "root", T0)


def test_a_corrupt_row_is_a_store_error_not_a_crash(
    store: Store, store_backend: StoreBackend
) -> None:
    plan = store.create_plan(PLAN)
    inspection = store.create_inspection(_occurrence(store, 0, plan.id), _planned())
    store_backend.execute_raw(
        "UPDATE inspections SET host_results = 'not json' WHERE id = ?", (inspection.id,)
    )
    with pytest.raises(StoreError, match="corrupt"):
        store.get_inspection(inspection.id)


def test_the_store_has_no_way_to_delete_inspections_or_reports() -> None:
    """Retention: signed reports are kept at least 5 years; nothing here prunes them."""
    import collector.store.inspection_sqlite as module

    source = Path(module.__file__).read_text()
    assert "DELETE FROM" not in source.upper() and "DROP " not in source.upper()
    assert not [
        name for name in dir(module.SQLiteInspections) if "delete" in name or "prune" in name
    ]
