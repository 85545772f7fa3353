"""Verification in a child process: the playbook survives the JSON trip; a broken child refuses."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from agent.playbook.verify_child import (
    Verified,
    playbook_from_json,
    playbook_to_json,
    verify_in_child,
)
from playbooks.errors import PlaybookError
from playbooks.loader import load_playbook_bytes
from playbooks.shipped import catalogue_dir, dev_public_key_path


@pytest.mark.parametrize("path", sorted(catalogue_dir().glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_playbook_survives_the_json_trip(path: Path) -> None:
    playbook = load_playbook_bytes(path.read_bytes(), path.name)
    assert playbook_from_json(json.loads(json.dumps(playbook_to_json(playbook)))) == playbook


def _verify(name: str = "time-sync", playbook_yaml: bytes | None = None) -> Verified:
    catalogue = catalogue_dir()
    return asyncio.run(
        verify_in_child(
            manifest=(catalogue / "MANIFEST.json").read_bytes(),
            signature=(catalogue / "MANIFEST.sig").read_bytes(),
            name=name,
            playbook_yaml=playbook_yaml or (catalogue / f"{name}.yaml").read_bytes(),
            params={},
            trusted_keys=[dev_public_key_path().read_bytes()],
            seen={},
        )
    )


def test_a_signed_playbook_verifies_in_the_child() -> None:
    verified = _verify()
    assert verified.playbook.name == "time-sync"
    assert verified.catalogue_version > 0


def test_a_changed_byte_is_refused_with_the_childs_reason() -> None:
    tampered = (catalogue_dir() / "time-sync.yaml").read_bytes() + b"\n# extra\n"
    with pytest.raises(PlaybookError, match=r"sha256|digest|SHA-256"):
        _verify(playbook_yaml=tampered)


def test_a_child_that_cannot_answer_means_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(PlaybookError, match=r"child process.*nothing ran"):
        _verify()
