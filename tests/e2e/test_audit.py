"""``aftercare-collector audit verify`` detects tampering with the stored audit log."""

from __future__ import annotations

import json
import sqlite3

from tests.support import Collector


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
