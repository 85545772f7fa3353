"""The host's pinned approval root and its consent memory (nonces, revocations)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ApprovalsConfig
from agent.consent.memory import ConsentMemory
from agent.consent.root import pin_root, pinned_root
from agent.errors import ApprovalRefused, ConfigError

ROOT_A, ROOT_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def test_the_root_comes_from_enrolment_or_config_and_they_must_agree(tmp_path: Path) -> None:
    assert pinned_root(tmp_path, ApprovalsConfig()) == ""
    assert pin_root(tmp_path, ROOT_A.upper().replace("SHA256", "sha256")) == ROOT_A
    assert (tmp_path / "approval-root").stat().st_mode & 0o777 == 0o600
    assert pinned_root(tmp_path, ApprovalsConfig()) == ROOT_A
    assert pinned_root(tmp_path, ApprovalsConfig(root=ROOT_A)) == ROOT_A
    with pytest.raises(ConfigError, match="keep one"):
        pinned_root(tmp_path, ApprovalsConfig(root=ROOT_B))
    with pytest.raises(ConfigError, match="--approver-root"):
        pin_root(tmp_path, "sha256:short")
    with pytest.raises(ConfigError, match=r"approvals\.root"):
        ApprovalsConfig(root="ed25519:AAAA")


def test_a_run_nonce_is_used_once_a_session_nonce_only_for_its_session(tmp_path: Path) -> None:
    memory = ConsentMemory(tmp_path)
    memory.claim_nonce("n1", "run:r1", 10_000, 0, reusable=False)
    with pytest.raises(ApprovalRefused, match="already used"):
        ConsentMemory(tmp_path).claim_nonce("n1", "run:r1", 10_000, 1, reusable=False)
    memory.claim_nonce("n2", "session:s1", 10_000, 0, reusable=True)
    memory.claim_nonce("n2", "session:s1", 10_000, 5, reusable=True)
    with pytest.raises(ApprovalRefused, match="already used"):
        memory.claim_nonce("n2", "session:s2", 10_000, 5, reusable=True)
    # expired nonces are forgotten (the approval itself has expired by then)
    memory.claim_nonce("n1", "run:r1", 30_000, 20_000, reusable=False)


def test_a_corrupt_memory_refuses_approvals_instead_of_forgetting(tmp_path: Path) -> None:
    (tmp_path / "consent.json").write_text("{not json")
    memory = ConsentMemory(tmp_path)
    with pytest.raises(ApprovalRefused, match="refused until it is repaired"):
        memory.claim_nonce("n", "run:r", 1, 0, reusable=False)
    with pytest.raises(ApprovalRefused):
        memory.revoked_keys()


def test_revocations_are_kept(tmp_path: Path) -> None:
    memory = ConsentMemory(tmp_path)
    assert memory.add_revocations([("sha256:k1", b"doc1"), ("sha256:k1", b"doc1")]) == 1
    assert ConsentMemory(tmp_path).revoked_keys() == {"sha256:k1"}
