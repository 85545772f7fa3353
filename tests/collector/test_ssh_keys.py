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


def test_a_disabled_or_removed_users_key_has_no_owner(tmp_path: Path) -> None:
    """The gateway asks ``owner``: a disabled user cannot log in by SSH either."""
    import asyncio

    from collector import admin
    from collector.auth import Principal
    from collector.sessions.keys import SshKeys
    from collector.store import SQLiteStore
    from collector.store.writer import StoreThread

    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed (Debian package openssh-client)")
    line = keygen(tmp_path / "id_ed25519", "erin@laptop").with_suffix(".pub").read_text()
    db = StoreThread(SQLiteStore(tmp_path / "a.db"))
    admin.add_user(db.store, "erin", "engineer", None, "test", 1_000)
    keys = SshKeys(db, lambda: 2_000)

    async def scenario() -> list[str | None]:
        key = await keys.add(Principal("erin", "engineer"), line)
        owners = [await keys.owner(key.fingerprint)]
        admin.disable_user(db.store, "erin", "test", 3_000)
        owners.append(await keys.owner(key.fingerprint))
        admin.enable_user(db.store, "erin", "test", 4_000)
        owners.append(await keys.owner(key.fingerprint))
        admin.remove_user(db.store, "erin", "test", 5_000)
        owners.append(await keys.owner(key.fingerprint))
        return owners

    try:
        assert asyncio.run(scenario()) == ["erin", None, "erin", None]
    finally:
        db.close()


def test_a_user_holds_at_most_the_limit_of_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that ListSshKeys stays far below the client's message limit."""
    import asyncio

    from collector import admin, limits
    from collector.auth import Principal
    from collector.sessions.keys import SshKeys
    from collector.store import SQLiteStore
    from collector.store.writer import StoreThread

    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed (Debian package openssh-client)")
    monkeypatch.setattr(limits, "SSH_KEYS_PER_USER", 2)
    lines = [keygen(tmp_path / f"id_{i}", "erin").with_suffix(".pub").read_text() for i in range(3)]
    db = StoreThread(SQLiteStore(tmp_path / "a.db"))
    admin.add_user(db.store, "erin", "engineer", None, "test", 1_000)
    keys = SshKeys(db, lambda: 2_000)
    erin = Principal("erin", "engineer")

    async def scenario() -> None:
        for line in lines[:2]:
            await keys.add(erin, line)
        with pytest.raises(InvalidRequest, match="the limit; remove one first"):
            await keys.add(erin, lines[2])

    try:
        asyncio.run(scenario())
    finally:
        db.close()
