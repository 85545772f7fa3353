"""Portal passwords and their store rows: hashes, lockout counting, sessions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyotp
import pytest

from collector.datadir import DataDir, initialise
from collector.errors import InvalidRequest, UnknownUser
from collector.portal import totp
from collector.portal.passwords import hash_password, set_password, verify_password
from collector.store import Store
from collector.store.portal_base import WebSession


def test_a_hash_verifies_only_its_password() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$") and "correct" not in stored
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert not verify_password("correct horse battery", None)
    assert not verify_password("x", "md5$whatever")
    assert hash_password("same password") != hash_password("same password")  # salted


def test_set_password_checks_length_and_user_and_audits(store: Store) -> None:
    store.add_user("carol", "customer", "acme", "h1", 1000)
    with pytest.raises(InvalidRequest, match="at least 10"):
        set_password(store, "carol", "short", "os-user:root", 2000)
    with pytest.raises(UnknownUser):
        set_password(store, "nobody", "long enough password", "os-user:root", 2000)
    set_password(store, "carol", "long enough password", "os-user:root", 2000)
    credential = store.portal_credential("carol")
    assert credential is not None
    assert verify_password("long enough password", credential.password_hash)
    entry = store.audit_entries()[-1]
    assert (entry.action, entry.target, entry.actor) == (
        "user.password_set",
        "carol",
        "os-user:root",
    )
    assert "long enough" not in str(entry.details)


def test_failures_lock_and_a_new_password_unlocks_and_ends_sessions(store: Store) -> None:
    store.add_user("carol", "customer", "acme", "h1", 1000)
    store.set_portal_password("carol", hash_password("first password"), 1000)
    for _ in range(4):
        assert store.record_login_failure("carol", 2000, 5, 60_000).locked_until_ms is None
    locked = store.record_login_failure("carol", 2000, 5, 60_000)
    assert locked.locked_until_ms == 62_000 and locked.failed_logins == 0
    store.create_web_session(WebSession("tok", "carol", "csrf", 2000, 90_000))
    assert store.web_session("tok", 3000) is not None
    assert store.web_session("tok", 90_000) is None  # expired
    store.set_portal_password("carol", hash_password("second password"), 5000)
    unlocked = store.portal_credential("carol")
    assert unlocked is not None and unlocked.locked_until_ms is None
    assert store.web_session("tok", 3000) is None  # signed out everywhere


def test_removing_the_user_removes_its_portal_rows(store: Store) -> None:
    store.add_user("carol", "customer", "acme", "h1", 1000)
    store.set_portal_password("carol", hash_password("first password"), 1000)
    store.create_web_session(WebSession("tok", "carol", "csrf", 2000, 90_000))
    store.remove_user("carol")
    assert store.portal_credential("carol") is None
    assert store.web_session("tok", 3000) is None


def test_language_setting_is_checked(store: Store) -> None:
    store.add_user("carol", "customer", "acme", "h1", 1000)
    store.set_portal_password("carol", hash_password("first password"), 1000)
    store.set_portal_language("carol", "en")
    credential = store.portal_credential("carol")
    assert credential is not None and credential.language == "en"
    with pytest.raises(InvalidRequest):
        store.set_portal_language("carol", "fr")


def test_prune_deletes_only_expired_sessions(store: Store) -> None:
    store.add_user("carol", "customer", "acme", "h1", 1000)
    store.create_web_session(WebSession("old", "carol", "c", 1000, 2000))
    store.create_web_session(WebSession("new", "carol", "c", 1000, 9000))
    assert store.prune_web_sessions(5000) == 1
    assert store.web_session("new", 5000) is not None


def test_user_passwd_reads_the_password_from_stdin(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    initialise(DataDir(data_dir), 1000)
    store = DataDir(data_dir).open_store()
    store.add_user("carol", "customer", "acme", "h1", 1000)
    store.close()
    command = [sys.executable, "-m", "collector.cli", "user", "passwd", "carol"]
    command += ["--data-dir", str(data_dir), "--json"]
    done = subprocess.run(
        command, input="a long passphrase\n", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"name": "carol", "password_set": True}
    short = subprocess.run(command, input="short\n", capture_output=True, text=True, timeout=60)
    assert short.returncode == 1 and "at least 10" in short.stderr
    totp_command = [sys.executable, "-m", "collector.cli", "user", "totp", "carol"]
    totp_command += ["--data-dir", str(data_dir), "--json"]
    shown = subprocess.run(totp_command, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    secret = json.loads(shown.stdout)["secret"]
    assert json.loads(shown.stdout)["uri"].startswith("otpauth://totp/")
    store = DataDir(data_dir).open_store()
    credential = store.portal_credential("carol")
    actions = [e.action for e in store.audit_entries()]
    store.close()
    assert credential is not None and credential.totp_secret == secret
    assert verify_password("a long passphrase", credential.password_hash)
    assert "user.password_set" in actions and "user.totp_set" in actions


def test_totp_steps_are_used_once_and_need_a_password(store: Store) -> None:
    store.add_user("carol", "customer", "acme", "h1", 1000)
    with pytest.raises(InvalidRequest, match="set one first"):
        store.set_portal_totp("carol", "JBSWY3DPEHPK3PXP")
    store.set_portal_password("carol", hash_password("first password"), 1000)
    store.set_portal_totp("carol", "JBSWY3DPEHPK3PXP")
    assert store.use_totp_step("carol", 100)
    assert not store.use_totp_step("carol", 100)  # replay
    assert not store.use_totp_step("carol", 99)  # older
    assert store.use_totp_step("carol", 101)


def test_totp_codes_match_their_step_and_neighbours() -> None:
    secret = totp.new_secret()
    now_ms = 1_796_000_000_000
    step = now_ms // 30_000
    code = pyotp.TOTP(secret).at(step * 30)
    assert totp.matching_step(secret, code, now_ms) == step
    assert totp.matching_step(secret, code, now_ms + 30_000) == step  # one step late
    assert totp.matching_step(secret, code, now_ms + 90_000) is None
    assert totp.matching_step(secret, "12345", now_ms) is None
    assert totp.matching_step("", code, now_ms) is None
