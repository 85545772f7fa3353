"""Server side of approvals signed in the browser: the bytes handed out, the bundle
made from a posted signature, and the attacks it must refuse (checked with
collector/approval_check.py exactly as a CLI-signed approval)."""

from __future__ import annotations

import base64

import pytest

from collector.approval_check import check_session, verify_bundle
from collector.errors import InvalidRequest, PermissionDenied
from collector.portal import browser_sign
from collector.sessions.model import RemoteSession
from collector.store.base import ApproverRecord
from common.approval_format import fingerprint
from tests.consent_support import Approver, CustomerRoot, now_ms


def _record(approver: Approver, *, revoked_ms: int | None = None) -> ApproverRecord:
    now = now_ms()
    return ApproverRecord(
        customer=approver.customer,
        key_fingerprint=fingerprint(approver.public),
        name=approver.name,
        root_fingerprint="sha256:" + "0" * 64,
        issued_ms=now - 60_000,
        expires_ms=now + 3_600_000,
        certificate=approver.certificate.encode(),
        added_ms=now,
        added_by="user:admin",
        revoked_ms=revoked_ms,
    )


def _session(session_id: str = "ses-000000000001") -> RemoteSession:
    now = now_ms()
    return RemoteSession(
        session_id=session_id,
        agent_id="agent-1",
        customer="acme",
        hostname="db1",
        engineer="eve",
        reason="disk",
        requested_duration_ms=1_800_000,
        requested_ms=now,
        pending_expires_ms=now + 3_600_000,
    )


def _browser_signs(approver: Approver, session: RemoteSession) -> tuple[str, str]:
    """What the page does: fetch the body, sign its exact bytes."""
    now = now_ms()
    body = browser_sign.approval_body(
        _record(approver), session.agent_id, browser_sign.session_subject(session, now, None), now
    )
    signature = approver.key.sign(body)
    return base64.b64encode(body).decode(), base64.b64encode(signature).decode()


def test_a_browser_signature_over_the_served_bytes_verifies_like_a_cli_approval() -> None:
    alice = CustomerRoot().certify("alice")
    session = _session()
    body, signature = _browser_signs(alice, session)
    data = browser_sign.browser_bundle(body, signature, _record(alice))
    signed = verify_bundle(data, now_ms())
    assert signed.key_fingerprint == fingerprint(alice.public)
    assert check_session(signed, session, now_ms()) <= now_ms() + 1_800_000


def test_an_uncertified_browser_key_is_refused_with_what_to_do() -> None:
    alice = CustomerRoot().certify("alice")
    stranger = CustomerRoot().certify("mallory")
    with pytest.raises(PermissionDenied, match=r"no current certificate.*approvers add"):
        browser_sign.certificate_for(
            [_record(alice)], "acme", fingerprint(stranger.public), now_ms()
        )


def test_a_revoked_browser_key_is_refused() -> None:
    alice = CustomerRoot().certify("alice")
    with pytest.raises(PermissionDenied, match="revoked"):
        browser_sign.certificate_for(
            [_record(alice, revoked_ms=now_ms())], "acme", fingerprint(alice.public), now_ms()
        )


def test_another_customers_certificate_is_not_used() -> None:
    alice = CustomerRoot().certify("alice")
    with pytest.raises(PermissionDenied):
        browser_sign.certificate_for([_record(alice)], "other", fingerprint(alice.public), now_ms())


def test_a_signature_over_different_bytes_is_refused() -> None:
    alice = CustomerRoot().certify("alice")
    session = _session()
    body, _ = _browser_signs(alice, session)
    other = base64.b64encode(alice.key.sign(b"something else")).decode()
    data = browser_sign.browser_bundle(body, other, _record(alice))
    with pytest.raises(PermissionDenied, match="signature does not verify"):
        verify_bundle(data, now_ms())


def test_a_signature_by_an_uncertified_key_over_the_bytes_is_refused() -> None:
    alice = CustomerRoot().certify("alice")
    mallory = CustomerRoot().certify("alice")
    session = _session()
    body, _ = _browser_signs(alice, session)
    forged = base64.b64encode(mallory.key.sign(base64.b64decode(body))).decode()
    with pytest.raises(PermissionDenied, match="certified approver key"):
        verify_bundle(browser_sign.browser_bundle(body, forged, _record(alice)), now_ms())


def test_an_approval_replayed_for_another_session_is_refused() -> None:
    alice = CustomerRoot().certify("alice")
    body, signature = _browser_signs(alice, _session("ses-000000000001"))
    signed = verify_bundle(browser_sign.browser_bundle(body, signature, _record(alice)), now_ms())
    with pytest.raises(PermissionDenied, match="for session ses-000000000001, not"):
        check_session(signed, _session("ses-000000000002"), now_ms())


@pytest.mark.parametrize(("body", "signature"), [("", "AA=="), ("!!", "AA=="), ("e30=", "AA==")])
def test_malformed_posts_get_a_clear_error(body: str, signature: str) -> None:
    alice = CustomerRoot().certify("alice")
    with pytest.raises(InvalidRequest, match=r"sign again|Ed25519"):
        browser_sign.browser_bundle(body, signature, _record(alice))
