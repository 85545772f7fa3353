"""The collector's data directory: CA, server certificate, admin token and store.

Layout (created on first start, secrets mode 0600)::

    DIR/ca.pem         CA certificate (what agents pin by hash)
    DIR/ca-key.pem     CA private key                          0600
    DIR/server.pem     collector TLS certificate (re-issued at every start)
    DIR/server-key.pem collector TLS key                       0600
    DIR/admin-token    the first admin's API token             0600
    DIR/audit-key.pem  key signing audit checkpoints (Ed25519) 0600
    DIR/aftercare.db   the SQLite store (and its -wal, -shm)     0600
    DIR/store-url      the store's URL when it is PostgreSQL    0600
                       (``serve --store``; no aftercare.db then)
    DIR/runs/          playbook run outputs                    0700, files 0600
    DIR/recordings/    session recordings                      0700, files 0600

The directory itself is 0700: ``initialise`` creates it so, and tightens a directory
made by hand (``mkdir``, 0755) or by an older collector, with its top-level files
and subdirectories (``restrict``). ``aftercare-collector serve`` also runs with
umask 077, so whatever it creates later is private too.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from collector.audit_checkpoint import AuditKey, new_audit_key_pem
from collector.auth import hash_token, new_api_token
from collector.errors import ConfigError
from collector.pki import CertificateAuthority
from collector.store import Store, open_store, open_store_url
from common.atomic import write_atomic

log = logging.getLogger(__name__)

ADMIN_USER = "admin"
PRIVATE = stat.S_IRWXG | stat.S_IRWXO  # the bits a data directory entry must not have
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

    @property
    def store_url_file(self) -> Path:
        """Present when the store is not the embedded SQLite file: its URL (0600, as it
        may hold a password). Every command on this directory opens that store."""
        return self.root / "store-url"

    def store_url(self) -> str | None:
        """The external store's URL, or None for the embedded SQLite store."""
        try:
            return self.store_url_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def bind_store(self, url: str) -> None:
        """Record that this directory's store is at ``url``; refuse to rebind it."""
        bound = self.store_url()
        if bound is None and self.is_initialised():
            raise ConfigError(
                f"{self.root} already uses its embedded SQLite store; moving it to {url!r} "
                f"needs export/import (not available yet) — start without --store"
            )
        if bound is not None and bound != url:
            raise ConfigError(
                f"{self.root} uses the store in {self.store_url_file}, not the --store given; "
                f"pass the same URL (or edit that file if the database moved)"
            )
        if bound is None:
            write_secret(self.store_url_file, (url + "\n").encode())

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
        return self.connect_store()

    def connect_store(self) -> Store:
        """Open the store (the bound URL's, else the embedded SQLite), initialised or not."""
        url = self.store_url()
        return open_store(self.root) if url is None else open_store_url(url)


@dataclass(frozen=True)
class InitResult:
    """What ``initialise`` did; ``admin_token`` is set only on the first start."""

    ca: CertificateAuthority
    admin_token: str | None


def initialise(data_dir: DataDir, now_ms: int, store_url: str | None = None) -> InitResult:
    """Create the CA, store, admin token and audit key if missing; idempotent afterwards.

    ``store_url`` (``serve --store``) binds the directory to that store on the first start
    and must name the same store on later starts.

    The directory is made (or made again) private first: see ``restrict``.
    """
    data_dir.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    restrict(data_dir.root)
    if store_url is not None:
        data_dir.bind_store(store_url)
    if data_dir.is_initialised():
        data_dir.ensure_audit_key()  # data directories from before audit checkpoints
        return InitResult(data_dir.load_ca(), None)
    ca = CertificateAuthority.create()
    token = new_api_token()
    store = data_dir.connect_store()
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


def restrict(root: Path) -> list[Path]:
    """Take group and other permissions off ``root``, the entries directly in it and
    those of its subdirectories; return what changed (logged). Deeper entries are
    behind a 0700 directory. Entries of other owners are left alone (ConfigError
    for ``root`` itself: the collector must own its data directory)."""
    changed: list[Path] = []
    entries = [root, *_children(root)]
    for sub in [e for e in entries[1:] if e.is_dir() and not e.is_symlink()]:
        entries.extend(_children(sub))
    for path in entries:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode) or not info.st_mode & PRIVATE:
            continue
        if info.st_uid != os.geteuid():
            if path == root:
                raise ConfigError(
                    f"{root} belongs to uid {info.st_uid} and is open to others; "
                    "run the collector as its owner or chown it to the collector's user"
                )
            continue
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~PRIVATE)
        changed.append(path)
    if changed:
        log.warning(
            "took group/other permissions off %d entries of %s (now owner only): %s",
            len(changed),
            root,
            ", ".join(str(p.relative_to(root)) if p != root else "." for p in changed[:8]),
        )
    return changed


def _children(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:
        return []


def write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600."""
    write_atomic(path, data, 0o600)
