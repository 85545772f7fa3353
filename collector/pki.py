"""The collector's certificate authority: CA, server certificates, agent certificates.

Agents hold client certificates issued here at enrolment (CN = agent id,
O = customer). The collector's own TLS certificate is issued by the same CA, so
one pinned CA (``ca_hash``) lets an agent verify the collector, kubeadm style.
Keys are ECDSA P-256. Nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.errors import InvalidRequest

_BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock skew between hosts
MAX_CSR_BYTES = 16 * 1024
MAX_CSR_SUBJECT_ATTRIBUTES = 8
MAX_CSR_SUBJECT_VALUE = 256
AgentPublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
# The organizational unit that marks a replica's relay certificate (agent certificates
# never carry one: their subject is CN and O only) and the name every replica's relay
# certificate holds, which a replica checks when it dials another (docs/replicas.md).
REPLICA_UNIT = "aftercare collector replica"
REPLICA_NAME = "replica.aftercare.invalid"


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate the CA signed: PEM, serial (hex) and expiry."""

    cert_pem: bytes
    serial_hex: str
    not_after: dt.datetime


def generate_key_pem() -> bytes:
    """A fresh ECDSA P-256 private key as unencrypted PKCS#8 PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ca_hash(ca_pem: bytes) -> str:
    """``sha256:HEX`` of the CA certificate's DER encoding (what the join command pins)."""
    der = x509.load_pem_x509_certificate(ca_pem).public_bytes(serialization.Encoding.DER)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def certificate_not_after(cert_pem: bytes) -> dt.datetime:
    """Expiry (UTC) of a PEM certificate."""
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


class CertificateAuthority:
    """Signs server and agent certificates with one CA key."""

    def __init__(self, cert_pem: bytes, key_pem: bytes) -> None:
        self.cert_pem = cert_pem
        self.key_pem = key_pem
        self._cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidRequest("CA key must be an EC private key")
        self._key = key

    @classmethod
    def create(cls, common_name: str = "aftercare collector CA") -> CertificateAuthority:
        """A new self-signed CA valid for ten years."""
        key_pem = generate_key_pem()
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert.public_bytes(serialization.Encoding.PEM), key_pem)

    @property
    def hash(self) -> str:
        """The CA pin, ``sha256:HEX``."""
        return ca_hash(self.cert_pem)

    def issue_server_certificate(
        self, names: Sequence[str], valid_for: dt.timedelta
    ) -> tuple[bytes, bytes]:
        """A (cert_pem, key_pem) pair for the collector, valid for DNS names / IPs ``names``."""
        if not names:
            raise InvalidRequest("a server certificate needs at least one name")
        key_pem = generate_key_pem()
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        sans: list[x509.GeneralName] = [_general_name(n) for n in dict.fromkeys(names)]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        builder = self._builder(subject, key.public_key(), valid_for)
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        cert = builder.sign(self._key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def issue_replica_certificate(
        self, replica: str, valid_for: dt.timedelta
    ) -> tuple[bytes, bytes]:
        """A (cert_pem, key_pem) pair for one replica's relay, as server and as client:
        CN=replica:ID, OU=``REPLICA_UNIT``, DNS name ``REPLICA_NAME``."""
        if not replica:
            raise InvalidRequest("a replica certificate needs the replica's id")
        key_pem = generate_key_pem()
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, f"replica:{replica}"[:64]),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, REPLICA_UNIT),
            ]
        )
        builder = self._builder(subject, key.public_key(), valid_for)
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(REPLICA_NAME)]), critical=False
        )
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        cert = builder.sign(self._key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def sign_agent_csr(
        self, csr_pem: bytes, agent_id: str, customer: str, valid_for: dt.timedelta
    ) -> IssuedCertificate:
        """Sign an agent's CSR with subject CN=agent id, O=customer (never taken from the CSR).

        Raises InvalidRequest if the CSR cannot be parsed or its signature is wrong.
        """
        csr = load_csr(csr_pem)
        public_key = _agent_key(csr)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, agent_id),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, customer),
            ]
        )
        builder = self._builder(subject, public_key, valid_for).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            serial_hex=format(cert.serial_number, "x"),
            not_after=cert.not_valid_after_utc,
        )

    def _builder(
        self, subject: x509.Name, public_key: AgentPublicKey, valid_for: dt.timedelta
    ) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + valid_for)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )


def is_replica_certificate(cert_pem: bytes) -> bool:
    """Whether a certificate (already verified against the CA by TLS) is a replica's:
    its subject carries ``REPLICA_UNIT``. False for anything unparsable."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return False
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return [u.value for u in units] == [REPLICA_UNIT]


def check_agent_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    """The CSR if an agent could have made it, else InvalidRequest saying why.

    Checked (before a join token is spent): at most ``MAX_CSR_BYTES``, parses, its
    self-signature is valid, the key is EC P-256 or Ed25519 (what agents generate),
    and the subject is sane (at most ``MAX_CSR_SUBJECT_ATTRIBUTES`` printable values
    of at most ``MAX_CSR_SUBJECT_VALUE`` characters). The subject is never copied
    into the certificate; the collector decides it.
    """
    csr = load_csr(csr_pem)
    _agent_key(csr)
    attributes = list(csr.subject)
    if len(attributes) > MAX_CSR_SUBJECT_ATTRIBUTES:
        raise InvalidRequest(
            f"the CSR's subject has {len(attributes)} attributes (max {MAX_CSR_SUBJECT_ATTRIBUTES})"
        )
    for attribute in attributes:
        value = attribute.value
        text = value if isinstance(value, str) else value.decode("latin-1")
        if len(text) > MAX_CSR_SUBJECT_VALUE or not text.isprintable():
            raise InvalidRequest(
                f"the CSR's subject has a value that is not printable text of at most "
                f"{MAX_CSR_SUBJECT_VALUE} characters"
            )
    return csr


def _agent_key(csr: x509.CertificateSigningRequest) -> AgentPublicKey:
    try:
        key = csr.public_key()
    except (ValueError, TypeError) as exc:  # unsupported key algorithm
        raise InvalidRequest(f"the CSR's key cannot be read: {exc}") from exc
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    kind = type(key).__name__.removeprefix("_").replace("PublicKey", "")
    raise InvalidRequest(
        f"the CSR's key must be EC P-256 or Ed25519 (as aftercare-agent generates), not {kind}"
    )


def load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR and check its signature; InvalidRequest if either fails."""
    if len(csr_pem) > MAX_CSR_BYTES:
        raise InvalidRequest(f"certificate signing request larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise InvalidRequest(f"malformed certificate signing request: {exc}") from exc
    try:
        if not csr.is_signature_valid:
            raise InvalidRequest("certificate signing request signature is invalid")
    except InvalidSignature as exc:
        raise InvalidRequest("certificate signing request signature is invalid") from exc
    return csr


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
