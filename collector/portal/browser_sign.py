"""Approvals signed in the browser: the bytes to sign, and the bundle from a signature.

The portal never holds a customer's private key. The approval page asks the server
for the exact canonical approval body (``approval_body``: the same ``Approval`` the
CLI signs, common/approval_format.py), the browser signs those bytes with its
non-extractable Ed25519 WebCrypto key, and posts body and signature back.
``browser_bundle`` wraps them with the key's certificate into the same bundle the CLI
sends; the run and session services then check it with collector/approval_check.py
exactly like a CLI-signed approval, and the host verifies it again. Nothing posted
back is trusted: a changed body fails the signature or the run/session checks.

Pure functions (no aiohttp, no store); errors are collector errors (InvalidRequest for
malformed input, PermissionDenied for a key without a usable certificate).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterable

from collector.errors import InvalidRequest, PermissionDenied
from collector.sessions.model import RemoteSession
from collector.store.base import ApproverRecord, RunRecord
from common.approval_format import (
    MAX_DOCUMENT_BYTES,
    Approval,
    FormatError,
    RunSubject,
    SessionSubject,
    SignedDocument,
    bundle,
    canonical,
    parse_fingerprint,
)

__all__ = [
    "RUN_APPROVAL_MS",
    "approval_body",
    "browser_bundle",
    "certificate_for",
    "run_subject",
    "session_subject",
]

RUN_APPROVAL_MS = 3600 * 1000  # as the CLI: a signed run approval expires after an hour

_CERTIFY = (
    "ask your administrator to certify the public key shown on the portal's "
    "'Approval key' page with `aftercare approvers add NAME --key PUBLIC_KEY --customer C`"
)


def certificate_for(
    approvers: Iterable[ApproverRecord], customer: str, key_fingerprint: str, now_ms: int
) -> ApproverRecord:
    """The newest current, unrevoked certificate of ``customer`` for the browser key
    ``key_fingerprint``; PermissionDenied saying what to do if there is none."""
    try:
        wanted = parse_fingerprint(key_fingerprint)
    except FormatError as exc:
        raise InvalidRequest(f"the browser key: {exc}") from exc
    ours = [a for a in approvers if a.customer == customer and a.key_fingerprint == wanted]
    if any(a.revoked_ms is not None for a in ours):
        raise PermissionDenied(
            f"your browser key {wanted} was revoked by your administrator; create a new "
            f"key on the 'Approval key' page and {_CERTIFY}"
        )
    current = [a for a in ours if a.issued_ms <= now_ms < a.expires_ms]
    if not current:
        raise PermissionDenied(f"your browser key {wanted} has no current certificate: {_CERTIFY}")
    return max(current, key=lambda a: a.issued_ms)


def run_subject(run: RunRecord) -> RunSubject:
    """What a run approval names: the exact playbook file and parameter values."""
    return RunSubject(
        run_id=run.run_id,
        playbook=run.playbook,
        version=run.version,
        digest=run.playbook_digest,
        params=dict(run.bound_params),
    )


def session_subject(session: RemoteSession, now_ms: int, until_ms: int | None) -> SessionSubject:
    """What a session approval names; the window is the requested one, or shorter."""
    end = now_ms + session.requested_duration_ms
    if until_ms is not None:
        end = min(end, until_ms)
    return SessionSubject(session.session_id, session.engineer, end)


def approval_body(
    certificate: ApproverRecord,
    agent_id: str,
    subject: RunSubject | SessionSubject,
    now_ms: int,
) -> bytes:
    """The canonical approval body for the browser to sign (a fresh nonce)."""
    if isinstance(subject, SessionSubject):
        expires = subject.window_end_ms  # as the CLI: valid until the window ends
    else:
        expires = now_ms + RUN_APPROVAL_MS
    approval = Approval(
        customer=certificate.customer,
        agent_id=agent_id,
        approver=certificate.name,
        subject=subject,
        issued_ms=now_ms,
        expires_ms=expires,
        nonce=secrets.token_hex(16),
    )
    return canonical(approval.body())


def browser_bundle(body_b64: str, signature_b64: str, certificate: ApproverRecord) -> bytes:
    """The bundle (approval + certificate) from the posted body and signature."""
    body = _b64(body_b64, "the signed approval body")
    signature = _b64(signature_b64, "the signature")
    if len(signature) != 64:
        raise InvalidRequest("the signature is not an Ed25519 signature (64 bytes)")
    try:
        certificate_doc = SignedDocument.parse(certificate.certificate, "certificate")
    except FormatError as exc:
        raise InvalidRequest(str(exc)) from exc
    return bundle(SignedDocument(body, signature), certificate_doc)


def _b64(text: str, what: str) -> bytes:
    if not text or len(text) > 2 * MAX_DOCUMENT_BYTES:
        raise InvalidRequest(f"{what} is missing or too large; sign again on the page")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{what} is not base64; sign again on the page") from None
