"""The signed playbook catalogue the collector serves: read from a directory, never
verified here (the collector holds no signing key; agents verify)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from collector.errors import InvalidRequest
from playbooks.loader import load_playbook_bytes
from playbooks.model import Playbook

__all__ = ["Catalogue", "load_catalogue"]


@dataclass(frozen=True)
class Catalogue:
    """The signed catalogue the collector serves (it holds no signing key)."""

    manifest: bytes
    signature: bytes
    files: Mapping[str, bytes]  # playbook name -> exact file bytes
    playbooks: Mapping[str, Playbook]  # parsed for listing and early parameter checks
    catalogue_version: int
    expires_ms: int


def load_catalogue(directory: Path) -> Catalogue:
    """Read MANIFEST.json, MANIFEST.sig and the playbook files it names from ``directory``.

    The signature is not checked here (agents check it); a missing manifest or file
    raises InvalidRequest naming it.
    """
    manifest_path, signature_path = directory / "MANIFEST.json", directory / "MANIFEST.sig"
    for path in (manifest_path, signature_path):
        if not path.exists():
            raise InvalidRequest(
                f"playbook catalogue {directory}: {path.name} missing; sign it with "
                "`aftercare-vendor sign --key KEY DIR`"
            )
    manifest = manifest_path.read_bytes()
    document = json.loads(manifest)
    files: dict[str, bytes] = {}
    parsed: dict[str, Playbook] = {}
    for entry in document["playbooks"]:
        data = (directory / entry["file"]).read_bytes()
        files[entry["name"]] = data
        parsed[entry["name"]] = load_playbook_bytes(data, str(directory / entry["file"]))
    return Catalogue(
        manifest=manifest,
        signature=signature_path.read_bytes(),
        files=files,
        playbooks=parsed,
        catalogue_version=int(document["catalogue_version"]),
        expires_ms=_iso_ms(document["expires_at"]),
    )


def _iso_ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
