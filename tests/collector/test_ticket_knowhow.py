"""Know-how (问题知识库): resolved tickets like a new one, ranked, with their cause and
actions; a customer never sees another customer's tickets through it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from collector.errors import NotFound
from collector.tickets.knowhow import host_class, similar
from collector.tickets.model import Ticket
from collector.tickets.sla import HOUR_MS
from tests.collector.test_ticket_service import (  # noqa: F401  (fixtures)
    ALICE,
    ENGINEER,
    MALLORY,
    T0,
    MakeRig,
    make_rig,
    rigs,
    run,
)

FIXED = {"cause": "log rotation disabled", "actions": "rotated /data/logs"}


def ticket(
    ticket_id: int,
    title: str,
    hostname: str = "web-1",
    rule: str | None = "disk_full",
    state: str = "resolved",
    resolution: dict[str, str] | None = None,
    category: str = "storage",
) -> Ticket:
    return Ticket(
        id=ticket_id,
        customer="acme",
        title=title,
        level="2",
        state=state,  # type: ignore[arg-type]
        source="rule",
        created_ms=T0 + ticket_id,
        updated_ms=T0 + ticket_id,
        hostname=hostname,
        rule=rule,
        labels={"category": category} if category else {},
        resolved_ms=T0 + ticket_id if state in ("resolved", "closed") else None,
        resolution=FIXED if resolution is None else resolution,
    )


NEW = ticket(100, "filesystem /data full", state="open", resolution={})


def test_the_same_rule_and_host_rank_first_with_their_reasons() -> None:
    candidates = [
        ticket(1, "memory pressure", hostname="db-1", rule="memory_high", category="memory"),
        ticket(2, "filesystem /data full", hostname="web-7"),
        ticket(3, "filesystem /data full", hostname="web-1"),
        ticket(4, "filesystem /var full", hostname="db-1"),
    ]
    ranked = similar(NEW, candidates)
    assert [m.ticket.id for m in ranked] == [3, 2, 4]
    assert ranked[0].reasons == ("same rule", "same category", "same host class", "same host",
                                 "similar title")  # fmt: skip
    assert "same host" not in ranked[1].reasons and "same host class" in ranked[1].reasons
    assert ranked[0].score > ranked[1].score > ranked[2].score


def test_only_resolved_tickets_with_a_cause_or_actions_and_never_itself() -> None:
    candidates = [
        ticket(1, "filesystem /data full", state="open", resolution={}),
        ticket(2, "filesystem /data full", resolution={"prevention": "only this"}),
        replace(NEW, state="resolved", resolution=FIXED),  # the ticket itself
        ticket(3, "filesystem /data full", state="closed"),
    ]
    assert [m.ticket.id for m in similar(NEW, candidates)] == [3]


def test_weak_matches_are_not_offered_and_the_limit_holds() -> None:
    unrelated = ticket(1, "certificate expiry", hostname="db-1", rule="cert", category="tls")
    assert similar(NEW, [unrelated]) == []
    many = [ticket(i, "filesystem /data full") for i in range(1, 12)]
    assert len(similar(NEW, many)) == 5
    assert [m.ticket.id for m in similar(NEW, many, limit=2)] == [11, 10]  # newest first


def test_host_class_drops_the_numbers() -> None:
    assert host_class("web-01") == host_class("WEB-7") == "web-"
    assert host_class("db1") != host_class("web1")


def test_a_customer_sees_only_its_own_know_how_an_engineer_every_customers(
    make_rig: MakeRig,  # noqa: F811
) -> None:
    rig = make_rig()
    own = rig.create(ENGINEER, "nightly backup failed", customer="acme")
    theirs = rig.create(ENGINEER, "nightly backup failed", customer="globex")
    for number in (own, theirs):
        rig.resolve(number, T0 + HOUR_MS)
    new = rig.create(ALICE, "nightly backup failed again")
    assert [m.ticket.id for m in run(rig.service.similar(ALICE, new))] == [own]
    assert {m.ticket.id for m in run(rig.service.similar(ENGINEER, new))} == {own, theirs}
    assert [m.ticket.id for m in run(rig.service.similar(MALLORY, theirs))] == []
    with pytest.raises(NotFound):  # another customer's ticket: not even its know-how
        run(rig.service.similar(MALLORY, new))
