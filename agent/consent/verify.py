"""Whether a customer's signed approval counts for exactly this session or run here.

``ConsentVerifier.check(signed, expected)`` accepts a bundle (docs/approvals.md)
only if, in this order:

1. the certificate names a root whose fingerprint is the one this host pins, and
   the root's signature over the certificate's exact bytes verifies;
2. the certificate is for this host's customer, valid now, and its key is not
   revoked (``ConsentMemory``: revocations signed by the same root);
3. the approval's signature verifies with the certificate's key, and only then is
   the approval parsed;
4. the approval is for this customer and this agent id, by the certificate's
   approver, issued not in the future, not expired, and its subject matches the
   request field by field;
5. its nonce was not used before (a session's approval may be shown again for the
   same session only).

Anything else raises ``ApprovalRefused`` whose message is the precise reason. The
only field read before a signature check is the certificate's ``root`` key, to
compare its fingerprint with the pin. Signatures are checked with ``common.ed25519``
(pure Python), so the agent does not keep ``cryptography`` resident for them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from agent.consent.memory import ConsentMemory
from agent.errors import ApprovalRefused
from common import ed25519
from common.clock import Clock
from common.signed_bytes import FormatError, fingerprint

if TYPE_CHECKING:  # the approval format loads with the first approval (issue 17: memory)
    from common.approval_format import (
        Approval,
        ApproverCertificate,
        RunSubject,
        SessionSubject,
        SignedDocument,
    )

    Subject = SessionSubject | RunSubject

__all__ = ["CLOCK_SKEW_MS", "ConsentVerifier", "subject_key"]

CLOCK_SKEW_MS = 120_000  # tolerated difference between the approver's clock and the host's


def subject_key(subject: Subject) -> str:
    """``session:ID`` or ``run:ID``: what a nonce is bound to."""
    from common.approval_format import SessionSubject

    if isinstance(subject, SessionSubject):
        return f"session:{subject.session_id}"
    return f"run:{subject.run_id}"


class ConsentVerifier:
    """Verifies approvals for host ``agent_id`` of ``customer`` against the pinned ``root``.

    ``root`` is the pinned fingerprint ("" if none: every signed approval is refused).
    ``clock`` returns Unix seconds.
    """

    def __init__(
        self,
        root: str,
        customer: str,
        agent_id: str,
        memory: ConsentMemory,
        clock: Clock = time.time,
    ) -> None:
        self.root = root
        self._customer = customer
        self._agent_id = agent_id
        self._memory = memory
        self._clock = clock

    def check(self, signed: bytes, expected: Subject) -> Approval:
        """The approval in ``signed`` if it counts for ``expected`` now; else ApprovalRefused.

        For a session only ``session_id`` and ``engineer`` must match: the statement's
        ``window_end_ms`` is the latest end, which the caller enforces.
        """
        from common.approval_format import SessionSubject, unbundle

        if not self.root:
            raise ApprovalRefused(
                "this host pins no customer approval root, so no signed approval can be "
                "verified; pin one with [approvals] root in the agent config"
            )
        if not signed:
            raise ApprovalRefused(
                "the approval is not signed by a customer approver; the host's policy "
                "requires a signed approval (aftercare session approve / run approve with "
                "an approval key certified by the customer's root)"
            )
        try:
            approval_document, certificate_document = unbundle(signed)
        except FormatError as exc:
            raise ApprovalRefused(f"malformed signed approval: {exc}") from exc
        now_ms = int(self._clock() * 1000)
        certificate = self._certificate(certificate_document, now_ms)
        approval = self._approval(approval_document, certificate, now_ms)
        _require_subject(approval.subject, expected)
        self._memory.claim_nonce(
            approval.nonce,
            subject_key(expected),
            approval.expires_ms,
            now_ms,
            reusable=isinstance(expected, SessionSubject),
        )
        return approval

    def add_revocations(self, documents: Iterable[bytes]) -> int:
        """Remember every valid revocation of this customer's root; returns how many were new.

        Documents that do not verify against the pinned root are skipped (and logged
        by the caller through the return value staying 0).
        """
        from common.approval_format import Revocation, SignedDocument

        accepted = []
        for data in documents:
            try:
                document = SignedDocument.parse(data, "revocation")
                root = self._pinned_root_key(document, "revocation")
                _verify(root, document, "revocation")
                revocation = Revocation.from_body(document.fields("revocation"))
            except (ApprovalRefused, FormatError):
                continue
            if revocation.customer == self._customer:
                accepted.append((fingerprint(revocation.key), data))
        return self._memory.add_revocations(accepted) if accepted else 0

    def _certificate(self, document: SignedDocument, now_ms: int) -> ApproverCertificate:
        from common.approval_format import ApproverCertificate

        root = self._pinned_root_key(document, "approver certificate")
        _verify(root, document, "approver certificate")
        try:
            certificate = ApproverCertificate.from_body(document.fields("certificate"))
        except FormatError as exc:
            raise ApprovalRefused(f"malformed approver certificate: {exc}") from exc
        if certificate.customer != self._customer:
            raise ApprovalRefused(
                f"the approver certificate is for customer {certificate.customer!r}, this host "
                f"belongs to {self._customer!r}"
            )
        if certificate.issued_ms > now_ms + CLOCK_SKEW_MS or now_ms >= certificate.expires_ms:
            raise ApprovalRefused(
                f"the certificate of approver {certificate.approver!r} is not valid now "
                f"(valid {_iso(certificate.issued_ms)} to {_iso(certificate.expires_ms)})"
            )
        if fingerprint(certificate.key) in self._memory.revoked_keys():
            raise ApprovalRefused(
                f"approver {certificate.approver!r}'s key {fingerprint(certificate.key)} was "
                "revoked by the customer's root"
            )
        return certificate

    def _approval(
        self, document: SignedDocument, certificate: ApproverCertificate, now_ms: int
    ) -> Approval:
        from common.approval_format import Approval

        _verify(certificate.key, document, f"approval by {certificate.approver!r}")
        try:
            approval = Approval.from_body(document.fields("approval"))
        except FormatError as exc:
            raise ApprovalRefused(f"malformed approval: {exc}") from exc
        mismatches = [
            f"{what} {got!r} (expected {want!r})"
            for what, got, want in (
                ("customer", approval.customer, self._customer),
                ("host agent id", approval.agent_id, self._agent_id),
                ("approver", approval.approver, certificate.approver),
            )
            if got != want
        ]
        if mismatches:
            raise ApprovalRefused("the approval is for another " + "; ".join(mismatches))
        if approval.issued_ms > now_ms + CLOCK_SKEW_MS:
            raise ApprovalRefused(
                f"the approval is issued in the future ({_iso(approval.issued_ms)})"
            )
        if now_ms >= approval.expires_ms:
            raise ApprovalRefused(f"the approval expired at {_iso(approval.expires_ms)}")
        return approval

    def _pinned_root_key(self, document: SignedDocument, what: str) -> bytes:
        """The ``root`` key the document names, if its fingerprint is the pinned one."""
        from common.approval_format import parse_key

        try:
            value: Any = json.loads(document.body).get("root")
            root = parse_key(value, f"{what}.root")
        except (ValueError, AttributeError, FormatError) as exc:
            raise ApprovalRefused(f"malformed {what}: it names no root key ({exc})") from exc
        if fingerprint(root) != self.root:
            raise ApprovalRefused(
                f"the {what} is signed by root {fingerprint(root)}, not by the root this host "
                f"pins ({self.root})"
            )
        return root


def _require_subject(got: SessionSubject | RunSubject, expected: Subject) -> None:
    """ApprovalRefused naming every field of ``got`` that differs from ``expected``."""
    from common.approval_format import SessionSubject

    if type(got) is not type(expected):
        kind = "session" if isinstance(got, SessionSubject) else "playbook run"
        raise ApprovalRefused(f"the approval is for a {kind}, not for this request")
    fields = ("session_id", "engineer") if isinstance(expected, SessionSubject) else None
    wanted = expected.to_json()
    have = got.to_json()
    names = fields or tuple(name for name in wanted if name != "kind")
    differ = [
        f"{name} {have[name]!r} (this request: {wanted[name]!r})"
        for name in names
        if have[name] != wanted[name]
    ]
    if differ:
        raise ApprovalRefused("the approval does not match this request: " + "; ".join(differ))


def _verify(public_raw: bytes, document: SignedDocument, what: str) -> None:
    if not ed25519.verify(public_raw, document.body, document.signature):
        raise ApprovalRefused(f"the {what}'s signature does not verify (forged or altered)")


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
