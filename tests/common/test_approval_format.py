"""The signed documents' format: exact bytes, strict parsing, clear errors."""

from __future__ import annotations

import json

import pytest

from common.approval_format import (
    Approval,
    ApproverCertificate,
    FormatError,
    Revocation,
    RunSubject,
    SessionSubject,
    SignedDocument,
    bound_params,
    canonical,
    parse_fingerprint,
    unbundle,
)
from tests.consent_support import CustomerRoot


def test_canonical_bytes_do_not_depend_on_key_order() -> None:
    assert (
        canonical({"b": 1, "a": "é"}) == canonical({"a": "é", "b": 1}) == '{"a":"é","b":1}'.encode()
    )
    with pytest.raises(ValueError):
        canonical({"x": float("nan")})


def test_documents_round_trip() -> None:
    root = CustomerRoot("acme")
    alice = root.certify("alice")
    run = RunSubject("run-1", "restart", "1.0.0", "sha256:" + "0" * 64, {"unit": "nginx"})
    approval_doc, certificate_doc = unbundle(alice.approve("agt-1", run))
    approval = Approval.from_body(approval_doc.fields())
    assert approval.subject == run and approval.approver == "alice"
    certificate = ApproverCertificate.from_body(certificate_doc.fields())
    assert certificate.key == alice.public and certificate.root == root.public
    revocation = Revocation.from_body(SignedDocument.parse(root.revoke(alice)).fields())
    assert revocation.key == alice.public
    session = SessionSubject("ses-1", "erin", 5)
    assert Approval.from_body({**approval.body(), "subject": session.to_json()}).subject == session


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": 1}, "unknown extra"),
        ({"nonce": "xyz"}, "approval.nonce"),
        ({"issued_ms": True}, "approval.issued_ms"),
        ({"issued_ms": -1}, "approval.issued_ms"),
        ({"agent_id": "../etc"}, "approval.agent_id"),
        ({"type": "aftercare.approver-certificate/v1"}, "approval.type"),
        ({"subject": {"kind": "shell"}}, "approval.subject.kind"),
        ({"subject": {"kind": "run", "run_id": "r"}}, "missing"),
    ],
)
def test_malformed_approvals_name_the_field(change: dict[str, object], message: str) -> None:
    body = Approval(
        "acme", "agt-1", "alice", SessionSubject("ses-1", "erin", 5), 1, 2, "a" * 32
    ).body()
    with pytest.raises(FormatError, match=message):
        Approval.from_body({**body, **change})


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b"{",
        b'{"body": "!!", "sig": ""}',
        b'{"body": "", "sig": "", "x": 1}',
        b"x" * 70_000,
    ],
)
def test_garbage_is_a_format_error(data: bytes) -> None:
    with pytest.raises(FormatError):
        SignedDocument.parse(data)
    with pytest.raises(FormatError):
        unbundle(data)


def test_certificate_keys_must_be_ed25519_sized() -> None:
    body = ApproverCertificate("acme", "alice", b"k" * 32, b"r" * 32, 1, 2).body()
    with pytest.raises(FormatError, match="32-byte"):
        ApproverCertificate.from_body({**body, "key": "AAAA"})


def test_secret_parameters_are_bound_by_their_hash() -> None:
    bound = bound_params({"unit": "nginx", "token": "s3cret"}, frozenset({"token"}))
    assert bound["unit"] == "nginx"
    assert bound["token"].startswith("sha256:") and "s3cret" not in json.dumps(bound)


def test_fingerprints() -> None:
    assert parse_fingerprint(" SHA256:" + "AB" * 32) == "sha256:" + "ab" * 32
    with pytest.raises(FormatError, match="not a key fingerprint"):
        parse_fingerprint("sha256:abc")
