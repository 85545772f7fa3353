"""The vendor's release tools and the host's approval command, as a user runs them."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path

from agent.playbook.approvals import ApprovalBook
from agent.playbook.waiting import WaitingRun, WaitingRuns
from playbooks.shipped import catalogue_dir
from playbooks.verify import verify_catalogue
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


VENDOR = "playbooks.vendor_cli"


def test_aftercare_vendor_keygen_sign_and_lint_with_json(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    made = run(VENDOR, "keygen", "--out", str(keys), "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout) == {
        "private_key": str(keys / "vendor.key"),
        "public_key": str(keys / "vendor.pub"),
    }
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    for source in catalogue_dir().glob("*.yaml"):
        shutil.copyfile(source, catalogue / source.name)
    linted = run(VENDOR, "lint", str(catalogue), "--json")
    assert linted.returncode == 0 and json.loads(linted.stdout)["problems"] == []
    signed = run(VENDOR, "sign", "--key", str(keys / "vendor.key"), "--valid-for", "30d", "--json")
    assert signed.returncode == 2, "the directory is required"
    args = ("sign", "--key", str(keys / "vendor.key"), "--valid-for", "30d", str(catalogue))
    signed = run(VENDOR, *args, "--json")
    assert signed.returncode == 0, signed.stderr
    summary = json.loads(signed.stdout)
    assert summary["playbooks"] >= 10 and summary["catalogue_version"] >= 1
    verified = verify_catalogue(
        catalogue, [(keys / "vendor.pub").read_bytes()], now=dt.datetime.now(dt.UTC)
    )
    assert verified.manifest.expires_at < dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    assert "deprecated" not in signed.stderr


def test_aftercare_vendor_refuses_bad_input_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad-one.yaml"
    bad.write_text("name: bad-one\nversion: 1.0.0\n")
    linted = run(VENDOR, "lint", str(bad), "--json")
    assert linted.returncode == 1 and json.loads(linted.stdout)["problems"]
    wrong = run(VENDOR, "sign", "--key", str(tmp_path / "none.key"), str(tmp_path))
    assert wrong.returncode == 1 and wrong.stderr.startswith("error: "), wrong.stderr
    assert "Traceback" not in wrong.stderr
    late = run(VENDOR, "sign", "--key", "k", "--valid-for", "soon", str(tmp_path))
    assert late.returncode == 2 and "--valid-for" in late.stderr


def test_the_old_customer_cli_commands_still_work_and_say_where_they_moved(
    tmp_path: Path,
) -> None:
    made = run(CLIENT, "playbooks", "keygen", "--out", str(tmp_path))
    assert made.returncode == 0, made.stderr
    assert "deprecated" in made.stderr and "aftercare-vendor keygen" in made.stderr
    assert (tmp_path / "vendor.pub").is_file()


def test_agent_approve_shows_the_run_and_binds_the_approval_to_it(tmp_path: Path) -> None:
    waiting = WaitingRun(
        run_id="run-abc123",
        playbook="restart-service",
        version="1.2.0",
        mode="mutating",
        description="Restart one systemd unit.",
        digest="sha256:" + "ab" * 32,
        params={"unit": "nginx.service", "token": "***"},
        requested_by="user:erin",
        binding="cd" * 32,
    )
    WaitingRuns(tmp_path).add(waiting)
    asked = run("agent.cli", "approve", "--state-dir", str(tmp_path), "run-abc123")
    assert asked.returncode == 1 and "pass --yes" in asked.stderr  # no terminal to ask on
    assert "restart-service 1.2.0  [mutating]" in asked.stdout
    assert "unit = nginx.service" in asked.stdout and "sha256:abab" in asked.stdout
    assert not (tmp_path / "approvals" / "run-abc123").exists()

    args = ("approve", "--state-dir", str(tmp_path), "run-abc123", "--for", "10m", "--yes")
    result = run("agent.cli", *args)
    assert result.returncode == 0, result.stderr
    book = ApprovalBook(tmp_path / "approvals")
    now = time.time()
    assert book.is_approved("run-abc123", now, "cd" * 32)
    assert not book.is_approved("run-abc123", now, "ef" * 32)  # the same id, another run
    assert not book.is_approved("run-other", now)
    assert not book.is_approved("run-abc123", now + 601)
    record = json.loads((tmp_path / "approvals" / "run-abc123").read_text())
    assert record["by"].startswith("os-user:") and record["binding"] == "cd" * 32

    unknown = run("agent.cli", "approve", "--state-dir", str(tmp_path), "run-nope", "--yes")
    assert unknown.returncode == 1 and "no run run-nope waits for approval" in unknown.stderr
    bad = run("agent.cli", "approve", "--state-dir", str(tmp_path), "../../etc/passwd", "--yes")
    assert bad.returncode == 1
