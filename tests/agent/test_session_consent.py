"""Attacks on remote-session admission: a breached collector asks, but cannot consent.

A real SessionEndpoint with the real PTY backend gets ``SessionOpen`` messages as a
collector holding the real server key would send them. Each refusal is asserted by
the tunnel's end reason, by the host's own ``sessions.log``, and by nothing running
(a command that would create a marker file).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from agent.config import SessionsConfig
from agent.playbook.policy import SessionApprovalMode
from agent.session.requests import SessionRequests
from agent.session.setup import build_backend
from agent.session.window import iso_time
from common.approval_format import SessionSubject
from proto import agent_pb2
from tests.agent.session_support import AGENT_ID, CUSTOMER, SESSION, Endpoint
from tests.consent_support import Approver, CustomerRoot, now_ms

SHELL = "/bin/sh"


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


def endpoint(tmp_path: Path, policy: SessionApprovalMode, root: str = "") -> Endpoint:
    backend = build_backend(SessionsConfig(backend="pty", shell=SHELL))
    return Endpoint(tmp_path, backend, policy, root=root)


async def try_login(agent: Endpoint, marker: Path, **open_args: object) -> str | None:
    """Open a tunnel and try to create ``marker``; the end reason if the host refused."""
    tunnel = await agent.open(**open_args)  # type: ignore[arg-type]
    tunnel.send(open=agent_pb2.ChannelOpen(channel=1, kind="exec", command=f"touch {marker}"))
    frame = await tunnel.next()
    try:
        if frame is not None and frame.WhichOneof("kind") == "end":
            assert not marker.exists()
            return frame.end.reason
        assert frame is not None and frame.opened.error == "", frame
        await tunnel.until_closed(1)
        tunnel.close()
        return None
    finally:
        await agent.endpoint.close()


def session(
    window_s: float = 600, session_id: str = SESSION, engineer: str = "erin"
) -> SessionSubject:
    return SessionSubject(session_id, engineer, now_ms() + int(window_s * 1000))


def test_a_session_nobody_requested_is_refused_by_default(tmp_path: Path) -> None:
    """Default policy, no pinned root: a fabricated SessionOpen opens nothing."""

    async def test() -> None:
        agent = endpoint(tmp_path, "signed")
        reason = await try_login(agent, tmp_path / "marker")
        assert reason is not None and "pins no customer approval root" in reason
        assert agent.journal()[-1]["event"] == "tunnel_refused"

    run(test)


def test_a_signed_approval_opens_the_login_until_its_window_end(tmp_path: Path) -> None:
    root = CustomerRoot(CUSTOMER)
    alice = root.certify("alice")
    subject = session(window_s=120)

    async def test() -> None:
        agent = endpoint(tmp_path, "signed", root.fingerprint)
        signed = alice.approve(AGENT_ID, subject, expires_ms=subject.window_end_ms)
        reason = await try_login(agent, tmp_path / "marker", signed_approval=signed)
        assert reason is None
        assert (tmp_path / "marker").exists()
        opened = next(e for e in agent.journal() if e["event"] == "tunnel_opened")
        assert opened["approved_by"] == "signed by alice of acme"
        # the collector claimed 300 s; the customer signed 120 s: the host keeps 120 s
        assert opened["window_end"] == iso_time(subject.window_end_ms / 1000)

    run(test)


def test_an_engineer_may_reconnect_with_the_same_approval(tmp_path: Path) -> None:
    root = CustomerRoot(CUSTOMER)
    signed = root.certify("alice").approve(AGENT_ID, session())

    async def test() -> None:
        for attempt in range(2):
            agent = endpoint(tmp_path, "signed", root.fingerprint)
            marker = tmp_path / f"marker-{attempt}"
            tunnel_id = f"tun-000{attempt}"
            assert (
                await try_login(agent, marker, signed_approval=signed, tunnel_id=tunnel_id) is None
            )

    run(test)


def _attack(name: str, root: CustomerRoot, alice: Approver) -> tuple[bytes, str]:
    if name == "unsigned":
        return b"", "not signed by a customer approver"
    if name == "forged signature":
        return alice.approve(AGENT_ID, session(), signer=CustomerRoot().key), "does not verify"
    if name == "uncertified key":
        stranger = CustomerRoot(CUSTOMER).certify("alice")
        return stranger.approve(AGENT_ID, session()), "not by the root this host pins"
    if name == "another host":
        return alice.approve("agt-9", session()), "host agent id 'agt-9'"
    if name == "another session":
        other = session(session_id="ses-ffffffffffff")
        return alice.approve(AGENT_ID, other), "session_id 'ses-ffffffffffff'"
    if name == "another engineer":
        return alice.approve(AGENT_ID, session(engineer="mallory")), "engineer 'mallory'"
    if name == "a run approval":
        from common.approval_format import RunSubject

        run_subject = RunSubject("run-1", "x", "1.0.0", "sha256:" + "0" * 64, {})
        return alice.approve(AGENT_ID, run_subject), "for a playbook run"
    if name == "expired":
        return alice.approve(AGENT_ID, session(), expires_ms=now_ms() - 1), "expired"
    if name == "window over":
        return alice.approve(AGENT_ID, session(window_s=-5)), "access window ended"
    raise AssertionError(name)


ATTACKS = [
    "unsigned",
    "forged signature",
    "uncertified key",
    "another host",
    "another session",
    "another engineer",
    "a run approval",
    "expired",
    "window over",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_breached_collector_cannot_open_a_login(tmp_path: Path, attack: str) -> None:
    root = CustomerRoot(CUSTOMER)
    alice = root.certify("alice")
    signed, expected = _attack(attack, root, alice)

    async def test() -> None:
        agent = endpoint(tmp_path, "signed", root.fingerprint)
        reason = await try_login(agent, tmp_path / "marker", signed_approval=signed)
        assert reason is not None and expected in reason, reason
        refusal = agent.journal()[-1]
        assert refusal["event"] == "tunnel_refused" and expected in refusal["reason"]

    run(test)


def test_a_revoked_approver_cannot_open_a_login(tmp_path: Path) -> None:
    root = CustomerRoot(CUSTOMER)
    alice = root.certify("alice")

    async def test() -> None:
        agent = endpoint(tmp_path, "signed", root.fingerprint)
        revoke = agent_pb2.ApproverRevocations(revocations=[root.revoke(alice)])
        assert agent.endpoint._consent.add_revocations(revoke.revocations) == 1
        reason = await try_login(
            agent, tmp_path / "marker", signed_approval=alice.approve(AGENT_ID, session())
        )
        assert reason is not None and "revoked" in reason

    run(test)


def test_a_local_approval_counts_only_for_the_engineer_it_was_given_for(tmp_path: Path) -> None:
    """Approved on the host for erin; the collector sends the same session for mallory."""

    async def test() -> None:
        agent = endpoint(tmp_path, "local")
        requested = agent_pb2.SessionRequested(
            session_id=SESSION,
            engineer="erin",
            reason="disk",
            duration_ms=600_000,
            pending_expires_unix_ms=now_ms() + 600_000,
        )
        agent.requests.remember(requested, time.time())
        SessionRequests(tmp_path).approve(SESSION, None, "root", time.time())
        reason = await try_login(agent, tmp_path / "marker", engineer="mallory")
        assert reason is not None and "engineer 'mallory'" in reason
        agent = endpoint(tmp_path, "local")
        assert await try_login(agent, tmp_path / "marker", engineer="erin") is None

    run(test)


def test_the_collectors_word_opens_a_login_only_where_the_customer_wrote_collector(
    tmp_path: Path,
) -> None:
    async def test() -> None:
        assert await try_login(endpoint(tmp_path, "collector"), tmp_path / "marker") is None

    run(test)
