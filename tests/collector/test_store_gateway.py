"""The Store contract for the gateway's records: SSH keys and session recordings."""

from __future__ import annotations

import pytest

from collector.errors import Conflict, NotFound
from collector.store import Store
from collector.store.base import RecordingRecord, SshKeyRecord
from tests.collector.test_store_sessions import T0, create


def key(fingerprint: str = "SHA256:abc", user: str = "erin") -> SshKeyRecord:
    return SshKeyRecord(fingerprint, user, "ssh-ed25519", "AAAAC3Nz", "erin@laptop", T0)


def test_ssh_keys_belong_to_one_user(store: Store) -> None:
    assert store.add_ssh_key(key()) == key()
    store.add_ssh_key(key("SHA256:def", "bob"))
    assert store.ssh_key("SHA256:abc") == key()
    assert store.ssh_key("SHA256:nope") is None
    with pytest.raises(Conflict, match="already registered"):
        store.add_ssh_key(key(user="mallory"))  # someone else's key cannot be claimed
    assert [k.user for k in store.list_ssh_keys()] == ["bob", "erin"]
    assert store.list_ssh_keys("erin") == [key()]


def test_remove_ssh_key_only_your_own(store: Store) -> None:
    store.add_ssh_key(key())
    with pytest.raises(NotFound):
        store.remove_ssh_key("SHA256:abc", "bob")
    assert store.ssh_key("SHA256:abc") is not None
    assert store.remove_ssh_key("SHA256:abc", "erin") == key()
    with pytest.raises(NotFound):
        store.remove_ssh_key("SHA256:abc")


def recording(session_id: str, kind: str = "shell") -> RecordingRecord:
    return RecordingRecord(session_id, 0, kind, "", f"recordings/{session_id}/x.cast", T0)


def test_recordings_are_numbered_per_session_and_finished(store: Store) -> None:
    a = create(store, 1).session_id
    b = create(store, 2).session_id
    first = store.add_recording(recording(a))
    second = store.add_recording(recording(a, "exec"))
    other = store.add_recording(recording(b))
    assert (first.part, second.part, other.part) == (1, 2, 1)
    assert first.ended_ms is None and first.sha256 == ""
    done = store.finish_recording(a, 1, T0 + 5, 1234, "ab" * 32)
    assert (done.ended_ms, done.size_bytes, done.sha256) == (T0 + 5, 1234, "ab" * 32)
    assert store.list_recordings(a) == [done, second]
    with pytest.raises(NotFound):
        store.finish_recording(a, 9, T0, 0, "")
    with pytest.raises(NotFound):
        store.add_recording(recording("ses-00000000dead"))
