"""Fixtures for the playbooks tests: the development vendor key, a stranger's key, and
a signed copy of the shipped catalogue in a temporary directory (signed at NOW)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from playbooks.shipped import catalogue_dir, dev_public_key_path
from playbooks.sign import write_signed_catalogue
from playbooks.signing_keys import generate_keypair, read_private_key

DEV_KEY_PATH = Path(__file__).with_name("dev-vendor.key")
NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
VALIDITY = timedelta(days=30)


@pytest.fixture(scope="session")
def dev_key() -> bytes:
    """The development vendor private key (PEM); git does not keep its 0600 mode."""
    return read_private_key(DEV_KEY_PATH, check_permissions=False)


@pytest.fixture(scope="session")
def dev_pub() -> bytes:
    return dev_public_key_path().read_bytes()


@pytest.fixture(scope="session")
def stranger() -> tuple[bytes, bytes]:
    """Another Ed25519 key pair: (private PEM, public PEM)."""
    return generate_keypair()


@pytest.fixture
def catalogue(tmp_path: Path, dev_key: bytes) -> Path:
    """A copy of the shipped playbooks, signed with the dev key at NOW (version 7)."""
    directory = tmp_path / "catalogue"
    directory.mkdir()
    for source in sorted(catalogue_dir().glob("*.yaml")):
        shutil.copyfile(source, directory / source.name)
    write_signed_catalogue(directory, dev_key, catalogue_version=7, valid_for=VALIDITY, now=NOW)
    return directory
