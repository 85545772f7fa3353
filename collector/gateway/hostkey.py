"""The gateway's host key: an Ed25519 key made at first start, kept in the data directory."""

from __future__ import annotations

from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.datadir import write_secret
from collector.errors import ConfigError

HOST_KEY_FILE = "ssh_host_ed25519_key"


def load_or_create_host_key(data_dir: Path) -> paramiko.PKey:
    """The host key in ``data_dir`` (created 0600 on first use). Raises ConfigError."""
    path = data_dir / HOST_KEY_FILE
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        write_secret(path, pem)
    try:
        return paramiko.Ed25519Key.from_private_key_file(str(path))
    except (OSError, paramiko.SSHException) as exc:
        raise ConfigError(f"cannot read the gateway host key {path}: {exc}") from exc


def host_key_line(key: paramiko.PKey) -> str:
    """The key as a known_hosts / authorized_keys style line (type and base64)."""
    return f"{key.get_name()} {key.get_base64()}"
