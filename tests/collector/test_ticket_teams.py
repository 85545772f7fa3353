"""Level-by-level escalation (逐级上传): teams in the tickets config, the on-call
rotation, the supervisor chain, and the escalation ladder following the chain under a
fake clock (fixed recipient lists stay for customers without a team)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from collector.tickets.config import load_tickets_config, tickets_config_from_mapping
from collector.tickets.errors import TicketConfigError
from collector.tickets.escalation import EscalationPolicy, EscalationStep, Recipient, Trigger
from collector.tickets.model import Ticket
from collector.tickets.sla import DAY_MS, MINUTE_MS
from collector.tickets.teams import Engineer, Team, Teams
from tests.collector.test_ticket_service import (  # noqa: F401  (fixtures)
    ALICE,
    ENGINEER,
    ESCALATING,
    HOOK,
    T0,
    MakeRig,
    make_rig,
    rigs,
    run,
)
from tests.collector.test_tickets_config import EXAMPLE


def mail(name: str) -> Recipient:
    return Recipient("email", f"{name}@vendor.example")


# erin and frank take turns of a day (erin first, from T0); both report to sam, sam to lee
TEAMS = Teams(
    engineers={
        "erin": Engineer(mail("erin"), "sam"),
        "frank": Engineer(mail("frank"), "sam"),
        "sam": Engineer(mail("sam"), "lee"),
        "lee": Engineer(mail("lee")),
    },
    teams={"east": Team(("acme",), ("erin", "frank"), DAY_MS, T0)},
)
RESPONSE = frozenset({"response"})
# level 3: response 10 min, warning at 5 min
LADDER = EscalationPolicy(
    steps=(
        EscalationStep(Trigger("warning"), (HOOK,), RESPONSE),
        EscalationStep(Trigger("breach"), (HOOK,), RESPONSE),
        EscalationStep(Trigger("breach", 30 * MINUTE_MS), (HOOK,), RESPONSE),
        EscalationStep(Trigger("breach", 60 * MINUTE_MS), (HOOK,), RESPONSE),
    )
)


def ticket(customer: str = "acme", created: int = T0, assignee: str | None = None) -> Ticket:
    return Ticket(
        id=1,
        customer=customer,
        title="x",
        level="3",
        state="open",
        source="customer",
        created_ms=created,
        updated_ms=created,
        assignee=assignee,
    )


# -- the pure model ------------------------------------------------------------------------


def test_the_chain_starts_at_the_on_call_engineer_and_goes_up() -> None:
    assert TEAMS.chain_for(ticket()) == ("erin", "sam", "lee")
    assert TEAMS.chain_for(ticket(created=T0 + DAY_MS)) == ("frank", "sam", "lee")
    assert TEAMS.chain_for(ticket(created=T0 + 2 * DAY_MS + 5)) == ("erin", "sam", "lee")
    assert TEAMS.chain_for(ticket(created=T0 - 5)) == ("erin", "sam", "lee")


def test_an_assigned_engineer_heads_the_chain_and_no_team_means_no_chain() -> None:
    assert TEAMS.chain_for(ticket(assignee="sam")) == ("sam", "lee")
    assert TEAMS.chain_for(ticket(assignee="someone else")) == ("erin", "sam", "lee")
    assert TEAMS.chain_for(ticket(customer="globex")) is None
    assert TEAMS.recipients_for(ticket(customer="globex")) is None
    assert TEAMS.recipients_for(ticket()) == (mail("erin"), mail("sam"), mail("lee"))


# -- the config ----------------------------------------------------------------------------

SMTP = {"smtp": {"host": "smtp.vendor.example", "from": "desk@vendor.example"}}


def test_teams_load_from_the_config() -> None:
    config = tickets_config_from_mapping(
        {
            "escalation": SMTP,
            "teams": {
                "engineers": {
                    "erin": {"email": "erin@vendor.example", "supervisor": "sam"},
                    "sam": {"webhook": "https://hooks.vendor.example/sam"},
                },
                "teams": {
                    "east": {
                        "customers": ["acme"],
                        "on_call": ["erin"],
                        "shift": "12h",
                        "since": "2026-01-05T09:00:00+08:00",
                    }
                },
            },
        }
    )
    teams = config.teams
    assert teams.engineers["erin"] == Engineer(mail("erin"), "sam")
    assert teams.engineers["sam"].recipient == Recipient(
        "webhook", "https://hooks.vendor.example/sam"
    )
    east = teams.teams["east"]
    assert (east.shift_ms, east.since_ms) == (12 * 3_600_000, 1_767_574_800_000)
    assert teams.chain_for(ticket()) == ("erin", "sam")


def test_every_team_problem_is_reported_at_once() -> None:
    with pytest.raises(TicketConfigError) as caught:
        tickets_config_from_mapping(
            {
                "escalation": SMTP,
                "teams": {
                    "engineers": {
                        "a": {"email": "a@vendor.example", "supervisor": "b"},
                        "b": {"email": "b@vendor.example", "supervisor": "a"},
                        "c": {"email": "c@vendor.example", "supervisor": "nobody"},
                    },
                    "teams": {
                        "east": {"customers": ["acme"], "on_call": ["a", "zed"]},
                        "west": {"customers": ["acme"], "on_call": ["c"]},
                    },
                },
            }
        )
    text = str(caught.value)
    assert "teams.engineers.a.supervisor: supervisors go round in a circle" in text
    assert "teams.engineers.c.supervisor: unknown engineer 'nobody'" in text
    assert "teams.teams.east.on_call[1]: unknown engineer 'zed'" in text
    assert "teams.teams.west.customers: customer 'acme' is already in 'east'" in text


@pytest.mark.parametrize(
    ("team", "message"),
    [
        ({"customers": [], "on_call": ["a"]}, "customers: required: a non-empty list"),
        ({"customers": ["acme"]}, "on_call: required: a non-empty list"),
        ({"customers": ["acme"], "on_call": ["a"], "shift": "0s"}, "shift: must be longer than 0"),
        ({"customers": ["acme"], "on_call": ["a"], "since": "2026-01-05"}, "with its zone"),
        ({"customers": ["acme"], "on_call": ["a"], "rota": 1}, "rota"),
    ],
)
def test_bad_team_entries_are_refused(team: dict[str, object], message: str) -> None:
    data = {
        "escalation": SMTP,
        "teams": {"engineers": {"a": {"email": "a@vendor.example"}}, "teams": {"t": team}},
    }
    with pytest.raises(TicketConfigError, match=message):
        tickets_config_from_mapping(data)


def test_an_engineers_email_needs_smtp() -> None:
    with pytest.raises(TicketConfigError, match=r"teams\.engineers\.a\.email"):
        tickets_config_from_mapping({"teams": {"engineers": {"a": {"email": "a@x.example"}}}})


# -- the ladder under a fake clock ---------------------------------------------------------


def test_escalation_goes_up_the_chain_step_by_step(make_rig: MakeRig) -> None:  # noqa: F811
    rig = make_rig(replace(ESCALATING, escalation=LADDER, teams=TEAMS))
    rig.clock.now = T0 + DAY_MS  # frank is on call
    ticket_id = rig.create(ALICE, "orders fail", level="3")
    other = rig.create(ENGINEER, "globex fault", level="3", customer="globex")
    opened = T0 + DAY_MS

    def tick(at: int) -> set[tuple[int, str]]:
        """What this tick delivered: (step, target)."""
        before = len(rig.deliverer.delivered)
        rig.tick(at)
        return {(n.step, n.target) for n in rig.deliverer.delivered[before:]}

    assert tick(opened + 5 * MINUTE_MS - 1) == set()
    # warning: the on-call engineer; globex (no team): the step's fixed list
    assert tick(opened + 5 * MINUTE_MS) == {(0, mail("frank").target), (0, HOOK.target)}
    # breach: frank's supervisor
    assert tick(opened + 10 * MINUTE_MS + 1) == {(1, mail("sam").target), (1, HOOK.target)}
    # still unanswered 30 min after the breach: sam's supervisor
    assert tick(opened + 40 * MINUTE_MS + 1) == {(2, mail("lee").target), (2, HOOK.target)}
    # beyond the chain: its top again
    assert tick(opened + 70 * MINUTE_MS + 1) == {(3, mail("lee").target), (3, HOOK.target)}
    assert tick(opened + 2 * DAY_MS) == set()  # each once
    by_ticket = {n.target: n.key.split("/")[0] for n in rig.deliverer.delivered}
    assert by_ticket[HOOK.target] == f"ticket:{other}"
    assert by_ticket[mail("lee").target] == f"ticket:{ticket_id}"


def test_the_example_config_has_a_team() -> None:

    teams = load_tickets_config(EXAMPLE).teams
    bank = ticket(customer="bank-of-example", created=1_767_574_800_000 + 7 * DAY_MS)
    assert teams.chain_for(bank) == ("chen.jie", "zhang.min", "wang.fang")
    assert teams.recipients_for(bank)[-1].channel == "webhook"  # type: ignore[index]
