"""The shipped catalogue: exactly the promised playbooks, all read-only, lint-clean,
documented, referenced correctly by the default alert rules, and signed — the shipped
MANIFEST verifies against the shipped files with the shipped development key."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.rules.loader import default_rules_path, load_rules
from playbooks import loader
from playbooks.builtins import BUILTINS
from playbooks.errors import CatalogueError, InvalidParameter
from playbooks.loader import lint, load_playbook
from playbooks.manifest import MANIFEST_FILE
from playbooks.model import Playbook
from playbooks.params import validate_params
from playbooks.shipped import catalogue_dir, dev_public_key_path
from playbooks.sign import next_catalogue_version
from playbooks.sign_dev import DEV_PRIVATE_KEY
from playbooks.sign_dev import main as sign_dev
from playbooks.signing_keys import public_key_from_private, read_private_key
from playbooks.verify import verify_catalogue

NAMES = {
    "disk-usage",
    "memory-pressure",
    "cpu-load",
    "network",
    "service-status",
    "recent-errors",
    "time-sync",
    "hardware-health",
    "package-inventory",
    "quarterly-inspection",
}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "playbooks.md"


def shipped() -> list[Playbook]:
    return [load_playbook(path) for path in sorted(catalogue_dir().glob("*.yaml"))]


def test_the_catalogue_holds_the_promised_playbooks() -> None:
    assert {p.name for p in shipped()} == NAMES


def test_every_shipped_playbook_lints_clean() -> None:
    assert lint(catalogue_dir()) == []


def test_the_shipped_manifest_verifies() -> None:
    try:
        verified = verify_catalogue(
            catalogue_dir(), [dev_public_key_path().read_bytes()], now=datetime.now(UTC)
        )
    except CatalogueError as exc:
        pytest.fail(
            f"the shipped catalogue does not verify ({exc}): run python -m playbooks.sign_dev"
        )
    assert set(verified.playbooks) == NAMES


def test_the_dev_private_key_belongs_to_the_shipped_public_key() -> None:
    key = read_private_key(DEV_PRIVATE_KEY, check_permissions=False)
    assert public_key_from_private(key) == dev_public_key_path().read_bytes()
    assert DEV_PRIVATE_KEY.parent == Path(__file__).parent  # never inside the package


def test_the_private_key_is_not_package_data() -> None:
    package = catalogue_dir().parent
    assert not [p for p in package.rglob("*") if p.suffix == ".key" or b"PRIVATE KEY" in _head(p)]


def _head(path: Path) -> bytes:
    return path.read_bytes()[:200] if path.is_file() else b""


def test_every_shipped_playbook_is_read_only_and_documented() -> None:
    for playbook in shipped():
        assert playbook.mode == "read-only", playbook.name
        assert playbook.description and playbook.collects and playbook.needs, playbook.name
        for step in playbook.steps:
            assert getattr(step, "run_as", None) is None, (playbook.name, step.name)


def test_every_shipped_playbook_runs_with_its_defaults() -> None:
    """Alert rules run playbooks without parameters: the defaults must be valid."""
    for playbook in shipped():
        validate_params(playbook, {})


def test_the_default_rules_name_only_shipped_playbooks() -> None:
    named = {rule.playbook for rule in load_rules(default_rules_path()).rules if rule.playbook}
    assert named <= NAMES
    assert named >= {"disk-usage", "memory-pressure", "cpu-load", "service-status", "time-sync"}


def test_path_parameters_require_a_leading_slash() -> None:
    for playbook in shipped():
        for param in playbook.parameters:
            if "path" not in param.name:
                continue
            for value in ("-rf", "var/log", "../etc", "--files0-from=/etc/shadow"):
                with pytest.raises(InvalidParameter):
                    validate_params(playbook, {param.name: value})


def test_the_docs_cover_every_playbook_builtin_and_field() -> None:
    text = DOCS.read_text()
    for name in NAMES:
        assert re.search(rf"^### `?{re.escape(name)}`?\s*$", text, re.M), name
    for function in BUILTINS:
        assert f"`{function}`" in text, function
    fields = {
        *loader._TOP_KEYS,
        *loader._PARAM_KEYS,
        *loader._STEP_KEYS,
        *loader._EXEC_KEYS,
        *loader._BUILTIN_KEYS,
    }
    for field in fields:
        assert f"`{field}`" in text, field
    assert "python -m playbooks.sign_dev" in text and "aftercare playbooks keygen" in text


def test_sign_dev_re_signs_a_catalogue(tmp_path: Path) -> None:
    directory = tmp_path / "catalogue"
    shutil.copytree(catalogue_dir(), directory)
    current = next_catalogue_version(catalogue_dir()) - 1
    assert sign_dev(["--dir", str(directory)]) == 0
    verified = verify_catalogue(
        directory, [dev_public_key_path().read_bytes()], now=datetime.now(UTC)
    )
    assert verified.manifest.catalogue_version == current + 1
    assert (verified.manifest.expires_at - verified.manifest.issued_at).days == 365
    assert (directory / MANIFEST_FILE).read_bytes() != (
        catalogue_dir() / MANIFEST_FILE
    ).read_bytes()


def test_sign_dev_reports_an_invalid_playbook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "catalogue"
    shutil.copytree(catalogue_dir(), directory)
    (directory / "cpu-load.yaml").write_text("name: cpu-load\n")
    assert sign_dev(["--dir", str(directory)]) == 1
    assert "cpu-load.yaml:1: a playbook needs the key 'version'" in capsys.readouterr().err
