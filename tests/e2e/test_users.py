"""Users against a real collector (issue 11, item 7b): list, disable, enable, remove,
rotate-token and token expiry, every change audited and effective from the next call."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support import Collector


def _admin_json(collector: Collector, *args: str) -> Any:
    result = collector.admin(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_disable_enable_rotate_remove_take_effect_at_once(collector: Collector) -> None:
    token = collector.add_user("erin", "engineer")
    assert collector.client(token, "whoami").returncode == 0

    assert _admin_json(collector, "user", "disable", "erin")["state"] == "disabled"
    refused = collector.client(token, "whoami")
    assert refused.returncode != 0
    assert "disabled" in refused.stderr, refused.stderr

    assert _admin_json(collector, "user", "enable", "erin")["state"] == "active"
    assert collector.client(token, "whoami").returncode == 0

    rotated = _admin_json(collector, "user", "rotate-token", "erin")
    assert rotated["token"].startswith("act_") and rotated["token"] != token
    assert collector.client(token, "whoami").returncode != 0
    assert collector.client(rotated["token"], "whoami").returncode == 0

    users = {u["name"]: u for u in _admin_json(collector, "user", "list")}
    assert users["erin"]["role"] == "engineer" and "token" not in users["erin"]
    assert "admin" in users

    assert _admin_json(collector, "user", "remove", "erin")["state"] == "removed"
    assert collector.client(rotated["token"], "whoami").returncode != 0
    assert "erin" not in {u["name"] for u in _admin_json(collector, "user", "list")}
    missing = collector.admin("user", "disable", "erin")
    assert missing.returncode == 1 and "unknown user 'erin'" in missing.stderr

    actions = [
        e["action"]
        for e in _admin_json(collector, "audit", "list")
        if e["target"] == "erin" and e["action"].startswith("user.")
    ]
    assert actions == [
        "user.added",
        "user.disabled",
        "user.enabled",
        "user.token_rotated",
        "user.removed",
    ]


def test_an_expired_token_is_refused_and_says_so(collector: Collector) -> None:
    added = _admin_json(collector, "user", "add", "cara", "--role", "engineer", "--ttl", "2s")
    assert added["token_expires"] is not None and added["state"] == "active"
    assert collector.client(added["token"], "whoami").returncode == 0
    time.sleep(2.5)
    refused = collector.client(added["token"], "whoami")
    assert refused.returncode != 0
    assert "expired" in refused.stderr, refused.stderr
    assert _admin_json(collector, "user", "list")[1]["state"] == "expired"
    renewed = _admin_json(collector, "user", "rotate-token", "cara", "--ttl", "90d")
    assert collector.client(renewed["token"], "whoami").returncode == 0
    bad = collector.admin("user", "add", "dan", "--role", "engineer", "--ttl", "banana")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
