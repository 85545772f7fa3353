"""Signing what a customer user approves: find their key and certificate, sign, bundle.

Used by ``aftercare session approve`` and ``aftercare run approve``. The key is
``--approval-key``, else ``$AFTERCARE_APPROVAL_KEY``, else ``~/.config/aftercare/
approval.key`` if it exists. The certificate is ``--approval-cert``, else the
``.cert`` file next to the key, else the caller's own certificate on the collector
(ListApprovers, matching the key's fingerprint). A host that pins an approval root
needs a signed approval: without a key, or with a certificate from another root, the
command fails before anything is sent (``ConsentError`` says what to do).
"""

from __future__ import annotations

import argparse
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.client.approval_keys import (
    ENV_APPROVAL_KEY,
    KEY_FILE,
    ApprovalKeyError,
    certificate_path_for,
    config_dir,
    raw_public_key,
    read_certificate,
    read_private_key,
    verify_certificate,
)
from collector.client.connection import Api
from collector.client.paging import fetch_all
from common.approval_format import (
    Approval,
    ApproverCertificate,
    RunSubject,
    SessionSubject,
    SignedDocument,
    bundle,
    fingerprint,
    seal,
)
from proto import api_pb2

__all__ = ["Approver", "ConsentError", "add_approval_key_args", "load_approver", "new_nonce"]

_GET_A_KEY = (
    "create your approval key with `aftercare approvers key` and ask your customer's "
    "admin to certify it with `aftercare approvers add NAME --key PUBLIC_KEY --customer C`"
)


class ConsentError(Exception):
    """No usable approval key or certificate; the message says what to do."""


@dataclass(frozen=True)
class Approver:
    """A person's approval key and the certificate the customer's root gave it."""

    key: Ed25519PrivateKey
    certificate: ApproverCertificate
    certificate_document: SignedDocument

    def sign(
        self,
        *,
        agent_id: str,
        subject: SessionSubject | RunSubject,
        issued_ms: int,
        expires_ms: int,
    ) -> bytes:
        """The bundle (signed approval + certificate) for ``subject`` on ``agent_id``."""
        approval = Approval(
            customer=self.certificate.customer,
            agent_id=agent_id,
            approver=self.certificate.approver,
            subject=subject,
            issued_ms=issued_ms,
            expires_ms=expires_ms,
            nonce=new_nonce(),
        )
        return bundle(seal(approval.body(), self.key.sign), self.certificate_document)


def add_approval_key_args(parser: argparse.ArgumentParser) -> None:
    """``--approval-key`` and ``--approval-cert`` for a command that signs approvals."""
    parser.add_argument(
        "--approval-key",
        default="",
        help="your approval key (AFTERCARE_APPROVAL_KEY; default ~/.config/aftercare/"
        "approval.key if it exists)",
    )
    parser.add_argument(
        "--approval-cert",
        default="",
        help="its certificate (default: the .cert file next to the key, else yours "
        "from the collector)",
    )


def new_nonce() -> str:
    """A fresh random nonce: 16 bytes as lower-case hex."""
    return secrets.token_hex(16)


def load_approver(
    client: Api,
    key_arg: str,
    cert_arg: str,
    pinned_root: str,
    customer: str,
    now_ms: int,
) -> Approver | None:
    """The caller's approver identity for a host of ``customer`` pinning ``pinned_root``
    ("" if none); None when there is no key and the host pins no root (unsigned)."""
    key_path = _key_path(key_arg)
    if key_path is None:
        if pinned_root:
            raise ConsentError(
                f"this host pins the approval root {pinned_root}, so approvals must be "
                f"signed, but you have no approval key: {_GET_A_KEY}"
            )
        return None
    try:
        key = read_private_key(key_path)
        public = raw_public_key(key)
        data, certificate = _certificate(client, key_path, cert_arg, fingerprint(public))
    except ApprovalKeyError as exc:
        raise ConsentError(str(exc)) from exc
    if certificate.key != public:
        raise ConsentError(
            f"the approval certificate is for key {fingerprint(certificate.key)}, not your "
            f"key {fingerprint(public)} ({key_path}); use the certificate made for this key"
        )
    if certificate.customer != customer:
        raise ConsentError(
            f"your approval certificate is for customer {certificate.customer!r}, but this "
            f"host belongs to {customer!r}"
        )
    if pinned_root and fingerprint(certificate.root) != pinned_root:
        raise ConsentError(
            f"your approval certificate was issued by root {fingerprint(certificate.root)}, "
            f"but this host pins {pinned_root}: ask your admin to certify your key with "
            "that root (`aftercare approvers add`)"
        )
    if certificate.expires_ms <= now_ms:
        raise ConsentError(
            "your approval certificate has expired: ask your admin for a new one "
            "(`aftercare approvers add`)"
        )
    return Approver(key, certificate, SignedDocument.parse(data, "certificate"))


def _key_path(key_arg: str) -> Path | None:
    explicit = key_arg or os.environ.get(ENV_APPROVAL_KEY, "")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise ConsentError(f"approval key {path} does not exist: {_GET_A_KEY}")
        return path
    default = config_dir() / KEY_FILE
    return default if default.exists() else None


def _certificate(
    client: Api, key_path: Path, cert_arg: str, key_fingerprint: str
) -> tuple[bytes, ApproverCertificate]:
    if cert_arg:
        return read_certificate(Path(cert_arg).expanduser())
    beside = certificate_path_for(key_path)
    if beside.exists():
        return read_certificate(beside)
    reply = fetch_all(client, "ListApprovers", api_pb2.ListApproversRequest(), "approvers")
    ours = [a for a in reply.approvers if a.key_fingerprint == key_fingerprint]
    mine = [a for a in ours if not a.revoked_unix_ms]
    if ours and not mine:
        raise ConsentError(
            f"your approval key {key_fingerprint} was revoked by your customer's admin: "
            "make a new one with `aftercare approvers key --out FILE` and have it certified"
        )
    if not mine:
        raise ConsentError(
            f"no certificate for your approval key {key_fingerprint}: not in {beside} and "
            "not on the collector. Ask your customer's admin to certify it with "
            "`aftercare approvers add NAME --key PUBLIC_KEY --customer C`"
        )
    newest = max(mine, key=lambda a: a.issued_unix_ms)
    return newest.certificate, verify_certificate(newest.certificate, "the collector's copy")
