"""Where the shipped catalogue and the development vendor public key live (package data).

``catalogue_dir()`` is the signed catalogue that ships with aftercare (playbook YAML
files, MANIFEST.json, MANIFEST.sig). ``dev_public_key_path()`` is the public half of
the *development* vendor key that signs it in this repository: production vendors
generate their own key (``aftercare-vendor keygen``), sign with it, and pin its
public key in agent configuration instead. See docs/playbooks.md, "Signing".
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["catalogue_dir", "dev_public_key_path"]

_HERE = Path(__file__).resolve().parent


def catalogue_dir() -> Path:
    """The directory of the shipped, signed catalogue."""
    return _HERE / "catalogue"


def dev_public_key_path() -> Path:
    """The development vendor public key (PEM) the shipped catalogue is signed with."""
    return _HERE / "keys" / "dev-vendor.pub"
