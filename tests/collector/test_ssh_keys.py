"""Registering users' SSH keys on the collector: the client's checks, as API errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from collector.errors import InvalidRequest
from collector.sessions.keys import parse_public_key
from tests.sshd import keygen


def test_a_good_key_line_is_parsed(tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed (Debian package openssh-client)")
    path = keygen(tmp_path / "id_ed25519", "erin@laptop")
    key = parse_public_key(path.with_suffix(".pub").read_text())
    assert (key.key_type, key.comment) == ("ssh-ed25519", "erin@laptop")
    assert key.fingerprint.startswith("SHA256:")
    with pytest.raises(InvalidRequest, match="private key"):
        parse_public_key(path.read_text())


@pytest.mark.parametrize("text", ["", "hello world", "ssh-ed25519 !!!notbase64"])
def test_bad_key_lines_are_invalid_requests(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_public_key(text)
