"""Checks of customer-signed documents on the collector: early, clear refusals.

The collector is not trusted with consent (ARCHITECTURE.md, trust model 3): hosts
verify every document again against the root they pin. These checks only make a
forged, mismatched or stale document fail at the API, with a message that says why,
instead of on the host later. Pure functions (no gRPC, no store); the time is passed in.

Errors: ``InvalidRequest`` for a malformed document, ``PermissionDenied`` for a
signature that does not verify or a document that does not match what it is used for.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collector.errors import InvalidRequest, PermissionDenied
from collector.runs.model import RunRecord
from collector.sessions.model import RemoteSession
from common.approval_format import (
    Approval,
    ApproverCertificate,
    FormatError,
    Revocation,
    RunSubject,
    SessionSubject,
    SignedDocument,
    fingerprint,
    unbundle,
)

__all__ = [
    "CLOCK_TOLERANCE_MS",
    "SignedApproval",
    "check_pinned_root",
    "check_run",
    "check_session",
    "verify_bundle",
    "verify_certificate",
    "verify_revocation",
]

T = TypeVar("T")

CLOCK_TOLERANCE_MS = 60_000  # clock skew allowed between the approver's machine and us


@dataclass(frozen=True)
class SignedApproval:
    """A bundle whose signatures verified: the approval, its certificate, the bytes."""

    approval: Approval
    certificate: ApproverCertificate
    data: bytes

    @property
    def key_fingerprint(self) -> str:
        return fingerprint(self.certificate.key)

    @property
    def root_fingerprint(self) -> str:
        return fingerprint(self.certificate.root)


def verify_certificate(data: bytes) -> ApproverCertificate:
    """The certificate in ``data`` if it is signed by the root it names."""
    document = _parse(data, "certificate")
    certificate = _format(lambda: ApproverCertificate.from_body(_fields(document, "certificate")))
    _verify(document, certificate.root, "certificate", "the root it names")
    if certificate.expires_ms <= certificate.issued_ms:
        raise InvalidRequest("the certificate expires before it is issued")
    return certificate


def verify_revocation(data: bytes) -> Revocation:
    """The revocation in ``data`` if it is signed by the root it names."""
    document = _parse(data, "revocation")
    revocation = _format(lambda: Revocation.from_body(_fields(document, "revocation")))
    _verify(document, revocation.root, "revocation", "the root it names")
    return revocation


def verify_bundle(data: bytes, now_ms: int, revoked: Collection[str] = ()) -> SignedApproval:
    """The approval in bundle ``data``: its certificate signed by the root it names,
    the approval signed by the certified key, both current, the key not in
    ``revoked`` (key fingerprints), and the approver and customer the same in both."""
    approval_doc, certificate_doc = _format(lambda: unbundle(data))
    certificate = verify_certificate(certificate_doc.encode())
    key = fingerprint(certificate.key)
    _verify(approval_doc, certificate.key, "approval", f"the certified approver key {key}")
    approval = _format(lambda: Approval.from_body(_fields(approval_doc, "approval")))
    if (approval.customer, approval.approver) != (certificate.customer, certificate.approver):
        raise PermissionDenied(
            f"the approval is by {approval.approver!r} of {approval.customer!r}, but its "
            f"certificate is for {certificate.approver!r} of {certificate.customer!r}"
        )
    if key in revoked:
        raise PermissionDenied(
            f"approver key {key} ({certificate.approver}) was revoked by the customer; "
            "ask your admin for a new certificate (`aftercare approvers add`)"
        )
    if certificate.expires_ms <= now_ms or certificate.issued_ms > now_ms + CLOCK_TOLERANCE_MS:
        raise PermissionDenied(
            f"the approver certificate of {certificate.approver!r} is not valid now; ask "
            "your admin for a new one (`aftercare approvers add`)"
        )
    if approval.expires_ms <= now_ms:
        raise PermissionDenied("the signed approval has expired; approve again")
    if approval.issued_ms > now_ms + CLOCK_TOLERANCE_MS:
        raise PermissionDenied("the signed approval is issued in the future: check your clock")
    return SignedApproval(approval, certificate, bytes(data))


def check_pinned_root(signed: SignedApproval, pinned_root: str, hostname: str) -> None:
    """Refuse an approval certified by another root than the one the host pins."""
    if pinned_root and signed.root_fingerprint != pinned_root:
        raise PermissionDenied(
            f"the approver certificate was issued by root {signed.root_fingerprint}, but "
            f"host {hostname!r} pins {pinned_root}; ask your admin to certify your key "
            "with that root (`aftercare approvers add`)"
        )


def check_run(signed: SignedApproval, run: RunRecord) -> None:
    """The approval must name exactly this run: host, customer, run id, playbook,
    version, file digest and every (bound) parameter value."""
    approval = signed.approval
    _check_host(approval, run.agent_id, run.customer, f"run {run.run_id}")
    subject = approval.subject
    if not isinstance(subject, RunSubject):
        raise PermissionDenied(f"the signed approval is for a session, not run {run.run_id}")
    expected = {
        "run_id": run.run_id,
        "playbook": run.playbook,
        "version": run.version,
        "digest": run.playbook_digest,
    }
    for name, value in expected.items():
        if getattr(subject, name) != value:
            raise PermissionDenied(
                f"the signed approval names {name} {getattr(subject, name)!r}, but run "
                f"{run.run_id} has {value!r}"
            )
    if dict(subject.params) != dict(run.bound_params):
        differing = sorted(
            name
            for name in set(subject.params) | set(run.bound_params)
            if subject.params.get(name) != run.bound_params.get(name)
        )
        raise PermissionDenied(
            f"the signed approval binds other parameter values than run {run.run_id} "
            f"({', '.join(differing)})"
        )


def check_session(signed: SignedApproval, session: RemoteSession, at_ms: int) -> int:
    """The approval must name exactly this session (host, customer, id, engineer) with
    a window end after ``at_ms`` and within the requested duration from it; returns
    that window end."""
    approval = signed.approval
    _check_host(approval, session.agent_id, session.customer, f"session {session.session_id}")
    subject = approval.subject
    if not isinstance(subject, SessionSubject):
        raise PermissionDenied(
            f"the signed approval is for a run, not session {session.session_id}"
        )
    if subject.session_id != session.session_id:
        raise PermissionDenied(
            f"the signed approval is for session {subject.session_id}, not {session.session_id}"
        )
    if subject.engineer != session.engineer:
        raise PermissionDenied(
            f"the signed approval lets {subject.engineer!r} log in, but session "
            f"{session.session_id} is {session.engineer!r}'s"
        )
    end = subject.window_end_ms
    if end <= at_ms:
        raise PermissionDenied("the signed approval's window has already ended; approve again")
    if end > at_ms + session.requested_duration_ms + CLOCK_TOLERANCE_MS:
        raise PermissionDenied(
            f"the signed approval's window ends later than the "
            f"{session.requested_duration_ms // 60_000} min requested; an approval can "
            "only shorten the window"
        )
    return end


def _check_host(approval: Approval, agent_id: str, customer: str, what: str) -> None:
    if approval.customer != customer:
        raise PermissionDenied(
            f"the signed approval is by customer {approval.customer!r}; {what} is {customer!r}'s"
        )
    if approval.agent_id != agent_id:
        raise PermissionDenied(
            f"the signed approval is for host {approval.agent_id!r}; {what} is on {agent_id!r}"
        )


def _parse(data: bytes, what: str) -> SignedDocument:
    return _format(lambda: SignedDocument.parse(bytes(data), what))


def _fields(document: SignedDocument, what: str) -> dict[str, Any]:
    return document.fields(what)


def _format(make: Callable[[], T]) -> T:
    try:
        return make()
    except FormatError as exc:
        raise InvalidRequest(str(exc)) from exc


def _verify(document: SignedDocument, key: bytes, what: str, signer: str) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(document.signature, document.body)
    except InvalidSignature:
        raise PermissionDenied(
            f"the {what}'s signature does not verify against {signer} ({fingerprint(key)})"
        ) from None
