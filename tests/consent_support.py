"""A customer's approval root and approvers for tests: the real signed formats, made here.

``CustomerRoot`` holds a root key (as a customer's administrator would, never the
vendor) and certifies ``Approver`` keys; an approver signs session and run approvals.
Every knob an attacker or a clumsy user could turn is a keyword argument.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from common.approval_format import (
    Approval,
    ApproverCertificate,
    Revocation,
    RunSubject,
    SessionSubject,
    SignedDocument,
    bundle,
    fingerprint,
    seal,
)

HOUR_MS = 3_600_000


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Approver:
    name: str
    customer: str
    key: Ed25519PrivateKey
    certificate: SignedDocument

    @property
    def public(self) -> bytes:
        return raw_public(self.key)

    def approve(
        self,
        agent_id: str,
        subject: SessionSubject | RunSubject,
        *,
        customer: str | None = None,
        approver: str | None = None,
        issued_ms: int | None = None,
        expires_ms: int | None = None,
        nonce: str | None = None,
        signer: Ed25519PrivateKey | None = None,
    ) -> bytes:
        """A signed approval bundle; every field can be bent for an attack."""
        issued = now_ms() if issued_ms is None else issued_ms
        approval = Approval(
            customer=customer or self.customer,
            agent_id=agent_id,
            approver=approver or self.name,
            subject=subject,
            issued_ms=issued,
            expires_ms=issued + HOUR_MS if expires_ms is None else expires_ms,
            nonce=nonce or secrets.token_hex(16),
        )
        document = seal(approval.body(), (signer or self.key).sign)
        return bundle(document, self.certificate)


class CustomerRoot:
    """The customer's approval root (created on the customer's side)."""

    def __init__(self, customer: str = "acme") -> None:
        self.customer = customer
        self.key = Ed25519PrivateKey.generate()

    @property
    def public(self) -> bytes:
        return raw_public(self.key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def certify(
        self,
        name: str = "alice",
        *,
        customer: str | None = None,
        issued_ms: int | None = None,
        expires_ms: int | None = None,
    ) -> Approver:
        key = Ed25519PrivateKey.generate()
        issued = now_ms() - 60_000 if issued_ms is None else issued_ms
        certificate = ApproverCertificate(
            customer=customer or self.customer,
            approver=name,
            key=raw_public(key),
            root=self.public,
            issued_ms=issued,
            expires_ms=issued + 365 * 24 * HOUR_MS if expires_ms is None else expires_ms,
        )
        return Approver(name, self.customer, key, seal(certificate.body(), self.key.sign))

    def revoke(self, approver: Approver, reason: str = "left the company") -> bytes:
        revocation = Revocation(self.customer, approver.public, self.public, now_ms(), reason)
        return seal(revocation.body(), self.key.sign).encode()
