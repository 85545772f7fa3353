"""The remote-session client commands (keys, ssh, session show/replay/log/watch) against a
fake API: argument parsing, the requests sent, output and exit codes.

The real collector side (the RPCs, the gateway, recordings) is covered end to end in
tests/e2e; here a small fake stands in for ``ApiClient`` (``call``, ``stream``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from collector.client import cli, ssh
from collector.client import tickets as tickets_cli
from proto import api_pb2

SID = "ses-0123456789ab"
ED25519 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJap3+7PJ1MViK1Fuf2RmkrRJ8snMYje8yOhyYDHdoj7 erin@laptop"
)
ED25519_FP = "SHA256:Lzphpjgr6Inja0sZ6FO1WH5xo4ypNhd4HHLYrg45bjk"
T0 = 1_700_000_000  # recording start, unix seconds
HOUR_MS = 3_600_000


class FakeStream:
    def __init__(self, items: Iterable[Any]) -> None:
        self.items = list(items)
        self.cancelled = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            if isinstance(item, BaseException):
                raise item
            yield item

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class FakeApi:
    """Canned replies per method; records every request."""

    address = "collector.example.com:7444"

    def __init__(self, **replies: Any) -> None:
        self.replies = {  # the caller is erin, with one registered key
            "WhoAmI": api_pb2.WhoAmIResponse(user="erin", role="engineer"),
            "ListSshKeys": api_pb2.ListSshKeysResponse(
                keys=[api_pb2.SshKey(fingerprint=ED25519_FP, key_type="ssh-ed25519")]
            ),
            **replies,
        }
        self.calls: list[tuple[str, Any]] = []
        self.streams: list[FakeStream] = []

    def call(self, method: str, request: Any) -> Any:
        self.calls.append((method, request))
        return self.replies[method]

    def stream(self, method: str, request: Any) -> FakeStream:
        self.calls.append((method, request))
        reply = self.replies[method]
        items = reply(request) if callable(reply) else reply
        stream = FakeStream(items)
        self.streams.append(stream)
        return stream

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]


@pytest.fixture(autouse=True)
def no_local_ssh_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`aftercare ssh` looks for the caller's keys: none here unless a test adds them."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def run(api: FakeApi, *argv: str) -> int:
    args = cli.parse_args(cli.build_parser(), list(argv))
    result: int = args.handler(api, args)
    return result


def now_ms() -> int:
    return int(time.time() * 1000)


def session(state: str = "approved", **fields: Any) -> api_pb2.SessionInfo:
    now = now_ms()
    values: dict[str, Any] = {
        "session_id": SID,
        "agent_id": "agent-web1",
        "customer": "acme",
        "hostname": "web1",
        "engineer": "erin",
        "reason": "disk full on /var",
        "state": state,
        "requested_unix_ms": now - HOUR_MS,
        "pending_expires_unix_ms": now + HOUR_MS,
        "requested_duration_ms": 2 * HOUR_MS,
        "ticket_id": 12,
    }
    if state in ("approved", "active", "ended", "terminated"):
        values |= {
            "approved_by": "carol",
            "window_start_unix_ms": now - 60_000,
            "window_end_unix_ms": now + HOUR_MS,
        }
    values |= fields
    return api_pb2.SessionInfo(**values)


def detail(
    info: api_pb2.SessionInfo | None = None,
    *,
    gateway: str = "127.0.0.1:2222",
    events: Iterable[api_pb2.SessionEventInfo] = (),
    recordings: Iterable[api_pb2.RecordingInfo] = (),
) -> api_pb2.SessionDetail:
    return api_pb2.SessionDetail(
        session=info or session(),
        gateway=gateway,
        events=list(events),
        recordings=list(recordings),
    )


def cast(*events: list[object], timestamp: int | None = T0) -> bytes:
    header: dict[str, Any] = {"version": 2, "width": 80, "height": 24}
    if timestamp is not None:
        header["timestamp"] = timestamp
    return ("\n".join(json.dumps(x) for x in [header, *events]) + "\n").encode()


def recording(part: int, kind: str = "shell", data: bytes = b"", **fields: Any) -> Any:
    values: dict[str, Any] = {
        "part": part,
        "kind": kind,
        "started_unix_ms": T0 * 1000,
        "ended_unix_ms": T0 * 1000 + 60_000,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "input_recorded": True,
    }
    values |= fields
    return api_pb2.RecordingInfo(**values)


def chunks(data: bytes, size: int = 7) -> list[api_pb2.RecordingChunk]:
    return [api_pb2.RecordingChunk(data=data[i : i + size]) for i in range(0, len(data), size)]


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(seconds))


# -- argument parsing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "extra", "printed"),
    [
        (["ssh", SID], [], False),
        (["ssh", SID, "uptime"], ["uptime"], False),
        (["ssh", SID, "--", "-v", "uptime"], ["-v", "uptime"], False),
        (["ssh", SID, "--print", "--", "ls", "-l"], ["ls", "-l"], True),
        (["ssh", "--print", SID, "--", "ls", "--", "-x"], ["ls", "--", "-x"], True),
        (["ssh", SID, "-i", "k", "--", "-L", "80:x:80"], ["-L", "80:x:80"], False),
    ],
)
def test_ssh_passes_the_words_after_the_session_to_ssh(
    argv: list[str], extra: list[str], printed: bool
) -> None:
    args = cli.parse_args(cli.build_parser(), argv)
    assert args.session_id == SID
    assert args.extra_args == extra
    assert args.print is printed


def test_other_commands_still_refuse_unknown_arguments() -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_args(cli.build_parser(), ["session", "show", SID, "--bogus"])
    assert info.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["session", "replay", SID, "--speed", "0"],
        ["session", "replay", SID, "--speed", "fast"],
        ["session", "replay", SID, "--max-wait", "-1"],
    ],
)
def test_replay_refuses_bad_numbers(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_args(cli.build_parser(), argv)
    assert info.value.code == 2


# -- keys ------------------------------------------------------------------------------


def key_reply(**fields: Any) -> api_pb2.SshKey:
    values: dict[str, Any] = {
        "fingerprint": ED25519_FP,
        "key_type": "ssh-ed25519",
        "comment": "erin@laptop",
        "user": "erin",
        "added_unix_ms": T0 * 1000,
    }
    return api_pb2.SshKey(**(values | fields))


def test_keys_add_sends_the_key_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "id_ed25519.pub"
    path.write_text(f"\n{ED25519}   \n")
    api = FakeApi(AddSshKey=key_reply())
    assert run(api, "keys", "add", str(path)) == 0
    [(method, request)] = api.calls
    assert method == "AddSshKey"
    assert request.public_key == ED25519
    assert capsys.readouterr().out == f"added {ED25519_FP} (ssh-ed25519, erin@laptop) for erin\n"


def test_keys_add_from_stdin_with_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(ED25519.encode())))
    api = FakeApi(AddSshKey=key_reply())
    assert run(api, "keys", "add", "-", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "fingerprint": ED25519_FP,
        "key_type": "ssh-ed25519",
        "comment": "erin@laptop",
        "user": "erin",
        "added": iso(T0),
    }


def test_keys_add_refuses_a_private_key_without_calling_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "id_ed25519"
    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    api = FakeApi()
    assert run(api, "keys", "add", str(path)) == 1
    assert api.calls == []
    err = capsys.readouterr().err
    assert f"error: {path} is a private key: never share it" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), (b"hello\n", "not an OpenSSH public key"), (b"", "is empty")],
)
def test_keys_add_refuses_garbage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    path = tmp_path / "key.pub"
    if content is not None:
        path.write_bytes(content)
    api = FakeApi()
    assert run(api, "keys", "add", str(path)) == 1
    assert api.calls == []
    assert message in capsys.readouterr().err


def test_keys_list(capsys: pytest.CaptureFixture[str]) -> None:
    reply = api_pb2.ListSshKeysResponse(keys=[key_reply(), key_reply(comment="")])
    assert run(FakeApi(ListSshKeys=reply), "keys", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["FINGERPRINT", "TYPE", "ADDED", "COMMENT"]
    assert lines[1].split() == [ED25519_FP, "ssh-ed25519", iso(T0), "erin@laptop"]
    assert lines[2].split() == [ED25519_FP, "ssh-ed25519", iso(T0)]
    assert run(FakeApi(ListSshKeys=reply), "keys", "list", "--json") == 0
    assert [k["comment"] for k in json.loads(capsys.readouterr().out)] == ["erin@laptop", ""]


def test_keys_list_empty_says_how_to_add_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeApi(ListSshKeys=api_pb2.ListSshKeysResponse()), "keys", "list") == 0
    assert "aftercare keys add" in capsys.readouterr().out


@pytest.mark.parametrize("how", ["fingerprint", "bare", "file"])
def test_keys_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str) -> None:
    path = tmp_path / "id.pub"
    path.write_text(ED25519 + "\n")
    arg = {"fingerprint": ED25519_FP, "bare": ED25519_FP[7:], "file": str(path)}[how]
    api = FakeApi(RemoveSshKey=key_reply())
    assert run(api, "keys", "remove", arg) == 0
    assert api.calls[0][1].fingerprint == ED25519_FP
    assert capsys.readouterr().out.startswith(f"removed {ED25519_FP}")


def test_keys_remove_refuses_an_md5_fingerprint(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi()
    assert run(api, "keys", "remove", "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48") == 1
    assert api.calls == []
    assert "not a SHA256 fingerprint" in capsys.readouterr().err


# -- ssh -------------------------------------------------------------------------------


class ExecRecorder:
    def __init__(self, error: Exception | None = None) -> None:
        self.argv: list[str] | None = None
        self.error = error

    def __call__(self, file: str, argv: list[str]) -> None:
        if self.error:
            raise self.error
        assert file == argv[0]
        self.argv = argv


@pytest.fixture
def execvp(monkeypatch: pytest.MonkeyPatch) -> ExecRecorder:
    recorder = ExecRecorder()
    monkeypatch.setattr(os, "execvp", recorder)
    return recorder


def test_ssh_execs_openssh_for_a_usable_session(execvp: ExecRecorder) -> None:
    api = FakeApi(GetSession=detail())
    assert run(api, "ssh", SID) == 0
    assert api.calls[0][1].session_id == SID
    assert execvp.argv == ["ssh", "-p", "2222", f"{SID}@127.0.0.1"]


def test_ssh_with_identity_and_extra_arguments(tmp_path: Path, execvp: ExecRecorder) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("secret")
    api = FakeApi(GetSession=detail(session("active")))
    assert run(api, "ssh", SID, "--identity", str(key), "--", "-t", "sudo -i") == 0
    assert execvp.argv == ["ssh", "-p", "2222", "-i", str(key), f"{SID}@127.0.0.1", "-t", "sudo -i"]


def test_ssh_print_shows_the_quoted_command(
    capsys: pytest.CaptureFixture[str], execvp: ExecRecorder
) -> None:
    api = FakeApi(GetSession=detail(gateway="gw.example.com:2200"))
    assert run(api, "ssh", SID, "--print", "--", "ls", "/var/log files") == 0
    assert execvp.argv is None
    expected = f"ssh -p 2200 {SID}@gw.example.com ls '/var/log files'\n"
    assert capsys.readouterr().out == expected


def test_ssh_wildcard_gateway_means_the_collector_host(
    capsys: pytest.CaptureFixture[str], execvp: ExecRecorder
) -> None:
    for gateway in ("0.0.0.0:2222", "[::]:2222", ":2222"):
        assert run(FakeApi(GetSession=detail(gateway=gateway)), "ssh", SID, "--print") == 0
        assert capsys.readouterr().out == f"ssh -p 2222 {SID}@collector.example.com\n"


def test_ssh_without_gateway_says_how_to_start_it(
    capsys: pytest.CaptureFixture[str], execvp: ExecRecorder
) -> None:
    assert run(FakeApi(GetSession=detail(gateway="")), "ssh", SID) == 1
    assert execvp.argv is None
    assert (
        "the collector does not serve the SSH gateway (start it with --ssh-listen)"
        in capsys.readouterr().err
    )


def test_ssh_refuses_a_missing_identity_file(
    capsys: pytest.CaptureFixture[str], execvp: ExecRecorder
) -> None:
    assert run(FakeApi(GetSession=detail()), "ssh", SID, "-i", "/nonexistent/key") == 1
    assert execvp.argv is None
    assert "--identity /nonexistent/key: no such file" in capsys.readouterr().err


def test_ssh_without_openssh_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api = FakeApi(GetSession=detail())
    missing = ExecRecorder(FileNotFoundError("ssh"))
    assert ssh.login(api, SID, execvp=missing) == 1
    assert "OpenSSH client `ssh` is not installed" in capsys.readouterr().err


def test_ssh_refuses_an_unusable_session_with_advice(
    capsys: pytest.CaptureFixture[str], execvp: ExecRecorder
) -> None:
    assert run(FakeApi(GetSession=detail(session("pending"))), "ssh", SID) == 1
    assert execvp.argv is None
    err = capsys.readouterr().err
    assert err.startswith(f"error: {SID} is pending: ask a user of customer acme to run ")
    assert f"`aftercare session approve {SID}`" in err


def ev(kind: str, actor: str = "system", at: int = 0, **details: Any) -> api_pb2.SessionEventInfo:
    return api_pb2.SessionEventInfo(
        at_unix_ms=at, actor=actor, kind=kind, details_json=json.dumps(details)
    )


NOW = 1_800_000_000_000


@pytest.mark.parametrize(
    ("info", "events", "expected"),
    [
        (session("pending", pending_expires_unix_ms=NOW + 1), [], "is pending: ask a user of"),
        (
            session("pending", pending_expires_unix_ms=NOW + 1),
            [ev("requested", "user:erin", local_approval_required=True)],
            f"run `aftercare-agent approve-session {SID}` on web1",
        ),
        (session("pending", pending_expires_unix_ms=NOW), [], "expired at"),
        (
            session("denied", deny_reason="not today"),
            [ev("denied", "user:carol")],
            "was denied by carol: not today; it cannot be used",
        ),
        (session("expired"), [], "before anyone approved it; request a new session"),
        (
            session("ended", end_reason="engineer disconnected"),
            [ev("ended", at=NOW - 60_000)],
            "is ended (engineer disconnected) at 2027-01-15T07:59:00+00:00; a session is used once",
        ),
        (
            session("terminated", end_reason="terminated by carol"),
            [ev("terminated", "user:carol")],
            "is terminated (terminated by carol)",
        ),
        (
            session("approved", window_start_unix_ms=NOW - 10, window_end_unix_ms=NOW),
            [],
            "access window ended at",
        ),
        (
            session("active", window_start_unix_ms=NOW + 10, window_end_unix_ms=NOW + 20),
            [],
            "access window has not started yet",
        ),
        (session("approved", window_start_unix_ms=0), [], "access window has not started"),
        (session("weird"), [], "is weird; it cannot be used"),
    ],
)
def test_unusable_reasons(
    info: api_pb2.SessionInfo, events: list[api_pb2.SessionEventInfo], expected: str
) -> None:
    reason = ssh.unusable_reason(detail(info, events=events), NOW)
    assert reason is not None
    assert expected in reason
    assert reason.startswith(SID)


def test_usable_at_the_window_edges() -> None:
    info = session("approved", window_start_unix_ms=NOW, window_end_unix_ms=NOW + 1)
    assert ssh.unusable_reason(detail(info), NOW) is None
    assert ssh.unusable_reason(detail(session("active")), now_ms()) is None


def test_gateway_address_refuses_nonsense() -> None:
    for bad in ("2222", "host:", "host:99999", "host:ssh"):
        with pytest.raises(ValueError, match="bad gateway address"):
            ssh.gateway_address(bad, "c:1")
    assert ssh.gateway_address("[::1]:2222", "c:1") == ("::1", 2222)


# -- session show ----------------------------------------------------------------------


def shown_detail() -> api_pb2.SessionDetail:
    at = T0 * 1000
    info = session(
        "ended",
        requested_unix_ms=at,
        window_start_unix_ms=at + 60_000,
        window_end_unix_ms=at + 60_000 + 2 * HOUR_MS,
        end_reason="engineer disconnected",
    )
    return detail(
        info,
        events=[
            ev("requested", "user:erin", at, reason="disk full on /var", duration_ms=2 * HOUR_MS),
            ev("approved", "user:carol", at + 60_000, window_end_ms=at + 60_000 + 2 * HOUR_MS),
            ev("connected", "user:erin", at + 120_000, first=True, remote_response_ms=60_000),
        ],
        recordings=[
            recording(1, data=b"x" * 2048, input_recorded=True),
            recording(2, "exec", command="uptime", ended_unix_ms=0, sha256="", size_bytes=10),
        ],
    )


def test_session_show_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeApi(GetSession=shown_detail()), "session", "show", SID) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{SID}: ended\n")
    assert "web1 (agent-web1), customer acme" in out
    assert "approved   by carol" in out
    assert f"window     {iso(T0 + 60)} .. {iso(T0 + 60 + 7200)}" in out
    assert "ended      engineer disconnected" in out
    assert "ticket     #12" in out
    assert 'requested    user:erin        reason="disk full on /var" duration=2h' in out
    assert f"window_end={iso(T0 + 60 + 7200)}" in out
    assert "first=true remote_response=1m" in out
    sha = hashlib.sha256(b"x" * 2048).hexdigest()
    assert f"part 1  shell  {iso(T0)} .. {iso(T0 + 60)}  2.0 KiB  input recorded" in out
    assert f"sha256 {sha}" in out
    assert "part 2  exec `uptime`" in out
    assert "still recording" in out


def test_session_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeApi(GetSession=shown_detail()), "session", "show", SID, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["session_id"] == SID
    assert data["state"] == "ended"  # the session's fields as `session request --json`
    assert data["approved_by"] == "carol"
    assert data["window_start"] == iso(T0 + 60)
    assert data["ticket_id"] == 12
    assert data["gateway"] == "127.0.0.1:2222"
    assert data["events"][0] == {
        "at": iso(T0),
        "actor": "user:erin",
        "kind": "requested",
        "details": {"reason": "disk full on /var", "duration_ms": 2 * HOUR_MS},
    }
    assert data["recordings"][1] == {
        "part": 2,
        "kind": "exec",
        "command": "uptime",
        "started": iso(T0),
        "ended": None,
        "size_bytes": 10,
        "sha256": "",
        "input_recorded": True,
    }


# -- session replay --------------------------------------------------------------------

SHELL = cast([0.0, "o", "$ "], [0.4, "i", "ls\r"], [0.5, "o", "ls\r\n"], [3.5, "o", "a b\r\n"])
EXEC = cast([0.0, "o", " 10:00 up 1 day\r\n"])


def replay_api(**overrides: Any) -> FakeApi:
    parts = {1: SHELL, 2: EXEC}
    recs = [recording(1, data=SHELL), recording(2, "exec", data=EXEC, command="uptime")]
    replies: dict[str, Any] = {
        "GetSession": detail(recordings=recs),
        "GetRecording": lambda req: chunks(parts[req.part or 1]),
    }
    return FakeApi(**(replies | overrides))


def test_replay_plays_the_first_part_with_its_timing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    api = replay_api()
    assert run(api, "session", "replay", SID, "--speed", "2", "--max-wait", "1") == 0
    out, err = capsys.readouterr()
    assert out == "$ ls\r\na b\r\n"
    assert sleeps == pytest.approx([0.2, 0.05, 0.5])  # 0.4 and 0.1 at double speed; 3 s capped at 1
    assert api.calls[1][1].part == 1
    assert "part 1; the session's parts: 1 (shell), 2 (exec `uptime`) (choose with --part N)" in err


def test_replay_another_part(capsys: pytest.CaptureFixture[str]) -> None:
    api = replay_api()
    assert run(api, "session", "replay", SID, "--part", "2", "--max-wait", "0") == 0
    assert capsys.readouterr() == (" 10:00 up 1 day\r\n", "")
    assert api.calls[1][1].part == 2


def test_replay_unknown_part_lists_the_parts(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(replay_api(), "session", "replay", SID, "--part", "9") == 1
    assert "has no part 9; parts: 1 (shell), 2 (exec `uptime`)" in capsys.readouterr().err


def test_replay_without_recordings(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(replay_api(GetSession=detail()), "session", "replay", SID) == 1
    assert "has no recordings" in capsys.readouterr().err


def test_replay_output_file_is_the_asciicast_as_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "session.cast"
    assert run(replay_api(), "session", "replay", SID, "-o", str(target)) == 0
    assert target.read_bytes() == SHELL
    assert f"play it with `asciinema play {target}`" in capsys.readouterr().err


def test_replay_raw_writes_the_bytes_to_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert run(replay_api(), "session", "replay", SID, "--raw", "--part", "1") == 0
    assert capsysbinary.readouterr().out == SHELL


def test_replay_warns_when_the_hash_does_not_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = replay_api(GetRecording=chunks(SHELL[:-20]))
    target = tmp_path / "cut.cast"
    assert run(api, "session", "replay", SID, "-o", str(target)) == 1
    assert "does not match its stored sha256" in capsys.readouterr().err
    assert target.read_bytes() == SHELL[:-20]


def test_replay_of_a_broken_file(capsys: pytest.CaptureFixture[str]) -> None:
    broken = b"<html>oops</html>\n"
    api = replay_api(
        GetSession=detail(recordings=[recording(1, data=broken)]), GetRecording=chunks(broken)
    )
    assert run(api, "session", "replay", SID) == 1
    assert "part 1 is not a valid recording: line 1" in capsys.readouterr().err


# -- session log -----------------------------------------------------------------------


def test_log_lists_typed_lines_and_exec_commands_in_time_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shell = cast(
        [1.0, "i", "upt"],
        [1.5, "i", "ime\r"],
        [30.0, "i", "ls -l /tmpx\x7f\r"],
        [40.0, "i", "cat /etc/host\t\r"],
        [50.0, "i", "rm -rf /\x03"],
    )
    recs = [
        recording(1, data=shell),
        recording(2, "exec", command="scp -t /tmp", started_unix_ms=(T0 + 10) * 1000),
    ]
    api = FakeApi(GetSession=detail(recordings=recs), GetRecording=chunks(shell))
    assert run(api, "session", "log", SID) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{iso(T0 + 1)}  part 1  uptime",
        f"{iso(T0 + 10)}  part 2  exec: scp -t /tmp",
        f"{iso(T0 + 30)}  part 1  ls -l /tmp",
        f"{iso(T0 + 40)}  part 1  cat /etc/host  [?]",
    ]
    assert "note: [?]: tab completion, history recall or cursor keys" in err
    assert api.methods() == ["GetSession", "GetRecording"]  # exec parts are not fetched


def test_log_json(capsys: pytest.CaptureFixture[str]) -> None:
    shell = cast([2.0, "i", "df -h\r"], timestamp=None)
    recs = [recording(1, data=shell, started_unix_ms=(T0 + 100) * 1000, ended_unix_ms=0)]
    api = FakeApi(GetSession=detail(recordings=recs), GetRecording=chunks(shell))
    assert run(api, "session", "log", SID, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {
        "session_id": SID,
        "entries": [
            {
                "time": iso(T0 + 102),  # no header timestamp: the part's start
                "part": 1,
                "kind": "typed",
                "command": "df -h",
                "uncertain": False,
            }
        ],
        "notes": ["part 1 is still recording: lines typed so far"],
    }


def test_log_says_once_when_input_was_not_recorded(capsys: pytest.CaptureFixture[str]) -> None:
    shell = cast([0.5, "o", "$ "], [1.0, "o", "ls\r\n"])
    recs = [
        recording(1, data=shell, input_recorded=False),
        recording(2, "exec", command="uptime"),
        recording(3, data=shell, input_recorded=False),
    ]
    api = FakeApi(GetSession=detail(recordings=recs), GetRecording=chunks(shell))
    assert run(api, "session", "log", SID) == 0
    out, err = capsys.readouterr()
    assert out == f"{iso(T0)}  part 2  exec: uptime\n"
    assert err == "note: input was not recorded for parts 1, 3; only exec commands are listed\n"


def test_log_goes_on_past_a_broken_part(capsys: pytest.CaptureFixture[str]) -> None:
    recs = [recording(1, data=b"junk\n"), recording(2, "exec", command="uptime")]
    api = FakeApi(GetSession=detail(recordings=recs), GetRecording=chunks(b"junk\n"))
    assert run(api, "session", "log", SID) == 1
    out, err = capsys.readouterr()
    assert "exec: uptime" in out
    assert "note: part 1 cannot be read: line 1" in err


# -- session watch ---------------------------------------------------------------------


ACTIVE = detail(session("active"))


def watch_events(*items: tuple[str, str] | BaseException) -> list[Any]:
    events: list[Any] = []
    for n, item in enumerate(items):
        if isinstance(item, BaseException):
            events.append(item)
        else:
            events.append(api_pb2.WatchEvent(part=1, time=n / 10, type=item[0], data=item[1]))
    return events


def test_watch_writes_output_until_the_session_ends(capsys: pytest.CaptureFixture[str]) -> None:
    events = watch_events(
        ("o", "$ "), ("r", "100x30"), ("o", "uptime\r\n"), ("x", ""), ("end", ""), ("o", "late")
    )
    api = FakeApi(GetSession=ACTIVE, WatchSession=events)
    assert run(api, "session", "watch", SID) == 0
    out, err = capsys.readouterr()
    assert out == "$ uptime\r\n"
    assert err == f"session {SID} ended\n"
    assert api.calls[0][1].session_id == SID
    assert api.streams[0].cancelled


def test_watch_json(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(
        GetSession=ACTIVE, WatchSession=watch_events(("o", "hi"), ("end", "terminated by carol"))
    )
    assert run(api, "session", "watch", SID, "--json") == 0
    out, err = capsys.readouterr()
    assert [json.loads(line) for line in out.splitlines()] == [
        {"part": 1, "time": 0.0, "type": "o", "data": "hi"},
        {"part": 1, "time": 0.1, "type": "end", "data": "terminated by carol"},
    ]
    assert err == ""


def test_watch_ctrl_c_exits_quietly(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(
        GetSession=ACTIVE, WatchSession=watch_events(("o", "top\r\n"), KeyboardInterrupt())
    )
    assert run(api, "session", "watch", SID) == 0
    assert capsys.readouterr() == ("top\r\n", "")
    assert api.streams[0].cancelled


def test_watch_stream_closed_by_the_collector(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(
            FakeApi(GetSession=ACTIVE, WatchSession=watch_events(("o", "x"))),
            "session",
            "watch",
            SID,
        )
        == 0
    )
    assert capsys.readouterr() == ("x", f"the collector closed the watch of {SID}\n")


def test_watch_error_status_propagates_to_the_cli() -> None:
    error = grpc.RpcError("NOT_FOUND")
    with pytest.raises(grpc.RpcError):
        run(
            FakeApi(GetSession=ACTIVE, WatchSession=watch_events(("o", "x"), error)),
            "session",
            "watch",
            SID,
        )


def test_gateway_host_key_is_pinned_and_replaced(tmp_path: Path) -> None:
    known = tmp_path / "aftercare" / "known_hosts"
    assert ssh.pin_host_key(known, "gw", 2222, "") is None
    assert ssh.pin_host_key(known, "gw", 2222, "ssh-ed25519 AAAAold") == known
    ssh.pin_host_key(known, "other", 22, "ssh-ed25519 AAAAother")
    ssh.pin_host_key(known, "gw", 2222, "ssh-ed25519 AAAAnew")
    assert known.read_text().splitlines() == [
        "[other]:22 ssh-ed25519 AAAAother",
        "[gw]:2222 ssh-ed25519 AAAAnew",
    ]
    argv = ssh.ssh_argv("ses-0123456789ab", "gw", 2222, None, ["uptime"], known)
    assert argv == [
        "ssh", "-p", "2222", "-o", f"UserKnownHostsFile={known}",
        "-o", "StrictHostKeyChecking=yes", "ses-0123456789ab@gw", "uptime",
    ]  # fmt: skip


def test_the_sla_column_labels_response_and_resolution_apart() -> None:
    ticket = api_pb2.Ticket(
        sla=[
            api_pb2.SlaClock(name="response", state="met"),
            api_pb2.SlaClock(name="resolution", state="running"),
        ]
    )
    assert tickets_cli._sla_summary(ticket) == "resp:met resol:running"


def test_ticket_show_summarises_ack_resolved_and_diagnostics_events() -> None:
    summary = tickets_cli._event_summary
    assert summary("acknowledged", {}) == "taken in hand"
    contacted = {"via": "phone", "note": "called Li"}
    assert summary("contacted", contacted) == "customer contacted by phone: called Li"
    told = {"audience": "customer", "channel": "email", "subject": "s", "delivered": False}
    assert summary("notification", told) == "customer email: s (delivery failed)"
    escalated = {"channel": "webhook", "target": "https://h#d", "subject": "warn"}
    assert summary("notification", escalated) == "escalation webhook https://h#d: warn"
    resolved = {"cause": "log rotation off", "actions": "rotated", "prevention": ""}
    assert summary("resolved", resolved) == "cause: log rotation off; actions: rotated"
    ran = {"playbook": "disk_usage", "status": "succeeded", "output": "..."}
    assert summary("diagnostics", ran) == "playbook disk_usage succeeded"
    refused = {"playbook": "disk_usage", "status": "not run", "error": "agent offline"}
    assert summary("diagnostics", refused) == "playbook disk_usage not run: agent offline"
    assert summary("comment", {"text": "hello"}) == "hello"


class PagingApi(FakeApi):
    """Answers ``method`` with one page per call, following the page tokens."""

    def __init__(self, method: str, pages: list[Any]) -> None:
        super().__init__()
        self.method = method
        self.pages = pages

    def call(self, method: str, request: Any) -> Any:
        if method != self.method:
            return super().call(method, request)
        self.calls.append((method, api_pb2.ListApproversRequest()))
        index = int(request.page_token or "0")
        return self.pages[index]


def test_approvers_list_fetches_every_page(capsys: pytest.CaptureFixture[str]) -> None:
    pages = [
        api_pb2.ListApproversResponse(
            approvers=[api_pb2.ApproverInfo(customer="acme", name=f"a{i}")], next_page_token=nxt
        )
        for i, nxt in enumerate(["1", "2", ""])
    ]
    api = PagingApi("ListApprovers", pages)
    assert run(api, "approvers", "list", "--json") == 0
    assert [a["name"] for a in json.loads(capsys.readouterr().out)] == ["a0", "a1", "a2"]
    assert api.methods() == ["ListApprovers"] * 3
