"""Kinds of request (``aftercare ticket create --kind``): complaint and inquiry clocks
(working days with a weekend and a holiday, on a fake clock), complaints never
auto-closed and announced to the vendor's management, the ``calendar`` and
``complaints`` sections of the tickets config."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.calendar import WorkingCalendar
from collector.errors import FailedPrecondition, InvalidRequest
from collector.tickets import lifecycle
from collector.tickets.config import TicketsConfig, load_tickets_config
from collector.tickets.customer_notices import CustomerNoticePolicy, due_customer_notices
from collector.tickets.errors import TicketConfigError
from collector.tickets.model import Kind, Level, NewEvent, Ticket, Urgency
from collector.tickets.service import ManualTicket
from collector.tickets.sla import DAY_MS, HOUR_MS, MINUTE_MS, SlaPolicy, sla_status
from tests.collector.test_ticket_service import (  # noqa: F401  (fixtures)
    ALICE,
    ENGINEER,
    HOOK,
    MakeRig,
    make_rig,
    rigs,
    run,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Friday 2026-09-25 10:00 in Shanghai; Monday 2026-09-28 is made a holiday.
FRIDAY = int(dt.datetime(2026, 9, 25, 10, 0, tzinfo=SHANGHAI).timestamp() * 1000)
CALENDAR = WorkingCalendar.build(holidays=["2026-09-28"])
POLICY = SlaPolicy(calendar=CALENDAR)


def local_ms(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=SHANGHAI).timestamp() * 1000)  # type: ignore[misc]


def request(kind: Kind, level: Level = "consult", urgency: Urgency = "") -> Ticket:
    return Ticket(
        id=9,
        customer="acme",
        title="how do I rotate the logs?",
        level=level,
        state="open",
        source="customer",
        created_ms=FRIDAY,
        updated_ms=FRIDAY,
        kind=kind,
        urgency=urgency,
    )


def opened() -> list[NewEvent]:
    return [NewEvent(FRIDAY, "user:alice", "opened")]


# -- clocks ------------------------------------------------------------------------------


def test_a_general_inquiry_is_due_in_three_working_days_skipping_weekend_and_holiday() -> None:
    status = sla_status(request("inquiry", urgency="general"), opened(), POLICY, FRIDAY)
    # Sat, Sun off; Mon 28 a holiday; Tue 29, Wed 30, Thu Oct 1: the third working day
    assert status.resolution.due_ms == local_ms(2026, 10, 1, 10, 0)
    assert status.response.target_ms == 2 * HOUR_MS  # the response follows the level
    without_holiday = sla_status(request("inquiry"), opened(), SlaPolicy(), FRIDAY)
    assert without_holiday.resolution.due_ms == local_ms(2026, 9, 30, 10, 0)  # "" = general


def test_the_working_day_due_time_is_met_or_breached_at_the_millisecond() -> None:
    due = local_ms(2026, 10, 1, 10, 0)
    ticket = request("inquiry", urgency="general")
    assert sla_status(ticket, opened(), POLICY, due).resolution.state != "breached"
    assert sla_status(ticket, opened(), POLICY, due + 1).resolution.state == "breached"
    answered = [*opened(), NewEvent(due - MINUTE_MS, "user:erin", "resolved", {"cause": "c"})]
    assert sla_status(ticket, answered, POLICY, due + DAY_MS).resolution.state == "met"


def test_a_pause_on_the_customer_moves_a_working_day_due_time_back_by_its_length() -> None:
    events = [
        *opened(),
        NewEvent(FRIDAY + HOUR_MS, "user:erin", "waiting", {"reason": "need the log"}),
        NewEvent(FRIDAY + 3 * HOUR_MS, "user:alice", "resumed"),
    ]
    status = sla_status(request("inquiry"), events, POLICY, FRIDAY + 4 * HOUR_MS)
    assert status.resolution.due_ms == local_ms(2026, 10, 1, 12, 0)


@pytest.mark.parametrize(("urgency", "hours"), [("urgent", 3), ("pressing", 6)])
def test_urgent_and_pressing_inquiries_are_answered_within_hours(
    urgency: Urgency, hours: int
) -> None:
    status = sla_status(request("inquiry", urgency=urgency), opened(), POLICY, FRIDAY)
    assert status.resolution.due_ms == FRIDAY + hours * HOUR_MS  # clock hours, weekend or not


@pytest.mark.parametrize("level", ["1", "3", "other"])
def test_a_complaint_is_answered_in_2h_and_concluded_in_15_days_whatever_its_level(
    level: Level,
) -> None:
    status = sla_status(request("complaint", level), opened(), POLICY, FRIDAY)
    assert status.response.due_ms == FRIDAY + 2 * HOUR_MS
    assert status.resolution.due_ms == FRIDAY + 15 * DAY_MS


def test_a_fault_keeps_its_level_targets() -> None:
    status = sla_status(request("fault", "3"), opened(), POLICY, FRIDAY)
    assert status.resolution.target_ms == 24 * HOUR_MS


# -- complaints are never auto-closed ----------------------------------------------------


def test_a_resolved_complaint_is_never_auto_confirmed() -> None:
    resolved = replace(request("complaint"), state="resolved", resolved_ms=FRIDAY)
    assert lifecycle.auto_confirm_due_ms(resolved, DAY_MS) is None
    with pytest.raises(FailedPrecondition, match="only the customer closes a complaint"):
        lifecycle.auto_confirm(resolved, DAY_MS, FRIDAY + 30 * DAY_MS)
    fault = replace(resolved, kind="fault")
    assert lifecycle.auto_confirm_due_ms(fault, DAY_MS) == FRIDAY + DAY_MS


def test_the_service_leaves_a_complaint_resolved_and_announces_it_to_management(
    make_rig: MakeRig,  # noqa: F811
) -> None:
    config = replace(TicketsConfig(), complaint_recipients=(HOOK,))
    rig = make_rig(config)
    rig.clock.now = FRIDAY
    complaint = run(
        rig.service.create(
            ALICE, ManualTicket("engineer never called back", "", "other", "", kind="complaint")
        )
    )
    fault = rig.create(ALICE, "disk noise", level="4")
    rig.tick(FRIDAY + 1)
    [announced] = rig.deliverer.delivered
    assert announced.key == f"ticket:{complaint}/complaint/webhook:{HOOK.label}"
    assert announced.payload["event"] == "complaint_opened"
    assert announced.payload["ticket"]["id"] == complaint
    rig.tick(FRIDAY + 2)
    assert len(rig.deliverer.delivered) == 1  # once
    for ticket_id in (complaint, fault):
        rig.resolve(ticket_id, FRIDAY + HOUR_MS)
    rig.tick(FRIDAY + 60 * DAY_MS)
    assert rig.view(complaint).ticket.state == "resolved"
    assert rig.view(fault).ticket.state == "closed"
    view = rig.view(complaint)
    assert (view.ticket.kind, view.ticket.urgency) == ("complaint", "")
    assert view.events[0].details["kind"] == "complaint"


def test_kinds_and_urgencies_are_checked_and_stored(make_rig: MakeRig) -> None:  # noqa: F811
    rig = make_rig()

    def create(kind: str, urgency: str = "") -> int:
        manual = ManualTicket("q", "", "consult", "acme", kind=kind, urgency=urgency)
        return run(rig.service.create(ENGINEER, manual))

    with pytest.raises(InvalidRequest, match="unknown kind of request 'praise'"):
        create("praise")
    with pytest.raises(InvalidRequest, match="applies to inquiries only"):
        create("complaint", "urgent")
    with pytest.raises(InvalidRequest, match="unknown urgency 'whenever'"):
        create("inquiry", "whenever")
    assert rig.tickets() == []  # nothing created by bad input
    pressing = rig.view(create("inquiry", "pressing")).ticket
    assert (pressing.kind, pressing.urgency) == ("inquiry", "pressing")
    general = rig.view(create("inquiry")).ticket
    assert general.urgency == "general"
    assert rig.view(create("fault")).ticket.kind == "fault"


# -- configuration -----------------------------------------------------------------------


def test_the_calendar_section_sets_the_sla_working_days(tmp_path: Path) -> None:
    path = tmp_path / "tickets.yaml"
    path.write_text(
        "calendar:\n  timezone: Asia/Shanghai\n  holidays: ['2026-09-28']\n"
        "  extra_working_days: ['2026-10-10']\n"
        "complaints:\n  recipients:\n    - webhook: https://mgmt.vendor.example/hook\n",
        encoding="utf-8",
    )
    config = load_tickets_config(path)
    assert config.sla.calendar == WorkingCalendar.build(
        holidays=["2026-09-28"], extra_working_days=["2026-10-10"]
    )
    assert [r.target for r in config.complaint_recipients] == ["https://mgmt.vendor.example/hook"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("calendar:\n  holidays: ['28 Sept']\n", "calendar: holiday: '28 Sept' is not a date"),
        ("calendar:\n  holiday: []\n", "calendar: holiday: unknown key"),
        ("calendar:\n  timezone: Mars/Olympus\n", "unknown time zone"),
        ("complaints:\n  recipients: []\n", "complaints.recipients: required"),
        ("complaints:\n  recipients:\n    - email: boss@vendor.example\n", "smtp"),
    ],
)
def test_bad_calendar_and_complaints_sections_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "tickets.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TicketConfigError, match=message):
        load_tickets_config(path)


def test_the_customer_is_not_told_a_complaint_confirms_itself() -> None:
    policy = CustomerNoticePolicy(contacts={"acme": (HOOK,)})
    complaint = replace(request("complaint"), state="resolved", resolved_ms=FRIDAY)
    [notice] = due_customer_notices(complaint, policy, DAY_MS, set(), "", FRIDAY + HOUR_MS)
    assert "automatically" not in notice.payload["summary"]
    assert "自动确认" not in notice.payload["summary_zh"]
    assert "auto_confirm_ms" not in notice.payload
    [fault_notice] = due_customer_notices(
        replace(complaint, kind="fault"), policy, 7 * DAY_MS, set(), "", FRIDAY + HOUR_MS
    )
    assert "confirmed automatically" in fault_notice.payload["summary"]
