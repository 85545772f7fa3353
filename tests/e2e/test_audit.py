"""``aftercare-collector audit verify`` detects tampering with the stored audit log."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from tests.support import Agent, Collector, wait_for


def test_audit_verify_detects_an_edited_entry(collector: Collector) -> None:
    collector.join_command("acme")
    collector.add_user("erin", "engineer")
    collector.add_user("alice", "customer", customer="acme")
    ok = collector.admin("audit", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "intact" in ok.stdout

    entries = json.loads(collector.admin("audit", "list", "--json").stdout)
    victim = next(e for e in entries if e["target"] == "erin")
    with sqlite3.connect(collector.data_dir / "aftercare.db") as db:
        db.execute("DROP TRIGGER audit_log_no_update")  # as an attacker with the data dir can
        db.execute(
            "UPDATE audit_log SET details = ? WHERE id = ?",
            (json.dumps({"role": "admin", "customer": None}), victim["id"]),
        )
    bad = collector.admin("audit", "verify", "--json")
    assert bad.returncode == 1
    verdict = json.loads(bad.stdout)
    assert verdict["ok"] is False
    assert verdict["first_bad_id"] == victim["id"]


def test_agent_witnesses_checkpoints_and_refuses_a_cut_log(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent("witness-1")
    assert agent.enroll(collector.join_command("acme")).returncode == 0
    collector.add_user("erin", "engineer")
    agent.start()
    held = wait_for(lambda: agent.status()["audit_checkpoint"], 20, "the agent holds a checkpoint")
    count = held["count"]
    assert count >= 3 and held["key"].startswith("sha256:")
    saved = collector.data_dir.parent / "kept.json"
    saved.write_text(json.dumps(held["document"]))
    ok = collector.admin("audit", "verify", "--checkpoint", str(saved))
    assert ok.returncode == 0, ok.stdout + ok.stderr

    collector.stop()  # an attacker holding the data dir cuts the log's tail
    with sqlite3.connect(collector.data_dir / "aftercare.db") as db:
        db.execute("DROP TRIGGER audit_log_no_delete")
        db.execute("DELETE FROM audit_log WHERE id > ?", (count - 2,))
    bad = collector.admin("audit", "verify", "--checkpoint", str(saved))
    assert bad.returncode == 1 and "tail was cut" in bad.stdout
    collector.start()
    wait_for(
        lambda: "audit checkpoint from the collector REFUSED" in agent.log_text(),
        20,
        "the agent refuses the shorter log",
    )
    assert "the log shrank" in agent.log_text()
    assert agent.status()["audit_checkpoint"]["count"] == count
    wait_for(lambda: "refused the audit checkpoint" in collector.log_text(), 10, "logged")
