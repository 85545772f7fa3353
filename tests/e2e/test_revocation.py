"""Revocation reaches a live connection: `aftercare-collector agent revoke` (which writes
the store directly) ends the agent's open control stream within an evaluation
interval, nothing it sends afterwards is stored, and it is no target for runs or
sessions any more."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.gateway_support import World, make_world
from tests.support import Agent, Collector, wait_for


def _stored(collector: Collector, agent_id: str) -> int:
    from collector.store import open_store

    store = open_store(collector.data_dir)
    try:
        return len(store.stored_sequences(agent_id))
    finally:
        store.close()


def test_revoke_ends_the_live_stream_and_refuses_runs_and_sessions(
    tmp_path: Path, make_agent: Callable[..., Agent]
) -> None:
    collector = Collector(
        tmp_path / "collector", extra_args=["--evaluation-interval", "1s"]
    ).start()
    try:
        agent = make_agent("web-1")
        assert agent.enroll(collector.join_command("acme")).returncode == 0
        agent.start()
        erin = collector.add_user("erin", "engineer")
        wait_for(lambda: _stored(collector, agent.agent_id) >= 2, 30, "batches before revoking")

        result = collector.admin("agent", "revoke", agent.agent_id)
        assert result.returncode == 0, result.stderr
        revoked_at = time.monotonic()
        wait_for(
            lambda: "ending the stream of agent" in collector.log_text(),
            20,
            "the collector to end the revoked agent's stream",
        )
        print(f"stream ended {time.monotonic() - revoked_at:.1f}s after the revoke")
        wait_for(
            lambda: "collector refused this agent" in agent.log_text(),
            20,
            "the agent to see it was refused",
        )
        count = _stored(collector, agent.agent_id)
        time.sleep(4)  # the agent samples every second: four more batches if still acked
        assert _stored(collector, agent.agent_id) == count, "batches stored after revocation"
        assert agent.status()["spool"]["entries"] >= 2, "the agent keeps them: not acked"

        run = collector.client(erin, "run", "cpu-load", "--host", "web-1")
        assert run.returncode != 0
        assert "agent revoked" in run.stderr and "FAILED_PRECONDITION" in run.stderr, run.stderr
        session = collector.client(
            erin, "session", "request", "--host", "web-1", "--reason", "look"
        )
        assert session.returncode != 0
        assert "agent revoked" in session.stderr, session.stderr
        assert "FAILED_PRECONDITION" in session.stderr, session.stderr
        assert collector.client_json(erin, "runs") == [], "no run was recorded or delivered"

        [shown] = collector.client_json(collector.admin_token, "agents")
        assert shown["revoked"] is True and shown["connected"] is False
        table = collector.client(collector.admin_token, "agents")
        assert "revoked" in table.stdout, table.stdout
    finally:
        collector.stop()
        print("--- collector log ---\n" + collector.log_text()[-5000:])


@pytest.fixture
def world(tmp_path: Path, make_agent: Callable[..., Agent]) -> Iterator[World]:
    yield from make_world(tmp_path, make_agent)


@pytest.mark.skipif(shutil.which("ssh") is None, reason="the OpenSSH client is not installed")
def test_revoke_ends_a_live_remote_session(world: World) -> None:
    """An engineer logged in through the gateway (real sshd, stock ssh) is cut off when
    the host's agent is revoked: its tunnel closes with the control stream."""
    sid = world.request()
    world.approve(sid)
    shell = subprocess.Popen(
        world.ssh_args("erin", sid, tty=True),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: world.session(sid)["state"] == "active", 30, "engineer logged in")
        revoked = world.collector.admin("agent", "revoke", world.agent.agent_id)
        assert revoked.returncode == 0, revoked.stderr
        shell.communicate(timeout=30)  # the login ends without the engineer's doing
        assert "and 1 tunnel(s)" in world.collector.log_text()
    finally:
        if shell.poll() is None:
            shell.kill()
    again = world.ssh("erin", sid, "true")
    assert again.returncode == 255, again.stdout + again.stderr
