"""Parsing and fingerprinting users' SSH public keys (checked against ssh-keygen)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from collector.errors import InvalidRequest
from collector.sessions.keys import fingerprint, parse_public_key


@pytest.fixture
def keypair(tmp_path: Path) -> Path:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed (Debian package openssh-client)")
    path = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "erin@laptop", "-f", str(path)],
        check=True,
    )
    return path


def test_fingerprint_matches_ssh_keygen(keypair: Path) -> None:
    line = keypair.with_suffix(".pub").read_text()
    key_type, blob, comment = parse_public_key(line)
    assert (key_type, comment) == ("ssh-ed25519", "erin@laptop")
    shown = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(keypair.with_suffix(".pub"))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[1]
    assert fingerprint(blob) == shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "exactly one public key line"),
        ("hello world", "not an OpenSSH public key line"),
        ("ssh-ed25519 !!!notbase64", "base64 part is damaged"),
        (
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIJ6cw5WmMZC5tt0UAo9C0Kp2ip8uzkp1d8m2dZ0j7Ytq x",
            "not a ssh-rsa key",
        ),
    ],
)
def test_bad_key_lines_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_public_key(text)


def test_a_private_key_is_refused_with_advice(keypair: Path) -> None:
    with pytest.raises(InvalidRequest, match="PRIVATE key: never share it"):
        parse_public_key(keypair.read_text())
