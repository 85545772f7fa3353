"""``aftercare-agent run`` command lines are read as argparse reads them, without argparse.

``agent.cli.parse_args`` reads a plain ``run`` itself (argparse and the parser for every
command would stay in the running agent's memory, issue 17) and hands anything else to
argparse; both paths must agree exactly.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent import cli

PLAIN_RUN = [
    ["run"],
    ["run", "--state-dir", "/srv/agent"],
    ["run", "--config", "agent.toml", "--state-dir", "/srv/agent"],
    ["run", "--state-dir=/srv/agent", "--config=/etc/aftercare/agent.toml"],
    ["--log-level", "debug", "run", "--config", "a.toml"],
    ["--log-level=warning", "run"],
    ["run", "--config", "first.toml", "--config", "second.toml"],  # the last one counts
    ["--log-level", "run", "run"],  # "run" as the level's value, then the command
    ["run", "--state-dir", ""],
    ["run", "--config=-odd-name.toml"],
]

FOR_ARGPARSE = [
    ["run", "--help"],
    ["run", "--state", "/srv/agent"],  # an abbreviation: argparse expands it
    ["run", "--config"],  # missing value
    ["run", "--config", "-x"],  # looks like an option
    ["run", "extra"],
    ["run", "--json"],
    ["status"],
    ["--version"],
    [],
]


@pytest.mark.parametrize("argv", PLAIN_RUN, ids=" ".join)
def test_a_plain_run_command_line_reads_as_argparse_reads_it(argv: list[str]) -> None:
    mine = cli._plain_run_args(argv)
    assert mine is not None
    assert vars(mine) == vars(cli.build_parser().parse_args(argv))
    assert vars(cli.parse_args(argv)) == vars(mine)


@pytest.mark.parametrize("argv", FOR_ARGPARSE, ids=lambda argv: " ".join(argv) or "empty")
def test_anything_else_goes_to_argparse(argv: list[str]) -> None:
    assert cli._plain_run_args(argv) is None


def test_argparse_still_explains_a_mistake_in_a_run_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["run", "--config"])
    assert exit_info.value.code == 2
    assert "--config: expected one argument" in capsys.readouterr().err


def test_reading_a_run_command_line_does_not_import_argparse() -> None:
    code = (
        "import sys, agent.cli; agent.cli.parse_args(['run', '--state-dir', '/tmp/x']);"
        "print('argparse' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "False"
