"""The vendor's release tools and the host's approval command, as a user runs them."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path

from agent.playbook.approvals import ApprovalBook
from playbooks.shipped import catalogue_dir
from playbooks.signing import verify_catalogue
from tests.support import run

CLIENT = "collector.client.cli"


def test_keygen_sign_and_lint_need_no_collector(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    made = run(CLIENT, "playbooks", "keygen", "--out", str(keys), env={"PATH": "/usr/bin:/bin"})
    assert made.returncode == 0, made.stderr
    assert oct((keys / "vendor.key").stat().st_mode & 0o777) == "0o600"
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    for source in catalogue_dir().glob("*.yaml"):
        shutil.copyfile(source, catalogue / source.name)
    assert run(CLIENT, "playbooks", "lint", str(catalogue)).returncode == 0
    signed = run(CLIENT, "playbooks", "sign", "--key", str(keys / "vendor.key"), str(catalogue))
    assert signed.returncode == 0, signed.stderr
    verified = verify_catalogue(
        catalogue, [(keys / "vendor.pub").read_bytes()], now=dt.datetime.now(dt.UTC)
    )
    assert len(verified.playbooks) >= 10
    again = run(
        CLIENT,
        "playbooks",
        "sign",
        "--key",
        str(keys / "vendor.key"),
        "--catalogue-version",
        "1",
        str(catalogue),
    )
    assert again.returncode == 1, "a catalogue version is never reused or lowered"


def test_lint_reports_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad-one.yaml"
    bad.write_text(
        "name: bad-one\nversion: 1.0.0\ndescription: x\nmode: read-only\nsteps:\n"
        "  - name: s\n    exec:\n      argv: [sh, -c, 'rm -rf /']\n"
    )
    result = run(CLIENT, "playbooks", "lint", str(bad))
    assert result.returncode == 1
    assert f"{bad}:8" in result.stdout


def test_agent_approve_records_an_approval_for_that_run_only(tmp_path: Path) -> None:
    result = run("agent.cli", "approve", "--state-dir", str(tmp_path), "run-abc123", "--for", "10m")
    assert result.returncode == 0, result.stderr
    book = ApprovalBook(tmp_path / "approvals")
    now = time.time()
    assert book.is_approved("run-abc123", now)
    assert not book.is_approved("run-other", now)
    assert not book.is_approved("run-abc123", now + 601)
    record = json.loads((tmp_path / "approvals" / "run-abc123").read_text())
    assert record["by"].startswith("os-user:")
    bad = run("agent.cli", "approve", "--state-dir", str(tmp_path), "../../etc/passwd")
    assert bad.returncode == 1
