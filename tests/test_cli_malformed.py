"""No command prints a Python traceback for any input.

Every sub-command of ``aftercare``, ``aftercare-collector``, ``aftercare-agent`` and
``aftercare-vendor`` is
found by walking the argparse parsers, then run in-process (``main(argv)``) with
malformed values in each of its arguments in turn: empty, words, negative and huge
numbers, terminal escapes, bidi overrides, undecodable bytes (as a shell hands them to
Python), against a collector that does not exist. Each run must end with an exit code
(argparse's 2 counts), never an exception; stdout and stderr must hold no traceback
and no raw ESC. The daemons (``serve``, ``run``) are stopped just before they would
start serving: reaching that point with a value is fine, raising on the way is not.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent import cli as agent_cli
from collector import cli as collector_cli
from collector.client import cli as client_cli
from playbooks import vendor_cli
from tests.support import free_port

GARBAGE = [
    "",
    "banana",
    "-1",
    "9" * 30,
    "1e400",
    "9" * 20 + "w",
    "\x1b]0;pwned\x07\x1b[2J",
    "日本\u202egnp.exe",
    "\udcff\udcfe",  # undecodable bytes in argv, as Python receives them
]
FILLER = "x1"
FILLERS = {"collector": "COLLECTOR", "ca_hash": "sha256:" + "0" * 64}  # well formed


class Started(Exception):
    """A daemon got as far as starting to serve: the input was accepted."""


@dataclass(frozen=True)
class Leaf:
    program: str
    words: tuple[str, ...]
    parser: argparse.ArgumentParser


def _leaves(
    program: str, parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[Leaf]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield Leaf(program, words, parser)
        return
    for name, sub in subs[0].choices.items():
        yield from _leaves(program, sub, (*words, name))


def _valued(parser: argparse.ArgumentParser) -> tuple[list[Any], list[Any], list[Any]]:
    """(positionals, required options, other options) that take a value."""
    positionals, required, optional = [], [], []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        if action.nargs == 0:
            continue
        if not action.option_strings:
            positionals.append(action)
        elif action.required:
            required.append(action)
        else:
            optional.append(action)
    return positionals, required, optional


def _argvs(leaf: Leaf) -> Iterator[list[str]]:
    positionals, required, optional = _valued(leaf.parser)

    def build(value_of: Callable[[Any], str]) -> list[str]:
        argv = list(leaf.words)
        for action in required:
            argv += [action.option_strings[0], value_of(action)]
        if positionals:  # after "--", so "-1" is a value; 3.11 refuses a bare "--"
            argv.append("--")
            argv += [value_of(action) for action in positionals]
        return argv

    for garbage in GARBAGE:
        if positionals or required:  # every required value malformed at once
            yield build(lambda _action, g=garbage: g)  # type: ignore[misc]
        for action in optional:  # one malformed option at a time, the rest well formed
            argv = build(lambda other: FILLERS.get(other.dest, FILLER))
            cut = argv.index("--") if "--" in argv else len(argv)
            yield [*argv[:cut], f"{action.option_strings[0]}={garbage}", *argv[cut:]]


PROGRAMS: dict[str, tuple[Callable[..., int], Callable[[], argparse.ArgumentParser]]] = {
    "aftercare": (client_cli.main, client_cli.build_parser),
    "aftercare-collector": (collector_cli.main, collector_cli.build_parser),
    "aftercare-agent": (agent_cli.main, agent_cli.build_parser),
}
# Options that pick where the program is: the sweep holds them well formed (a dead
# collector, a scratch directory) except in the runs made for them.
GLOBAL_CLIENT = ["--collector", "COLLECTOR", "--token", "act_test", "--ca-file", "CA"]


@dataclass
class Outcome:
    argv: list[str]
    code: int | None
    error: str
    stdout: str
    stderr: str


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A scratch cwd and home, a CA file, a dead collector address; daemons stop
    before serving and nothing can exec ssh or read a terminal."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for name in ("AFTERCARE_COLLECTOR", "AFTERCARE_TOKEN", "AFTERCARE_CA_FILE", "SSH_AUTH_SOCK"):
        monkeypatch.delenv(name, raising=False)
    ca = tmp_path / "ca.pem"
    ca.write_text(_self_signed_pem())

    def no_serving(coroutine: Any) -> None:
        coroutine.close()
        raise Started

    monkeypatch.setattr(collector_cli.asyncio, "run", no_serving)
    monkeypatch.setattr(agent_cli.asyncio, "run", no_serving)
    monkeypatch.setattr("os.execvp", lambda *a: (_ for _ in ()).throw(Started()))
    yield {"COLLECTOR": f"127.0.0.1:{free_port()}", "CA": str(ca)}


def _self_signed_pem() -> str:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nobody")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _run(main: Callable[..., int], argv: list[str]) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO(b"\x1b[2J garbage\n"))
    code: int | None = None
    error = ""
    saved = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr, sys.stdin = out, err, stdin
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            error = f"SystemExit({exc.code!r})"
    except Started:
        code = 0
    except BaseException as exc:  # what the test is looking for
        error = f"{type(exc).__name__}: {exc}"
    finally:
        sys.stdout, sys.stderr, sys.stdin = saved
    return Outcome(argv, code, error, out.getvalue(), err.getvalue())


def _problems(outcome: Outcome) -> list[str]:
    problems = []
    if outcome.error:
        problems.append(f"raised {outcome.error}")
    if "Traceback" in outcome.stderr or "Traceback" in outcome.stdout:
        problems.append(f"traceback: {outcome.stderr[-300:]!r}")
    if "\x1b" in outcome.stderr or "\x1b" in outcome.stdout:
        problems.append("raw ESC in the output")
    if outcome.code is not None and not isinstance(outcome.code, int):
        problems.append(f"exit code {outcome.code!r}")
    return problems


def _cases(program: str) -> list[list[str]]:
    _, build = PROGRAMS[program]
    cases = [argv for leaf in _leaves(program, build()) for argv in _argvs(leaf)]
    return cases


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_no_command_prints_a_traceback(program: str, sandbox: dict[str, str]) -> None:
    main, _ = PROGRAMS[program]
    failures: list[str] = []
    cases = _cases(program)
    for argv in cases:
        if program == "aftercare":
            argv = GLOBAL_CLIENT + argv
        argv = [sandbox.get(word, word) for word in argv]
        outcome = _run(main, argv)
        for problem in _problems(outcome):
            failures.append(f"{program} {argv!r}: {problem}")
    assert len(cases) > 50
    assert not failures, f"{len(failures)} of {len(cases)} runs:\n" + "\n".join(failures[:40])


def test_no_vendor_command_prints_a_traceback(sandbox: dict[str, str]) -> None:
    """``aftercare-vendor`` (three commands: fewer cases than the other programs)."""
    cases = [
        argv
        for leaf in _leaves("aftercare-vendor", vendor_cli.build_parser())
        for argv in _argvs(leaf)
    ]
    failures = []
    for argv in cases:
        outcome = _run(vendor_cli.main, [sandbox.get(word, word) for word in argv])
        failures += [f"aftercare-vendor {argv!r}: {problem}" for problem in _problems(outcome)]
    assert len(cases) > 40
    assert not failures, f"{len(failures)} of {len(cases)} runs:\n" + "\n".join(failures[:40])


@pytest.mark.parametrize(
    "options",
    [
        ["--collector", "\x1b[2J"],
        ["--collector", ""],
        ["--collector", "[::1"],
        ["--collector", "999.1.1.1:99999"],
        ["--collector", "\udcff:1"],
        ["--token", "act_abc\n"],
        ["--token", "act_\x1b[2J"],
        ["--token", "tök"],
        ["--token", "\udcff"],
        ["--ca-file", "/nonexistent/ca.pem"],
        ["--ca-file", "."],
        ["--ca-file", "\udcff"],
    ],
)
def test_client_connection_options_malformed(
    options: list[str], sandbox: dict[str, str], tmp_path: Path
) -> None:
    """The connection options themselves, malformed, on a command that needs them."""
    base = {"--collector": sandbox["COLLECTOR"], "--token": "act_x", "--ca-file": sandbox["CA"]}
    base[options[0]] = options[1]
    argv = [word for pair in base.items() for word in pair]
    outcome = _run(client_cli.main, [*argv, "agents"])
    assert _problems(outcome) == [], outcome
    assert outcome.code not in (0, None), outcome


def test_the_sweep_covers_every_command() -> None:
    """Spot-check that the walk finds nested actions of all three programs."""
    names = {
        (leaf.program, leaf.words)
        for program, (_, build) in PROGRAMS.items()
        for leaf in _leaves(program, build())
    }
    for expected in [
        ("aftercare", ("session", "approve")),
        ("aftercare", ("ticket", "resolve")),
        ("aftercare", ("approvers", "add")),
        ("aftercare-collector", ("audit", "list")),
        ("aftercare-agent", ("approve-session",)),
    ]:
        assert expected in names
