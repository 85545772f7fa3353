"""A ticket's host belongs to the ticket's customer (issue 11, item 7c): an attack test.

An engineer opening a ticket for customer B that names customer A's host used to
succeed, and B's users then saw A's host on their ticket.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.support import Agent, Collector


def test_ticket_for_customer_b_cannot_name_a_host_of_customer_a(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent("acme-db-1")
    enrolled = agent.enroll(collector.join_command("acme"))
    assert enrolled.returncode == 0, enrolled.stderr
    engineer = collector.add_user("erin", "engineer")
    globex = collector.add_user("gus", "customer", "globex")

    refused = collector.client(
        engineer, "ticket", "create", "look at this", "--level", "3",
        "--customer", "globex", "--host", "acme-db-1",
    )  # fmt: skip
    assert refused.returncode != 0
    assert "does not belong to customer 'globex'" in refused.stderr, refused.stderr

    # B sees no ticket, and so nothing of A's host.
    seen = collector.client_json(globex, "tickets")
    assert "acme-db-1" not in str(seen)
    assert seen == [] or seen == {"tickets": []} or not seen

    # The honest cases still work: the host's own customer, or no customer named.
    ok = collector.client_json(
        engineer, "ticket", "create", "disk", "--level", "3", "--host", "acme-db-1"
    )
    assert "acme" in str(ok)
    ok = collector.client_json(
        engineer, "ticket", "create", "disk", "--level", "3",
        "--customer", "acme", "--host", agent.agent_id,
    )  # fmt: skip
    assert "acme-db-1" in str(ok)
