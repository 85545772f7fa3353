"""A run waiting for approval, end to end: a real agent reports it, the collector tells
the customer's webhook once through the outbox (with its delivery id) with the portal
link, also across a collector restart."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from playbooks.sign import write_signed_catalogue
from playbooks.signing_keys import generate_keypair
from tests.e2e.test_playbooks import MUTATING, _agent, _run_show
from tests.e2e.test_tickets import _Receiver
from tests.support import Agent, Collector, wait_for

PUBLIC = "https://support.vendor.example"


def test_the_customer_is_told_once_of_a_run_waiting_for_approval(
    tmp_path: Path, make_agent: Callable[..., Agent]
) -> None:
    private, public = generate_keypair()
    (tmp_path / "vendor.pub").write_bytes(public)
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    marker = tmp_path / "marker"
    (catalogue / "rotate-marker.yaml").write_text(MUTATING.format(marker=marker))
    write_signed_catalogue(catalogue, private, catalogue_version=1, valid_for=dt.timedelta(days=1))
    acme, globex = _Receiver(), _Receiver()
    config = tmp_path / "tickets.yaml"
    config.write_text(
        f"""
customer_notices:
  customers:
    acme: [{{webhook: "{acme.url}"}}]
    globex: [{{webhook: "{globex.url}"}}]
"""
    )
    args = ["--evaluation-interval", "500ms", "--playbooks", str(catalogue)]
    args += ["--tickets-config", str(config), "--public-url", PUBLIC]
    collector = Collector(tmp_path / "collector", extra_args=args).start()
    try:
        trusting = '[defaults]\napproval = "collector"\n'
        _agent(collector, make_agent, tmp_path, [tmp_path / "vendor.pub"], trusting)
        engineer = collector.add_user("erin", "engineer")
        run_id = collector.client_json(engineer, "run", "rotate-marker", "--host", "web-1")[
            "run_id"
        ]
        wait_for(lambda: acme.bodies, 30, "the run notice")
        [told] = acme.bodies
        assert told["event"] == "customer_run_awaiting_approval"
        assert told["link"] == f"{PUBLIC}/runs/{run_id}"
        assert told["run"]["playbook"] == "rotate-marker" and told["run"]["mode"] == "mutating"
        assert _run_show(collector, engineer, run_id)["run"]["state"] == "waiting_approval"
        wait_for(lambda: sent_notices(collector.data_dir), 30, "the notice marked sent")
        collector.stop()
        [stored] = sent_notices(collector.data_dir)
        assert stored["kind"] == "approval" and stored["dedup"] == told["key"]
        assert acme.headers[0]["X-Aftercare-Delivery"] == stored["delivery_id"]
        collector.start()  # the run still waits: the restarted collector knows it was told
        time.sleep(3)  # six evaluation cycles
        assert len(acme.bodies) == 1 and globex.bodies == []
        alice = collector.add_user("alice", "customer", customer="acme")
        token = collector.admin_token
        wait_for(lambda: collector.client_json(token, "agents")[0]["connected"], 30, "reconnected")
        approved = collector.client(alice, "run", "approve", run_id, "--yes")
        assert approved.returncode == 0, approved.stderr
        wait_for(lambda: marker.exists(), 30, "the approved run")
        assert len(acme.bodies) == 1 and globex.bodies == []
        collector.stop()
        assert len(sent_notices(collector.data_dir)) == 1
    finally:
        collector.stop()
        acme.close()
        globex.close()


def sent_notices(data_dir: Path) -> list[dict[str, object]]:
    """The sent notices, as ``aftercare-collector outbox --state sent --json`` lists them."""
    command = [sys.executable, "-m", "collector.cli", "outbox", "--data-dir", str(data_dir)]
    listed = subprocess.run(
        [*command, "--state", "sent", "--json"], capture_output=True, text=True, check=True
    )
    notices: list[dict[str, object]] = json.loads(listed.stdout)["notices"]
    return notices
