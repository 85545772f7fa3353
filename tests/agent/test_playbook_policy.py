"""The customer's policy file, its decisions, and approvals given on the host."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.playbook import ApprovalBook, ApprovalError, Decision, Policy, PolicyError, load_policy
from agent.playbook.policy import PlaybookRule

REPO = Path(__file__).resolve().parents[2]


def policy_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    path.chmod(0o644)
    return path


# --- defaults -------------------------------------------------------------------------


def test_missing_file_gives_the_defaults_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        policy = load_policy(tmp_path / "absent.toml")
    assert policy == Policy()
    assert "absent.toml not found" in caplog.text
    assert policy.decide("disk-usage", "read-only") == Decision(
        "allow", "signed", "[defaults] read-only"
    )
    assert policy.decide("restart-service", "mutating").kind == "approve"


def test_no_path_gives_the_defaults() -> None:
    assert load_policy(None) == Policy()


def test_unknown_mode_is_denied() -> None:
    assert Policy().decide("x", "destructive").kind == "deny"


# --- decisions ------------------------------------------------------------------------

EXAMPLE = """\
[defaults]
read-only = "approve"
mutating = "approve"
approval = "local"

[playbooks.disk-usage]
decision = "allow"

[playbooks.restart-service]
decision = "deny"

[playbooks.clear-tmp]
decision = "allow"
mode = "mutating"

[playbooks.rotate-logs]
decision = "allow"

[playbooks.network]
approval = "either"
"""


def test_decisions_per_playbook_and_per_mode(tmp_path: Path) -> None:
    policy = load_policy(policy_file(tmp_path, EXAMPLE))
    assert policy.path == tmp_path / "policy.toml"
    assert policy.decide("disk-usage", "read-only") == Decision(
        "allow", "local", "[playbooks.disk-usage]"
    )
    assert policy.decide("restart-service", "mutating").kind == "deny"
    assert policy.decide("clear-tmp", "mutating").kind == "allow"
    assert policy.decide("memory", "read-only") == Decision(
        "approve", "local", "[defaults] read-only"
    )
    assert policy.decide("network", "read-only") == Decision(
        "approve", "either", "[defaults] read-only"
    )


def test_an_entry_without_mode_mutating_cannot_loosen_a_mutating_playbook(tmp_path: Path) -> None:
    policy = load_policy(policy_file(tmp_path, EXAMPLE))
    decision = policy.decide("rotate-logs", "mutating")  # the entry meant a read-only version
    assert decision.kind == "approve"
    assert 'mode = "mutating"' in decision.reason
    assert policy.decide("rotate-logs", "read-only").kind == "allow"
    # ... but it can always make things stricter
    strict = Policy(playbooks={"x": PlaybookRule(decision="deny")})
    assert strict.decide("x", "mutating").kind == "deny"


@pytest.mark.parametrize(
    ("source", "counted"),
    [
        ("signed", {"signed"}),
        ("local", {"local"}),
        ("either", {"signed", "local"}),
        ("collector", {"signed", "collector"}),
    ],
)
def test_where_approvals_count(source: str, counted: set[str]) -> None:
    """Only ``collector`` - written by the customer - lets the collector's word count."""
    decision = Decision("approve", source)  # type: ignore[arg-type]
    origins = ("signed", "collector", "local")
    assert {o for o in origins if decision.counts(o)} == counted  # type: ignore[arg-type]
    assert not Decision("deny", source).counts("local")  # type: ignore[arg-type]
    assert not Decision("allow", source).counts("signed")  # type: ignore[arg-type]


def test_the_shipped_example_is_valid() -> None:
    policy = load_policy(REPO / "deploy" / "policy.example.toml")
    assert policy.decide("anything", "mutating").kind == "approve"
    assert policy.session_approval == "signed"


@pytest.mark.parametrize("mode", ["signed", "collector", "local", "either", "disabled"])
def test_session_approval_modes(tmp_path: Path, mode: str) -> None:
    policy = load_policy(policy_file(tmp_path, f"[sessions]\napproval = '{mode}'\n"))
    assert policy.session_approval == mode


def test_sessions_and_runs_default_to_signed_approval(tmp_path: Path) -> None:
    """Secure by default: without a policy the collector's word approves nothing."""
    for policy in (load_policy(None), load_policy(policy_file(tmp_path, ""))):
        assert policy.session_approval == "signed"
        assert policy.decide("fix-it", "mutating") == Decision(
            "approve", "signed", "[defaults] mutating"
        )


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[defaults]\nread_only = 'allow'\n", "defaults.read_only: unknown key"),
        ("[defaults]\nmutating = 'yes'\n", "defaults.mutating: must be one of"),
        ("[defaults]\napproval = 'phone'\n", "defaults.approval: must be one of"),
        ("[defaults]\nmutating = true\n", "defaults.mutating: must be one of"),
        ("[playbook.x]\ndecision = 'allow'\n", "playbook: unknown key"),
        ("[playbooks.x]\ndecision = 'maybe'\n", "playbooks.x.decision: must be one of"),
        ("[playbooks.x]\ndecison = 'allow'\n", "playbooks.x.decison: unknown key"),
        ("[playbooks.x]\nmode = 'mutating'\n", "playbooks.x: sets neither"),
        ("[playbooks.x]\ndecision = 'allow'\nmode = 'rw'\n", "playbooks.x.mode: must be one of"),
        ("[playbooks.'../x']\ndecision = 'allow'\n", "is not a playbook name"),
        ("defaults = 3\n", "defaults: expected a table"),
        ("[defaults\n", "not valid TOML"),
        ("[sessions]\napproval = 'host'\n", "sessions.approval: must be one of"),
        ("[sessions]\napprove = 'local'\n", "sessions.approve: unknown key"),
        ("sessions = 'local'\n", "sessions: expected a table"),
    ],
)
def test_invalid_files_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = policy_file(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert isinstance(caught.value, ConfigError)


def test_a_policy_others_can_write_is_refused(tmp_path: Path) -> None:
    path = policy_file(tmp_path, "")
    path.chmod(0o666)
    with pytest.raises(PolicyError, match="writable by group or others"):
        load_policy(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_policy_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    path = policy_file(tmp_path, "")
    os.chown(path, 65534, 65534)
    with pytest.raises(PolicyError, match="belongs to uid 65534"):
        load_policy(path)


def test_an_unreadable_policy_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "dir.toml")


# --- local approvals ------------------------------------------------------------------


def test_an_approval_counts_for_its_run_until_it_expires(tmp_path: Path) -> None:
    book = ApprovalBook(tmp_path / "approvals")
    path = book.approve("run-42", until=1000.0, by="root")
    assert path == tmp_path / "approvals" / "run-42"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert book.is_approved("run-42", now=999.0)
    assert not book.is_approved("run-42", now=1000.0)  # expired
    assert not book.is_approved("run-43", now=999.0)  # another run


def test_an_approval_file_renamed_to_another_run_does_not_count(tmp_path: Path) -> None:
    book = ApprovalBook(tmp_path)
    book.approve("run-1", until=1000.0)
    os.rename(tmp_path / "run-1", tmp_path / "run-2")
    assert not book.is_approved("run-2", now=1.0)


@pytest.mark.parametrize("content", ["not json", "[]", '{"run_id": "r", "until": true}', "{}"])
def test_malformed_approvals_do_not_count(tmp_path: Path, content: str) -> None:
    (tmp_path / "r").write_text(content)
    (tmp_path / "r").chmod(0o600)
    assert not ApprovalBook(tmp_path).is_approved("r", now=0.0)


def test_world_writable_or_symlinked_approvals_do_not_count(tmp_path: Path) -> None:
    book = ApprovalBook(tmp_path / "a")
    book.approve("r1", until=1000.0)
    (tmp_path / "a" / "r1").chmod(0o666)
    assert not book.is_approved("r1", now=1.0)
    (tmp_path / "elsewhere").write_text(json.dumps({"run_id": "r2", "until": 1000.0}))
    (tmp_path / "a" / "r2").symlink_to(tmp_path / "elsewhere")
    assert not book.is_approved("r2", now=1.0)


@pytest.mark.parametrize("run_id", ["../etc/passwd", "a/b", "", ".hidden", "a..b", "x" * 200])
def test_run_ids_cannot_name_other_paths(tmp_path: Path, run_id: str) -> None:
    book = ApprovalBook(tmp_path)
    with pytest.raises(ApprovalError):
        book.approve(run_id, until=1000.0)
    assert not book.is_approved(run_id, now=0.0)


def test_revoke_and_prune(tmp_path: Path) -> None:
    book = ApprovalBook(tmp_path)
    book.approve("old", until=10.0)
    book.approve("new", until=100.0)
    book.approve("gone", until=100.0)
    assert book.revoke("gone") and not book.revoke("gone")
    assert book.prune(now=50.0) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]
    assert ApprovalBook(tmp_path / "missing").prune(now=0.0) == 0


def test_unwritable_directory_is_an_approval_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ApprovalError, match="cannot record"):
        ApprovalBook(tmp_path / "file" / "approvals").approve("r", until=1.0)
