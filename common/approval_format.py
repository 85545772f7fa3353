"""The customer's signed consent: documents, their exact bytes, and strict parsing.

Standard library only: signing happens in the customer's CLI, verification on the
host (``agent.consent``); this module only says what the bytes are. The format is
specified in docs/approvals.md.

A **signed document** is the JSON object ``{"body": B64, "sig": B64}``: ``body`` is
the canonical JSON of one of the bodies below (sorted keys, no whitespace, UTF-8)
and ``sig`` the Ed25519 signature over exactly those bytes. Verifiers check the
signature over the decoded ``body`` bytes *before* parsing them.

Bodies (``type`` tells which):

* ``aftercare.approver-certificate/v1`` — the customer's approval root certifies
  the key of one person who approves (signed by the root);
* ``aftercare.approver-revocation/v1`` — the root withdraws such a key;
* ``aftercare.approval/v1`` — a certified approver approves exactly one session or
  one playbook run on one host (signed by the approver's key).

An approval travels as a **bundle**: ``{"approval": DOC, "certificate": DOC}``.
Keys are raw 32-byte Ed25519 public keys in base64; a key's **fingerprint** is
``sha256:HEX`` of its raw bytes (that is what hosts pin for the root).

Every ``from_body``/``parse_*`` raises ``FormatError`` naming the field at fault,
and accepts no unknown fields.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from common.signed_bytes import FormatError, canonical, fingerprint, parse_fingerprint

__all__ = [
    "APPROVAL",
    "CERTIFICATE",
    "MAX_DOCUMENT_BYTES",
    "REVOCATION",
    "Approval",
    "ApproverCertificate",
    "FormatError",
    "Revocation",
    "RunSubject",
    "SessionSubject",
    "SignedDocument",
    "bound_params",
    "bundle",
    "canonical",
    "fingerprint",
    "parse_fingerprint",
    "parse_key",
    "seal",
    "unbundle",
]

CERTIFICATE = "aftercare.approver-certificate/v1"
REVOCATION = "aftercare.approver-revocation/v1"
APPROVAL = "aftercare.approval/v1"
MAX_DOCUMENT_BYTES = 64 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_NONCE = re.compile(r"[0-9a-f]{32,64}")


def parse_key(value: Any, what: str = "key") -> bytes:
    """A raw Ed25519 public key from its base64 text; FormatError naming ``what``."""
    return _key(value, what)


@dataclass(frozen=True)
class SignedDocument:
    """A body and the signature over its exact bytes; nothing in it is trusted yet."""

    body: bytes
    signature: bytes

    @classmethod
    def parse(cls, data: bytes, what: str = "document") -> SignedDocument:
        """Split ``data`` into body and signature (FormatError if malformed)."""
        if len(data) > MAX_DOCUMENT_BYTES:
            raise FormatError(f"the {what} is larger than {MAX_DOCUMENT_BYTES} bytes")
        return cls.from_json(_object(_json(data, what), what), what)

    @classmethod
    def from_json(cls, value: Mapping[str, Any], what: str) -> SignedDocument:
        _exact(value, {"body", "sig"}, what)
        return cls(_b64(value["body"], f"{what}.body"), _b64(value["sig"], f"{what}.sig"))

    def to_json(self) -> dict[str, str]:
        return {"body": _enc(self.body), "sig": _enc(self.signature)}

    def encode(self) -> bytes:
        return canonical(self.to_json())

    def fields(self, what: str = "document") -> dict[str, Any]:
        """The body as a JSON object (call only after the signature verified)."""
        return _object(_json(self.body, what), what)


def seal(body: Mapping[str, Any], sign: Callable[[bytes], bytes]) -> SignedDocument:
    """Sign the canonical bytes of ``body`` with ``sign`` (an Ed25519 private key's sign)."""
    data = canonical(dict(body))
    return SignedDocument(data, sign(data))


def bundle(approval: SignedDocument, certificate: SignedDocument) -> bytes:
    """The bytes that travel with a session or run: the approval and its certificate."""
    return canonical({"approval": approval.to_json(), "certificate": certificate.to_json()})


def unbundle(data: bytes) -> tuple[SignedDocument, SignedDocument]:
    """(approval, certificate) from a bundle; FormatError if malformed."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise FormatError(f"the signed approval is larger than {MAX_DOCUMENT_BYTES} bytes")
    value = _object(_json(data, "signed approval"), "signed approval")
    _exact(value, {"approval", "certificate"}, "signed approval")
    return (
        SignedDocument.from_json(_object(value["approval"], "approval"), "approval"),
        SignedDocument.from_json(_object(value["certificate"], "certificate"), "certificate"),
    )


@dataclass(frozen=True)
class ApproverCertificate:
    """The root certifies that ``key`` belongs to ``approver`` of ``customer``."""

    customer: str
    approver: str
    key: bytes
    root: bytes
    issued_ms: int
    expires_ms: int

    def body(self) -> dict[str, Any]:
        return {
            "type": CERTIFICATE,
            "customer": self.customer,
            "approver": self.approver,
            "key": _enc(self.key),
            "root": _enc(self.root),
            "issued_ms": self.issued_ms,
            "expires_ms": self.expires_ms,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ApproverCertificate:
        _typed(body, CERTIFICATE, "certificate")
        keys = {"type", "customer", "approver", "key", "root", "issued_ms", "expires_ms"}
        _exact(body, keys, "certificate")
        return cls(
            customer=_name(body["customer"], "certificate.customer"),
            approver=_name(body["approver"], "certificate.approver"),
            key=_key(body["key"], "certificate.key"),
            root=_key(body["root"], "certificate.root"),
            issued_ms=_ms(body["issued_ms"], "certificate.issued_ms"),
            expires_ms=_ms(body["expires_ms"], "certificate.expires_ms"),
        )


@dataclass(frozen=True)
class Revocation:
    """The root withdraws the approver key ``key`` of ``customer`` from ``revoked_ms``."""

    customer: str
    key: bytes
    root: bytes
    revoked_ms: int
    reason: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "type": REVOCATION,
            "customer": self.customer,
            "key": _enc(self.key),
            "root": _enc(self.root),
            "revoked_ms": self.revoked_ms,
            "reason": self.reason,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Revocation:
        _typed(body, REVOCATION, "revocation")
        _exact(body, {"type", "customer", "key", "root", "revoked_ms", "reason"}, "revocation")
        return cls(
            customer=_name(body["customer"], "revocation.customer"),
            key=_key(body["key"], "revocation.key"),
            root=_key(body["root"], "revocation.root"),
            revoked_ms=_ms(body["revoked_ms"], "revocation.revoked_ms"),
            reason=_text(body["reason"], "revocation.reason"),
        )


@dataclass(frozen=True)
class SessionSubject:
    """A remote session: who logs in, and until when at the latest."""

    session_id: str
    engineer: str
    window_end_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "session",
            "session_id": self.session_id,
            "engineer": self.engineer,
            "window_end_ms": self.window_end_ms,
        }


@dataclass(frozen=True)
class RunSubject:
    """A playbook run: exactly this playbook file with exactly these parameters.

    ``params`` holds every parameter value as the host receives it, except secret
    ones, which appear as ``sha256:HEX`` of the value (``bound_params``).
    """

    run_id: str
    playbook: str
    version: str
    digest: str
    params: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "run",
            "run_id": self.run_id,
            "playbook": self.playbook,
            "version": self.version,
            "digest": self.digest,
            "params": dict(self.params),
        }


Subject = SessionSubject | RunSubject


@dataclass(frozen=True)
class Approval:
    """``approver`` of ``customer`` approves ``subject`` on host ``agent_id``."""

    customer: str
    agent_id: str
    approver: str
    subject: Subject
    issued_ms: int
    expires_ms: int
    nonce: str

    def body(self) -> dict[str, Any]:
        return {
            "type": APPROVAL,
            "customer": self.customer,
            "agent_id": self.agent_id,
            "approver": self.approver,
            "subject": self.subject.to_json(),
            "issued_ms": self.issued_ms,
            "expires_ms": self.expires_ms,
            "nonce": self.nonce,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Approval:
        _typed(body, APPROVAL, "approval")
        keys = {"type", "customer", "agent_id", "approver", "subject"}
        _exact(body, keys | {"issued_ms", "expires_ms", "nonce"}, "approval")
        nonce = _text(body["nonce"], "approval.nonce")
        if not _NONCE.fullmatch(nonce):
            raise FormatError("approval.nonce: must be 32 to 64 lower-case hex digits")
        return cls(
            customer=_name(body["customer"], "approval.customer"),
            agent_id=_name(body["agent_id"], "approval.agent_id"),
            approver=_name(body["approver"], "approval.approver"),
            subject=_subject(_object(body["subject"], "approval.subject")),
            issued_ms=_ms(body["issued_ms"], "approval.issued_ms"),
            expires_ms=_ms(body["expires_ms"], "approval.expires_ms"),
            nonce=nonce,
        )


def bound_params(params: Mapping[str, str], secret: frozenset[str]) -> dict[str, str]:
    """Parameter values as an approval binds them: secret ones as ``sha256:HEX``."""
    return {
        name: "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()
        if name in secret
        else value
        for name, value in params.items()
    }


def _subject(value: Mapping[str, Any]) -> Subject:
    kind = value.get("kind")
    if kind == "session":
        _exact(value, {"kind", "session_id", "engineer", "window_end_ms"}, "approval.subject")
        return SessionSubject(
            session_id=_name(value["session_id"], "approval.subject.session_id"),
            engineer=_name(value["engineer"], "approval.subject.engineer"),
            window_end_ms=_ms(value["window_end_ms"], "approval.subject.window_end_ms"),
        )
    if kind == "run":
        where = "approval.subject"
        _exact(value, {"kind", "run_id", "playbook", "version", "digest", "params"}, where)
        params = _object(value["params"], f"{where}.params")
        return RunSubject(
            run_id=_name(value["run_id"], f"{where}.run_id"),
            playbook=_name(value["playbook"], f"{where}.playbook"),
            version=_text(value["version"], f"{where}.version"),
            digest=_text(value["digest"], f"{where}.digest"),
            params={str(k): _text(v, f"{where}.params.{k}") for k, v in params.items()},
        )
    raise FormatError(f"approval.subject.kind: must be 'session' or 'run', got {kind!r}")


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"the {what} is not JSON: {exc}") from exc


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FormatError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def _exact(value: Mapping[str, Any], keys: set[str], what: str) -> None:
    missing, extra = keys - set(value), set(value) - keys
    if missing or extra:
        parts = [f"missing {', '.join(sorted(missing))}"] if missing else []
        parts += [f"unknown {', '.join(sorted(extra))}"] if extra else []
        raise FormatError(f"{what}: {'; '.join(parts)}")


def _typed(body: Mapping[str, Any], expected: str, what: str) -> None:
    if body.get("type") != expected:
        raise FormatError(f"{what}.type: expected {expected!r}, got {body.get('type')!r}")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > 4096:
        raise FormatError(f"{what}: expected a string of at most 4096 characters")
    return value


def _name(value: Any, what: str) -> str:
    text = _text(value, what)
    if not _NAME.fullmatch(text):
        raise FormatError(f"{what}: {text!r} is not a name (letters, digits, '.', '_', '@', '-')")
    return text


def _ms(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise FormatError(f"{what}: expected milliseconds since the epoch (a whole number)")
    return value


def _key(value: Any, what: str) -> bytes:
    raw = _b64(value, what)
    if len(raw) != 32:
        raise FormatError(f"{what}: expected a 32-byte Ed25519 public key, got {len(raw)} bytes")
    return raw


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise FormatError(f"{what}: expected base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{what}: not valid base64") from exc


def _enc(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
