"""The `aftercare` commands with hostile replies, and the session loose ends, against a
fake API (the real collector is in tests/e2e/test_cli_safety.py).

Every string field of every reply holds terminal escapes, a bidi override, a C1
control and a newline followed by a forged line: no command lets any of it reach the
terminal raw, no field forges a line, and ``--json`` keeps the original.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message

from collector.client import cli
from common.safe_text import guarded_output, safe, safe_block, terminal_display
from proto import api_pb2
from tests.collector.test_client_commands import (
    ED25519,
    ED25519_FP,
    SID,
    FakeApi,
    FakeStream,
    detail,
    session,
)

H = "h\x1b]0;pwned\x07\x1b[2J\u202egnp\x9b\nFORGED"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")
DETAILS_JSON = json.dumps(
    {
        "text": H,
        "reason": H,
        "steps": [
            {"name": H, "status": H, "exit_code": 1, "duration_ms": 1, "truncated": 0, "error": H}
        ],
        "redactions": 1,
    }
)


def hostile(cls: type[Message], depth: int = 0) -> Message:
    """A message of ``cls`` with every field set, every string to ``H``."""
    message = cls()
    for field in cls.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = field.message_type.fields
            key = H if key_field.type == key_field.TYPE_STRING else 1
            value[key] = _scalar(value_field, "value")
        elif field.message_type is not None:
            if depth > 3:
                continue
            target = value.add() if _repeated(field) else value
            target.CopyFrom(hostile(type(target), depth + 1))
        elif _repeated(field):
            value.append(_scalar(field, field.name))
        else:
            setattr(message, field.name, _scalar(field, field.name))
    return message


def _repeated(field: Any) -> bool:
    return bool(field.is_repeated)


def _scalar(field: Any, name: str) -> Any:
    if field.type == field.TYPE_STRING:
        return DETAILS_JSON if name.endswith("_json") else H
    if field.type == field.TYPE_BYTES:
        return H.encode()
    if field.type == field.TYPE_BOOL:
        return True
    if field.type in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
        return 0.5
    return 1_700_000_000_000 if name.endswith("_ms") else 1


class HostileApi(FakeApi):
    """Every method answers with a hostile message of its reply type."""

    def call(self, method: str, request: Any) -> Any:
        self.calls.append((method, request))
        return hostile(self._reply_type(method))

    def stream(self, method: str, request: Any) -> FakeStream:
        self.calls.append((method, request))
        return FakeStream([hostile(self._reply_type(method))])

    @staticmethod
    def _reply_type(method: str) -> type[Message]:
        service = api_pb2.DESCRIPTOR.services_by_name["Api"]
        return getattr(api_pb2, service.methods_by_name[method].output_type.name)  # type: ignore[no-any-return]


# (argv, may print a block of text in which a newline is the text's own)
COMMANDS: list[tuple[list[str], bool]] = [
    (["agents"], False),
    (["host", "web-1"], False),
    (["whoami"], False),
    (["tickets"], False),
    (["ticket", "show", "1"], True),  # the description is a block
    (["ticket", "ack", "1"], False),
    (["ticket", "create", "title"], False),
    (["ticket", "report", "1"], True),
    (["runs"], False),
    (["run", "show", "run-1"], True),  # the playbook output is a block
    (["sessions"], False),
    (["session", "show", SID], False),
    (["session", "request", "--host", "h", "--reason", "r"], False),
    (["session", "deny", SID, "--reason", "r"], False),
    (["session", "terminate", SID], False),
    (["session", "log", SID], False),
    (["keys", "list"], False),
    (["approvers", "list"], False),
    (["playbooks", "list"], False),
    (["ssh", SID], False),
]


def _run(api: FakeApi, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        args = cli.parse_args(cli.build_parser(), argv)
        with guarded_output(stdout=not getattr(args, "json", False)):
            code = args.handler(api, args)
    finally:
        sys.stdout, sys.stderr = saved
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "block"), COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_hostile_replies_reach_the_terminal_escaped(argv: list[str], block: bool) -> None:
    code, out, err = _run(HostileApi(), argv)
    assert [c for c in RAW if c in out + err] == [], out + err
    if not block:
        forged = [line for line in (out + err).splitlines() if line.startswith("FORGED")]
        assert forged == [], out
    assert "\\x1b]0;pwned" in out + err or code != 0, out + err


@pytest.mark.parametrize(
    "argv",
    [a for a, _ in COMMANDS if a[0] not in ("ssh", "whoami") and a[:2] != ["ticket", "report"]],
    ids=" ".join,
)
def test_json_keeps_the_original(argv: list[str]) -> None:
    code, out, _ = _run(HostileApi(), [*argv, "--json"])
    assert code == 0
    assert H in set(_strings(json.loads(out)))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_run_output_escaped_by_default_raw_on_request(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    api = HostileApi()
    _, out, _ = _run(api, ["run", "show", "run-1"])
    assert "\\x1b]0;pwned" in out and "\x1b" not in out
    args = cli.parse_args(cli.build_parser(), ["run", "show", "run-1", "--raw"])
    with guarded_output():
        assert args.handler(api, args) == 0
    assert H.encode() in capsysbinary.readouterr().out


def test_safe_text_rules() -> None:
    assert safe("a\x1b[2J\nb\tc\u202e\x9b\x7f\udcff") == "a\\x1b[2J\\nb\\tc\\u202e\\x9b\\x7f\\udcff"
    assert safe_block("a\x1b\nb\tc\r\nd\re") == "a\\x1b\nb\tc\r\nd\\re"
    assert safe("日本 ✓") == "日本 ✓"
    shown = terminal_display("\x1b[31mred\x1b[0m\x1b]0;title\x07\x1b]52;c;eA==\x1b\\\x1b[6n\x1b[c")
    assert shown == "\x1b[31mred\x1b[0m"


# -- session loose ends ------------------------------------------------------------------


def test_sessions_empty_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(FakeApi(ListSessions=api_pb2.ListSessionsResponse()), ["sessions"])[1].startswith(
        "no sessions"
    )


def test_watch_on_a_pending_session_says_it_waits() -> None:
    api = FakeApi(GetSession=detail(session("pending")), WatchSession=[])
    code, _, err = _run(api, ["session", "watch", SID])
    assert code == 0
    assert err.startswith(f"{SID} is waiting for a customer to approve it")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["session", "request", "--host", "h", "--reason", "r", "--duration", "banana"],
            "invalid duration 'banana'",
        ),
        (
            ["session", "request", "--host", "h", "--reason", "r", "--duration", "99999999999999w"],
            "too long",
        ),
        (["session", "approve", SID, "--until", "banana"], "expected a duration from now"),
        (["session", "approve", SID, "--until", "9999999999w"], "too far in the future"),
        (["ticket", "show", "99999999999999999999"], "out of range"),
        (["runs", "--limit", "0"], "out of range"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# -- aftercare ssh explains before running ssh -----------------------------------------


class Exec:
    def __init__(self) -> None:
        self.argv: list[str] | None = None

    def __call__(self, file: str, argv: list[str]) -> None:
        self.argv = argv


def _login(
    api: FakeApi, identity: str | None = None, keys: dict[str, str] | None = None
) -> tuple[int, Exec]:
    from collector.client import ssh

    execvp = Exec()
    code = ssh.login(api, SID, identity=identity, execvp=execvp, find_keys=lambda _i: keys or {})
    return code, execvp


def test_ssh_refuses_another_engineers_session(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(GetSession=detail(session(engineer="frank")))
    code, execvp = _login(api)
    assert (code, execvp.argv) == (1, None)
    err = capsys.readouterr().err
    assert "requested by engineer frank, and only they can log in with it (you are erin)" in err


def test_ssh_says_no_key_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(GetSession=detail(), ListSshKeys=api_pb2.ListSshKeysResponse())
    code, execvp = _login(api)
    assert (code, execvp.argv) == (1, None)
    assert "you have no SSH key registered" in capsys.readouterr().err


def test_ssh_identity_key_not_registered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from collector.client import ssh_keys_check

    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x@y"
    key = tmp_path / "id_other"
    key.write_text("private")
    (tmp_path / "id_other.pub").write_text(other + "\n")
    found = ssh_keys_check.local_keys(str(key), home=tmp_path)
    assert list(found.values()) == [str(tmp_path / "id_other.pub")]
    code, execvp = _login(FakeApi(GetSession=detail()), identity=str(key), keys=found)
    assert (code, execvp.argv) == (1, None)
    assert "none of the keys ssh will offer is registered for you" in capsys.readouterr().err


def test_ssh_default_keys_not_registered_warns_and_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, execvp = _login(FakeApi(GetSession=detail()), keys={"SHA256:other": "~/.ssh/id_rsa.pub"})
    assert code == 0 and execvp.argv is not None
    assert capsys.readouterr().err.startswith("warning: none of the keys ssh will offer")


def test_ssh_with_a_registered_key_runs_quietly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from collector.client import ssh_keys_check

    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519.pub").write_text(ED25519 + "\n")
    found = ssh_keys_check.local_keys(None, home=tmp_path)
    assert ED25519_FP in found
    code, execvp = _login(FakeApi(GetSession=detail()), keys=found)
    assert code == 0 and execvp.argv is not None
    assert capsys.readouterr().err == ""
