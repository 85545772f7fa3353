"""Session requests on the host: remembered, listed, approved locally, reported exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import stat
import time
from pathlib import Path

import pytest

from agent.session.backend import Login
from agent.session.errors import RequestError
from agent.session.requests import REQUESTS_FILE, SessionRequests, parse_until
from proto import agent_pb2
from tests.agent.session_support import SESSION, Endpoint
from tests.support import run as run_module

HOUR_MS = 3_600_000


def requested(
    session_id: str = SESSION, expires_in: float = 600.0, duration_ms: int = 2 * HOUR_MS
) -> agent_pb2.SessionRequested:
    return agent_pb2.SessionRequested(
        session_id=session_id,
        engineer="erin",
        reason="check the query plan",
        duration_ms=duration_ms,
        pending_expires_unix_ms=int((time.time() + expires_in) * 1000),
        ticket_id=7,
    )


def cli(state_dir: Path, *args: str, sudo_user: str = "alice") -> tuple[int, str, str]:
    env = {**os.environ, "SUDO_USER": sudo_user}
    result = run_module("agent.cli", *args, "--state-dir", str(state_dir), env=env)
    return result.returncode, result.stdout, result.stderr


# -- the requests file ----------------------------------------------------------------


def test_requests_are_remembered_atomically_private_and_pruned(tmp_path: Path) -> None:
    book = SessionRequests(tmp_path, "local")
    now = time.time()
    assert book.remember(requested("ses-000000000001", expires_in=1), now) is not None
    assert book.remember(requested("ses-000000000002"), now) is not None
    assert book.remember(requested("../etc/passwd"), now) is None
    assert book.remember(requested("ses-000000000003", expires_in=-1), now) is None
    path = tmp_path / REQUESTS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [r.session_id for r in book.pending(now)] == ["ses-000000000001", "ses-000000000002"]
    later = now + 5
    assert [r.session_id for r in book.pending(later)] == ["ses-000000000002"]
    book.remember(requested("ses-000000000004"), later)  # a write prunes the expired one
    stored = json.loads(path.read_text())
    assert stored["session_approval"] == "local"
    assert sorted(r["session_id"] for r in stored["requests"]) == [
        "ses-000000000002",
        "ses-000000000004",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".session-requests-")]


def test_a_corrupt_requests_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / REQUESTS_FILE).write_text("{not json")
    with pytest.raises(RequestError, match="cannot read"):
        SessionRequests(tmp_path).pending(time.time())


def test_parse_until() -> None:
    now = 1_000_000.0
    assert parse_until("45m", now) == now + 2700
    moment = dt.datetime(2030, 1, 31, 18, 0, tzinfo=dt.UTC)
    assert parse_until("2030-01-31T18:00:00+00:00", now) == moment.timestamp()
    assert parse_until("2030-01-31T18:00", now) == dt.datetime(2030, 1, 31, 18).timestamp()
    with pytest.raises(RequestError, match="expected a duration"):
        parse_until("tomorrow", now)


# -- the CLI --------------------------------------------------------------------------


def test_approve_session_refuses_an_unknown_id(tmp_path: Path) -> None:
    SessionRequests(tmp_path, "local").remember(requested("ses-aaaaaaaaaaaa"), time.time())
    code, _, err = cli(tmp_path, "approve-session", SESSION)
    assert code == 1
    assert err.strip() == (
        f"error: no pending request {SESSION} is known on this host; is the agent running "
        "and connected? `aftercare-agent sessions` lists them"
    )
    assert not (tmp_path / "session-approvals" / SESSION).exists()


def test_approve_session_records_who_and_until_when(tmp_path: Path) -> None:
    SessionRequests(tmp_path, "either").remember(requested(), time.time())
    before = time.time()
    code, out, err = cli(tmp_path, "approve-session", SESSION, "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["session_id"] == SESSION and answer["approved_by"] == "alice"
    assert answer["engineer"] == requested().engineer  # the approval admits only them
    approval = SessionRequests(tmp_path).approvals.approval(SESSION, time.time())
    assert approval is not None and approval.by == "alice"
    assert approval.binding == requested().engineer
    assert before + 7200 <= approval.until <= time.time() + 7200  # the requested 2h from now
    assert answer["until_unix_ms"] == int(approval.until * 1000)
    directory = tmp_path / "session-approvals"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700

    code, out, _ = cli(tmp_path, "approve-session", SESSION, "--until", "30m")
    assert code == 0 and out.startswith(f"approved {SESSION} for engineer ")
    shorter = SessionRequests(tmp_path).approvals.approval(SESSION, time.time())
    assert shorter is not None and shorter.until <= time.time() + 1800


def test_approve_session_refuses_a_past_end_and_an_expired_request(tmp_path: Path) -> None:
    book = SessionRequests(tmp_path, "local")
    book.remember(requested(), time.time())
    code, _, err = cli(tmp_path, "approve-session", SESSION, "--until", "2001-01-01T00:00")
    assert code == 1 and "must end in the future" in err
    book.remember(requested("ses-bbbbbbbbbbbb", expires_in=0.5), time.time())
    time.sleep(0.6)
    code, _, err = cli(tmp_path, "approve-session", "ses-bbbbbbbbbbbb")
    assert code == 1 and "no pending request ses-bbbbbbbbbbbb" in err


def test_approve_session_refuses_where_local_approvals_do_not_count(tmp_path: Path) -> None:
    SessionRequests(tmp_path, "collector").remember(requested(), time.time())
    code, _, err = cli(tmp_path, "approve-session", SESSION)
    assert code == 1
    assert '[sessions] approval = "collector") does not count approvals given on the host' in err


def test_sessions_lists_pending_requests(tmp_path: Path) -> None:
    book = SessionRequests(tmp_path, "local")
    book.remember(requested(), time.time())
    book.remember(requested("ses-cccccccccccc", duration_ms=30 * 60_000), time.time())
    assert cli(tmp_path, "approve-session", "ses-cccccccccccc")[0] == 0
    code, out, err = cli(tmp_path, "sessions", "--json")
    assert code == 0, err
    listed = {row["session_id"]: row for row in json.loads(out)}
    assert set(listed) == {SESSION, "ses-cccccccccccc"}
    assert listed[SESSION]["engineer"] == "erin" and listed[SESSION]["ticket_id"] == 7
    assert listed[SESSION]["reason"] == "check the query plan"
    assert listed[SESSION]["duration_ms"] == 2 * HOUR_MS
    assert not listed[SESSION]["approved_locally"] and listed[SESSION]["approved_until"] is None
    assert listed["ses-cccccccccccc"]["approved_locally"]
    code, out, _ = cli(tmp_path, "sessions")
    assert code == 0 and f"{SESSION}  erin  for 2h00m ticket 7" in out
    assert "check the query plan" in out and "approved until" in out


def test_sessions_with_nothing_pending(tmp_path: Path) -> None:
    code, out, _ = cli(tmp_path, "sessions")
    assert code == 0 and "no remote-session requests" in out
    code, out, _ = cli(tmp_path, "sessions", "--json")
    assert json.loads(out) == []


# -- the running agent's poll -----------------------------------------------------------


def approvals_sent(agent: Endpoint) -> list[agent_pb2.SessionApproval]:
    return [m.session_approval for m in agent.sent if m.WhichOneof("kind") == "session_approval"]


def test_the_agent_reports_each_local_approval_exactly_once(tmp_path: Path) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend=_NoLogin(), policy="local")
        agent.endpoint.on_message(agent_pb2.CollectorMessage(session_requested=requested()))
        agent.endpoint.start()
        await asyncio.sleep(0.2)
        assert approvals_sent(agent) == []
        code, _, err = await asyncio.to_thread(cli, tmp_path, "approve-session", SESSION)
        assert code == 0, err
        await asyncio.sleep(0.5)  # ten polls
        [sent] = approvals_sent(agent)
        approval = agent.requests.approvals.approval(SESSION, time.time())
        assert approval is not None
        assert (sent.session_id, sent.approved_by) == (SESSION, "alice")
        assert sent.until_unix_ms == int(approval.until * 1000)
        assert agent.requests.pending(time.time())[0].reported_until_ms > 0
        # the collector repeats its request on reconnect: still reported only once
        agent.endpoint.on_message(agent_pb2.CollectorMessage(session_requested=requested()))
        await asyncio.sleep(0.3)
        assert len(approvals_sent(agent)) == 1
        # a new approval (another end) is a new report
        await asyncio.to_thread(cli, tmp_path, "approve-session", SESSION, "--until", "20m")
        await asyncio.sleep(0.3)
        assert len(approvals_sent(agent)) == 2
        await agent.endpoint.close()
        assert any(e["event"] == "approved_locally" for e in agent.journal())

    asyncio.run(test())


@pytest.mark.parametrize("policy", ["collector", "disabled"])
def test_local_approvals_are_not_reported_where_they_do_not_count(
    tmp_path: Path, policy: str
) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend=_NoLogin(), policy=policy)  # type: ignore[arg-type]
        agent.endpoint.on_message(agent_pb2.CollectorMessage(session_requested=requested()))
        agent.requests.approvals.approve(SESSION, time.time() + 60, by="mallory")
        agent.endpoint.start()
        await asyncio.sleep(0.3)
        assert approvals_sent(agent) == []
        await agent.endpoint.close()

    asyncio.run(test())


class _NoLogin:
    """A backend for tests that never get as far as logging in."""

    description = "no login"

    async def login(self, engineer: str) -> Login:
        raise AssertionError("no login expected")


def test_a_closed_session_is_no_longer_pending_on_the_host(tmp_path: Path) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend=_NoLogin(), policy="local")
        agent.endpoint.on_message(agent_pb2.CollectorMessage(session_requested=requested()))
        assert [r.session_id for r in agent.requests.pending(time.time())] == [SESSION]
        close = agent_pb2.SessionClose(session_id=SESSION, reason="denied by alice")
        agent.endpoint.on_message(agent_pb2.CollectorMessage(session_close=close))
        assert agent.requests.pending(time.time()) == []
        await agent.endpoint.close()

    asyncio.run(test())


def test_a_decided_request_is_no_longer_pending_on_the_host(tmp_path: Path) -> None:
    async def test() -> None:
        agent = Endpoint(tmp_path, backend=_NoLogin(), policy="either")
        agent.endpoint.on_message(agent_pb2.CollectorMessage(session_requested=requested()))
        assert [r.session_id for r in agent.requests.pending(time.time())] == [SESSION]
        decided = agent_pb2.SessionDecided(session_id=SESSION, decision="approved", by="user:al")
        agent.endpoint.on_message(agent_pb2.CollectorMessage(session_decided=decided))
        assert agent.requests.pending(time.time()) == []
        await agent.endpoint.close()

    asyncio.run(test())
