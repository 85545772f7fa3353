"""Level-by-level escalation end to end (desk-chain): a real collector with a tickets
config naming a team; a team customer's unanswered ticket reaches the on-call
engineer, then their supervisor, then theirs (one webhook receiver each), while a
customer without a team keeps the step's fixed recipient."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.test_tickets import _Receiver, running  # noqa: F401  (fixture)
from tests.support import Collector, wait_for


def test_an_unanswered_ticket_climbs_the_supervisor_chain(
    tmp_path: Path,
    running: Callable[..., Collector],  # noqa: F811
) -> None:
    erin, sam, lee, fixed = _Receiver(), _Receiver(), _Receiver(), _Receiver()
    try:
        config = tmp_path / "tickets.yaml"
        config.write_text(
            f"""
sla:
  warning_fraction: 0.5
  levels:
    other: {{response: 2s, resolution: 1h}}
escalation:
  steps:
    - trigger: warning
      clocks: [response]
      recipients: [{{webhook: "{fixed.url}"}}]
    - trigger: breach
      clocks: [response]
      recipients: [{{webhook: "{fixed.url}"}}]
    - trigger: breach+2s
      clocks: [response]
      recipients: [{{webhook: "{fixed.url}"}}]
teams:
  engineers:
    erin: {{webhook: "{erin.url}", supervisor: sam}}
    sam: {{webhook: "{sam.url}", supervisor: lee}}
    lee: {{webhook: "{lee.url}"}}
  teams:
    east: {{customers: [acme], on_call: [erin]}}
"""
        )
        collector = running(extra=["--tickets-config", str(config)])
        token = collector.admin_token
        for customer in ("acme", "globex"):
            created = collector.client(
                token, "ticket", "create", f"{customer} down", "--customer", customer
            )
            assert created.returncode == 0, created.stderr
        wait_for(lambda: lee.bodies, 30, "the top of the chain")
        wait_for(lambda: len(fixed.bodies) == 3, 30, "the fixed list's three steps")
        time.sleep(2)
        received = {name: r.bodies for name, r in (("erin", erin), ("sam", sam), ("lee", lee))}
        assert {name: [b["step"] for b in bodies] for name, bodies in received.items()} == {
            "erin": [0],
            "sam": [1],
            "lee": [2],
        }
        assert all(b["ticket"]["customer"] == "acme" for b in erin.bodies + sam.bodies + lee.bodies)
        assert erin.bodies[0]["at_ms"] < sam.bodies[0]["at_ms"] < lee.bodies[0]["at_ms"]
        assert sorted(b["step"] for b in fixed.bodies) == [0, 1, 2]
        assert {b["ticket"]["customer"] for b in fixed.bodies} == {"globex"}
    finally:
        for receiver in (erin, sam, lee, fixed):
            receiver.close()
