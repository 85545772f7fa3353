"""The collector's data directory: CA, server certificate, admin token and store.

Layout (created on first start, secrets mode 0600)::

    DIR/ca.pem         CA certificate (what agents pin by hash)
    DIR/ca-key.pem     CA private key                          0600
    DIR/server.pem     collector TLS certificate (re-issued at every start)
    DIR/server-key.pem collector TLS key                       0600
    DIR/admin-token    the first admin's API token             0600
    DIR/audit-key.pem  key signing audit checkpoints (Ed25519) 0600
    DIR/aftercare.db   the SQLite store
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from collector.audit_checkpoint import AuditKey, new_audit_key_pem
from collector.auth import hash_token, new_api_token
from collector.errors import ConfigError
from collector.pki import CertificateAuthority
from collector.store import Store, open_store

ADMIN_USER = "admin"
SERVER_CERT_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class DataDir:
    """Paths inside one collector data directory."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "server-key.pem"

    @property
    def admin_token(self) -> Path:
        return self.root / "admin-token"

    @property
    def audit_key(self) -> Path:
        return self.root / "audit-key.pem"

    def is_initialised(self) -> bool:
        return self.ca_cert.exists() and self.ca_key.exists()

    def load_ca(self) -> CertificateAuthority:
        """The CA; raises ConfigError if the directory was never initialised."""
        if not self.is_initialised():
            raise ConfigError(
                f"{self.root} is not an aftercare data directory; "
                f"start `aftercare-collector serve --data-dir {self.root}` once to create it"
            )
        return CertificateAuthority(self.ca_cert.read_bytes(), self.ca_key.read_bytes())

    def ensure_audit_key(self) -> AuditKey:
        """The audit checkpoint key, created (0600) if this directory has none yet."""
        if not self.audit_key.exists():
            write_secret(self.audit_key, new_audit_key_pem())
        return self.load_audit_key()

    def load_audit_key(self) -> AuditKey:
        """The audit checkpoint key; ConfigError if there is none."""
        try:
            pem = self.audit_key.read_bytes()
        except FileNotFoundError as exc:
            raise ConfigError(
                f"{self.audit_key} is missing: start the collector once to create it"
            ) from exc
        return AuditKey.from_pem(pem, str(self.audit_key))

    def open_store(self) -> Store:
        """Open the store, refusing an uninitialised directory."""
        self.load_ca()
        return open_store(self.root)


@dataclass(frozen=True)
class InitResult:
    """What ``initialise`` did; ``admin_token`` is set only on the first start."""

    ca: CertificateAuthority
    admin_token: str | None


def initialise(data_dir: DataDir, now_ms: int) -> InitResult:
    """Create the CA, store, admin token and audit key if missing; idempotent afterwards."""
    data_dir.root.mkdir(parents=True, exist_ok=True)
    if data_dir.is_initialised():
        data_dir.ensure_audit_key()  # data directories from before audit checkpoints
        return InitResult(data_dir.load_ca(), None)
    ca = CertificateAuthority.create()
    token = new_api_token()
    store = open_store(data_dir.root)
    try:
        store.add_user(ADMIN_USER, "admin", None, hash_token(token), now_ms)
        store.append_audit("system", "collector.initialised", str(data_dir.root), {}, now_ms)
    finally:
        store.close()
    write_secret(data_dir.admin_token, (token + "\n").encode())
    data_dir.ensure_audit_key()
    data_dir.ca_cert.write_bytes(ca.cert_pem)
    write_secret(data_dir.ca_key, ca.key_pem)  # last: marks the directory initialised
    return InitResult(ca, token)


def issue_server_certificate(
    data_dir: DataDir, ca: CertificateAuthority, extra_names: Sequence[str]
) -> None:
    """(Re-)issue the collector's TLS certificate for localhost, this host and ``extra_names``."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), *extra_names]
    cert_pem, key_pem = ca.issue_server_certificate(names, SERVER_CERT_VALIDITY)
    write_secret(data_dir.server_key, key_pem)
    data_dir.server_cert.write_bytes(cert_pem + ca.cert_pem)  # chain: leaf then CA


def write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
