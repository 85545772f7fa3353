"""write_atomic: the new bytes or the old, the mode before the file is visible, no leftovers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.atomic import write_atomic


def test_writes_a_new_file_with_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, b"{}", 0o640)
    assert target.read_bytes() == b"{}"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_replaces_an_existing_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    for i in range(5):
        write_atomic(target, f"version {i}".encode())
    assert target.read_bytes() == b"version 4"
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_a_failed_write_keeps_the_old_bytes_and_removes_its_temporary_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, b"old")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_a_planted_symlink_at_a_temporary_name_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary file is created exclusively (O_EXCL, O_NOFOLLOW): a link planted at
    its name is never written through; the next random name is used instead."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    taken, free = bytes(6), bytes([1] * 6)
    (tmp_path / f".state.json.{taken.hex()}").symlink_to(victim)
    names = iter([taken, free])
    monkeypatch.setattr(os, "urandom", lambda n: next(names))
    write_atomic(tmp_path / "state.json", b"new")
    assert victim.read_bytes() == b"untouched"
    assert (tmp_path / "state.json").read_bytes() == b"new"
