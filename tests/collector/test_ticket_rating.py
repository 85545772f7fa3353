"""Satisfaction ratings (``aftercare ticket rate``): only closed tickets, only customer
users of the ticket's customer, scores 1..5, a re-rating replaces the earlier one; on
the timeline and in the audit chain; counted in the statistics."""

from __future__ import annotations

import pytest

from collector.audit import verify_chain
from collector.errors import FailedPrecondition, InvalidRequest, NotFound, PermissionDenied
from collector.tickets import lifecycle
from collector.tickets.model import NewEvent, Ticket
from collector.tickets.sla import HOUR_MS, SlaPolicy
from collector.tickets.stats import parse_period, ratings_of, ticket_stats
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
from tests.collector.test_ticket_stats import FIXTURE, NOW


def closed_ticket(state: str = "closed") -> Ticket:
    return Ticket(
        id=7,
        customer="acme",
        title="x",
        level="3",
        state=state,  # type: ignore[arg-type]
        source="customer",
        created_ms=T0,
        updated_ms=T0,
    )


# -- lifecycle -------------------------------------------------------------------------


def test_rating_records_score_and_comment_and_leaves_the_ticket_as_it_is() -> None:
    ticket = closed_ticket()
    transition = lifecycle.rate(ticket, 4, "  quick fix ", "user:alice", T0 + 5)
    assert transition.ticket == ticket
    [event] = transition.events
    assert (event.kind, event.actor, event.at_ms) == ("rated", "user:alice", T0 + 5)
    assert event.details == {"score": 4, "comment": "quick fix"}


@pytest.mark.parametrize("state", ["open", "acknowledged", "recovered", "resolved", "reopened"])
def test_only_a_closed_ticket_can_be_rated(state: str) -> None:
    with pytest.raises(FailedPrecondition, match=f"is {state}.*only a closed ticket"):
        lifecycle.rate(closed_ticket(state), 5, "", "user:alice", T0)


@pytest.mark.parametrize("score", [0, 6, -1, 10])
def test_scores_out_of_range_are_refused(score: int) -> None:
    with pytest.raises(InvalidRequest, match=f"rating {score} is out of range"):
        lifecycle.rate(closed_ticket(), score, "", "user:alice", T0)


# -- the service -------------------------------------------------------------------------


def test_the_customer_rates_a_closed_ticket_on_timeline_and_audit(make_rig: MakeRig) -> None:  # noqa: F811
    rig = make_rig()
    ticket_id = rig.create(ALICE, "backups slow")
    with pytest.raises(FailedPrecondition, match="only a closed ticket"):
        run(rig.service.rate(ALICE, ticket_id, 5, "open"))
    rig.resolve(ticket_id, T0 + HOUR_MS)
    with pytest.raises(FailedPrecondition, match="is resolved"):
        run(rig.service.rate(ALICE, ticket_id, 5, "not yet confirmed"))
    rig.act(ALICE, ticket_id, "confirm", T0 + 2 * HOUR_MS)
    rig.clock.now = T0 + 3 * HOUR_MS
    run(rig.service.rate(ALICE, ticket_id, 2, "slow to answer"))
    rig.clock.now = T0 + 4 * HOUR_MS
    run(rig.service.rate(ALICE, ticket_id, 4, "fixed well after all"))
    rated = [e for e in rig.events(ticket_id) if e.kind == "rated"]
    assert [(e.details["score"], e.actor) for e in rated] == [(2, "user:alice"), (4, "user:alice")]
    assert rig.view(ticket_id).ticket.state == "closed"
    entries = run(rig.db.call(rig.db.store.audit_entries))
    audited = [e for e in entries if e.action == "ticket.rated"]
    assert [e.details["score"] for e in audited] == [2, 4]
    assert audited[-1].details["comment"] == "fixed well after all"
    assert verify_chain(entries).ok
    rig.clock.now = T0 + 5 * HOUR_MS
    stats = run(rig.service.stats(ALICE, "", "2026"))
    assert stats.ratings == ratings_of([4])  # the re-rating replaced the first


def test_engineers_and_other_customers_cannot_rate(make_rig: MakeRig) -> None:  # noqa: F811
    rig = make_rig()
    ticket_id = rig.create(ALICE, "backups slow")
    rig.resolve(ticket_id, T0 + HOUR_MS)
    rig.act(ALICE, ticket_id, "confirm", T0 + 2 * HOUR_MS)
    with pytest.raises(PermissionDenied, match="rating is the customer's"):
        run(rig.service.rate(ENGINEER, ticket_id, 5, "self-praise"))
    with pytest.raises(NotFound):
        run(rig.service.rate(MALLORY, ticket_id, 1, "sabotage"))
    with pytest.raises(NotFound):
        run(rig.service.rate(ALICE, ticket_id + 1, 5, "no such ticket"))
    with pytest.raises(InvalidRequest, match="out of range"):
        run(rig.service.rate(ALICE, ticket_id, 0, ""))
    assert "rated" not in rig.kinds(ticket_id)


# -- statistics --------------------------------------------------------------------------


def rating(at: int, score: int) -> NewEvent:
    return NewEvent(at, "user:alice", "rated", {"score": score, "comment": ""})


def test_statistics_count_each_tickets_latest_rating() -> None:
    first, second, *rest = FIXTURE  # the fixture rates ticket 1 (2, then 5) and globex's
    rated = [
        (first[0], [*first[1], rating(NOW - 2, 5)]),
        (second[0], [*second[1], rating(NOW - 1, 3)]),
        *rest,
    ]
    stats = ticket_stats("acme", parse_period("2026Q4"), rated, SlaPolicy(), NOW)
    assert (stats.ratings.count, stats.ratings.mean) == (2, 4.0)
    assert stats.as_dict()["ratings"] == {
        "count": 2,
        "mean": 4.0,
        "distribution": {"1": 0, "2": 0, "3": 1, "4": 0, "5": 1},
    }
    unrated = [(t, [e for e in events if e.kind != "rated"]) for t, events in FIXTURE]
    none = ticket_stats("acme", parse_period("2026Q4"), unrated, SlaPolicy(), NOW)
    assert none.as_dict()["ratings"] == {
        "count": 0,
        "mean": None,
        "distribution": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0},
    }


def test_the_mean_is_rounded_to_two_decimals() -> None:
    assert ratings_of([5, 4, 4]).mean == 4.33
    assert ratings_of([]).mean is None
