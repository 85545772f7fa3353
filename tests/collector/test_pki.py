"""The CA signs what it decides, never what the CSR claims, and refuses bad CSRs."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.identity import new_key_and_csr
from collector.errors import InvalidRequest
from collector.pki import CertificateAuthority, ca_hash


def test_agent_certificate_subject_comes_from_the_ca_not_the_csr() -> None:
    ca = CertificateAuthority.create()
    _, csr = new_key_and_csr("evil-host")
    issued = ca.sign_agent_csr(csr, "ag-1", "acme", dt.timedelta(days=1))
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ag-1"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "acme"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert format(cert.serial_number, "x") == issued.serial_hex
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_pem))


@pytest.mark.parametrize("csr", [b"", b"not a csr", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"])
def test_malformed_csr_is_refused(csr: bytes) -> None:
    with pytest.raises(InvalidRequest):
        CertificateAuthority.create().sign_agent_csr(csr, "ag-1", "acme", dt.timedelta(days=1))


def test_server_certificate_names_and_ca_hash_are_stable() -> None:
    ca = CertificateAuthority.create()
    cert_pem, _ = ca.issue_server_certificate(["localhost", "127.0.0.1"], dt.timedelta(days=1))
    cert = x509.load_pem_x509_certificate(cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ca.hash == ca_hash(ca.cert_pem)
    assert ca.hash.startswith("sha256:") and len(ca.hash) == 7 + 64
    reloaded = CertificateAuthority(ca.cert_pem, ca.key_pem)
    assert reloaded.hash == ca.hash


def _csr_with(key: object, names: list[x509.NameAttribute] | None = None) -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization

    subject = x509.Name(names or [x509.NameAttribute(NameOID.COMMON_NAME, "host")])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    algorithm = None if type(key).__name__.startswith("Ed25519") else hashes.SHA256()
    csr = builder.sign(key, algorithm)  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM)


def test_agent_csr_checks_accept_what_agents_generate_and_refuse_the_rest() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from collector.pki import check_agent_csr

    _, agent_csr = new_key_and_csr("web-1")
    check_agent_csr(agent_csr)
    ed = _csr_with(ed25519.Ed25519PrivateKey.generate())
    check_agent_csr(ed)
    CertificateAuthority.create().sign_agent_csr(ed, "ag-1", "acme", dt.timedelta(days=1))
    with pytest.raises(InvalidRequest, match=r"EC P-256 or Ed25519.*not RSA"):
        check_agent_csr(_csr_with(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    with pytest.raises(InvalidRequest, match="EC P-256 or Ed25519"):
        check_agent_csr(_csr_with(ec.generate_private_key(ec.SECP384R1())))
    p256 = ec.generate_private_key(ec.SECP256R1())
    many = [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"u{i}") for i in range(9)]
    with pytest.raises(InvalidRequest, match="9 attributes"):
        check_agent_csr(_csr_with(p256, many))
    escape = [x509.NameAttribute(NameOID.COMMON_NAME, "a\x1b]0;x\x07")]
    with pytest.raises(InvalidRequest, match="printable"):
        check_agent_csr(_csr_with(p256, escape))
    with pytest.raises(InvalidRequest, match="larger than"):
        check_agent_csr(b"x" * 20_000)
