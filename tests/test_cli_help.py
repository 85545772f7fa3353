"""Every command answers --help with a description, and exits 0."""

from __future__ import annotations

import pytest

from tests.support import run

COMMANDS = [
    ("agent.cli", []),
    ("agent.cli", ["enroll"]),
    ("agent.cli", ["run"]),
    ("agent.cli", ["status"]),
    ("collector.cli", []),
    ("collector.cli", ["serve"]),
    ("collector.cli", ["token", "create"]),
    ("collector.cli", ["user", "add"]),
    ("collector.cli", ["agent", "revoke"]),
    ("collector.cli", ["audit", "verify"]),
    ("collector.cli", ["audit", "list"]),
    ("collector.cli", ["outbox"]),
    ("collector.client.cli", []),
    ("collector.client.cli", ["agents"]),
    ("collector.client.cli", ["host"]),
    ("collector.client.cli", ["tickets"]),
    ("collector.client.cli", ["ticket", "show"]),
    ("collector.client.cli", ["ticket", "resolve"]),
    ("collector.client.cli", ["ticket", "create"]),
    ("collector.client.cli", ["ticket", "report"]),
    ("collector.client.cli", ["playbooks", "list"]),
    ("collector.client.cli", ["playbooks", "lint"]),
    ("collector.client.cli", ["playbooks", "keygen"]),
    ("collector.client.cli", ["playbooks", "sign"]),
    ("collector.client.cli", ["run"]),
    ("collector.client.cli", ["runs"]),
    ("collector.client.cli", ["sessions"]),
    ("collector.client.cli", ["session", "request"]),
    ("collector.client.cli", ["session", "approve"]),
    ("collector.client.cli", ["session", "deny"]),
    ("collector.client.cli", ["session", "terminate"]),
    ("collector.client.cli", ["session", "show"]),
    ("collector.client.cli", ["session", "replay"]),
    ("collector.client.cli", ["session", "log"]),
    ("collector.client.cli", ["session", "watch"]),
    ("collector.client.cli", ["ssh"]),
    ("collector.client.cli", ["keys", "add"]),
    ("collector.client.cli", ["keys", "list"]),
    ("collector.client.cli", ["keys", "remove"]),
    ("collector.cli", ["rules", "check"]),
    ("agent.cli", ["approve"]),
    ("agent.cli", ["approve-session"]),
    ("agent.cli", ["sessions"]),
    ("playbooks.vendor_cli", []),
    ("playbooks.vendor_cli", ["keygen"]),
    ("playbooks.vendor_cli", ["sign"]),
    ("playbooks.vendor_cli", ["lint"]),
]


@pytest.mark.parametrize(
    ("module", "words"), COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_help(module: str, words: list[str]) -> None:
    result = run(module, *words, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
    assert len(result.stdout.splitlines()) > 3


def test_agent_run_without_enrolment_says_what_to_do(tmp_path: object) -> None:
    result = run("agent.cli", "run", "--state-dir", "/nonexistent/aftercare")
    assert result.returncode == 1
    assert "aftercare-agent enroll" in result.stderr
