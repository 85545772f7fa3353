"""The CLIs against a real collector, as an attacker and an unlucky user would use them.

- A hostile agent's hello (hostname, version with terminal escapes) and an
  unauthenticated enrolment with such a hostname reach `aftercare agents`, `aftercare
  host` and `aftercare-collector audit list` escaped, never raw; `--json` keeps them.
- `aftercare host H | head`: the reader going away ends the command quietly (141).
- A malformed token says so, and where it came from.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from collector.datadir import DataDir
from tests.support import PYTHON, REPO, Agent, Collector, run

HOSTILE_HOST = "web-\x1b]0;pwned\x07\x1b[2J\u202egnp.exe\nFORGED"
HOSTILE_VERSION = "1.0\x1b[31m\x9b2J"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def _raw_controls(text: str) -> list[str]:
    return [char for char in RAW if char in text]


def _hostile_agent(collector: Collector, make_agent: Callable[..., Agent]) -> str:
    """An enrolled agent whose hello carried escapes (written as the collector would
    store that hello), and an unauthenticated enrolment with an escape-laden hostname."""
    agent = make_agent("web-1")
    assert agent.enroll(collector.join_command("acme")).returncode == 0
    store = DataDir(collector.data_dir).open_store()
    try:
        store.record_hello(agent.agent_id, HOSTILE_HOST, HOSTILE_VERSION, int(time.time() * 1000))
        store.append_audit(
            f"peer:{HOSTILE_HOST}", "agent.enroll_refused", HOSTILE_HOST, {"why": HOSTILE_HOST}, 1
        )
    finally:
        store.close()
    ca_hash = collector.join_command("acme")[-1]
    refused = run(
        "agent.cli", "enroll", "--collector", collector.api, "--token", "ajt_bogus",
        "--ca-hash", ca_hash, "--hostname", HOSTILE_HOST,
        "--state-dir", str(collector.data_dir.parent / "intruder"),
    )  # fmt: skip
    assert refused.returncode != 0
    return agent.agent_id


def test_agent_and_audit_text_reach_the_terminal_escaped(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    agent_id = _hostile_agent(collector, make_agent)
    token = collector.admin_token

    for words in (["agents"], ["host", agent_id]):
        shown = collector.client(token, *words)
        assert shown.returncode == 0, shown.stderr
        assert _raw_controls(shown.stdout + shown.stderr) == [], (words, shown.stdout)
        assert "\\x1b]0;pwned\\x07\\x1b[2J\\u202egnp.exe\\nFORGED" in shown.stdout
        assert not any(line.startswith("FORGED") for line in shown.stdout.splitlines())

    hosts = collector.client_json(token, "agents")
    assert [h["hostname"] for h in hosts] == [HOSTILE_HOST]
    assert hosts[0]["agent_version"] == HOSTILE_VERSION
    assert collector.client_json(token, "host", agent_id)["agent"]["hostname"] == HOSTILE_HOST

    audit = collector.admin("audit", "list")
    assert audit.returncode == 0, audit.stderr
    assert _raw_controls(audit.stdout + audit.stderr) == [], audit.stdout
    assert "enroll_refused" in audit.stdout
    assert "\\x1b]0;pwned" in audit.stdout
    rows = json.loads(collector.admin("audit", "list", "--json").stdout)
    assert any(row["target"] == HOSTILE_HOST for row in rows)

    revoked = collector.admin("agent", "revoke", agent_id)
    assert revoked.returncode == 0, revoked.stderr
    assert _raw_controls(revoked.stdout) == [] and "\\x1b" in revoked.stdout


def test_reader_going_away_ends_quietly(collector: Collector) -> None:
    """`aftercare host H | head`: the pipe is closed before anything is written."""
    process = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "collector.client.cli",
            *collector.client_options(collector.admin_token),
            "agents",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the client prints a line
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert stderr == ""


def test_malformed_token_says_where_it_came_from(collector: Collector, tmp_path: Path) -> None:
    options = collector.client_options("act_abc\x1b[2J")
    result = run("collector.client.cli", *options, "agents")
    assert result.returncode == 2
    assert result.stderr.startswith("error: the API token from --token is malformed")
    assert "a control character (\\x1b) at position 8" in result.stderr
    assert "Illegal header" not in result.stderr and "\x1b" not in result.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERCARE_")}
    no_token = [w for w in options if w not in ("--token", "act_abc\x1b[2J")]
    # A trailing newline, as `echo` leaves it, is dropped from the environment and files.
    env_ok = run(
        "collector.client.cli", *no_token, "whoami",
        env={**env, "AFTERCARE_TOKEN": collector.admin_token + "\n"},
    )  # fmt: skip
    assert env_ok.returncode == 0, env_ok.stderr
    token_file = tmp_path / "token"
    token_file.write_text(collector.admin_token + "\n")
    file_ok = run("collector.client.cli", *no_token, "--token-file", str(token_file), "whoami")
    assert file_ok.returncode == 0, file_ok.stderr
    token_file.write_text(collector.admin_token + "\n\n")
    file_bad = run(
        "collector.client.cli",
        *no_token,
        "whoami",
        env={**env, "AFTERCARE_TOKEN_FILE": str(token_file)},
    )
    assert file_bad.returncode == 2
    assert f"the API token from AFTERCARE_TOKEN_FILE {token_file} is malformed (a newline" in (
        file_bad.stderr
    )
