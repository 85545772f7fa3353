"""Runs and sessions reach an agent on any replica: two `serve` replicas on one
throwaway PostgreSQL behind a TCP balancer, a real agent and sshd, the stock `ssh`.

The agent dials the balancer, which forwards to replica A; engineers and customers use
replica B only. B sees the agent connected, starts a run that A delivers (B follows it
and shows its output), and an engineer's `ssh` through B's gateway reaches the agent
on A over the replica relay; the recording, made on B, is readable on A; a customer
watches on A what the engineer types through B, and terminating on A ends the
engineer's connection on B. Then A is killed: the balancer
sends the agent to B, and B routes locally.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
import pytest

from collector.pki import REPLICA_NAME, CertificateAuthority
from playbooks.shipped import dev_public_key_path
from proto import agent_pb2, api_pb2, api_pb2_grpc
from tests.gateway_support import BASE_COLLECTOR_ARGS, ssh_options
from tests.pg_cluster import PgCluster
from tests.sshd import RealSshd, keygen
from tests.support import PYTHON, REPO, Agent, Collector, free_port, run, wait_for
from tests.tcp_balancer import TcpBalancer

pytestmark = pytest.mark.skipif(
    shutil.which("ssh") is None, reason="the OpenSSH client is not installed (openssh-client)"
)

REPLICA_FILES = ("ca.pem", "ca-key.pem", "audit-key.pem", "store-url", "admin-token")


@dataclass
class Replicas:
    a: Collector
    b: Collector
    balancer: TcpBalancer
    url: str
    relay_ports: tuple[int, int]


@pytest.fixture
def replicas(pg_cluster: PgCluster, tmp_path: Path) -> Iterator[Replicas]:
    url = pg_cluster.new_database()
    balancer = TcpBalancer("127.0.0.1:1").start()
    ports = (free_port(), free_port())
    common = [*BASE_COLLECTOR_ARGS, "--advertise", balancer.address]
    a = Collector(
        tmp_path / "a",
        extra_args=["--store", url, *common, "--relay-listen", f"127.0.0.1:{ports[0]}"],
    ).start()
    balancer.point_at(a.agent_address)
    (tmp_path / "b").mkdir(mode=0o700)
    for name in REPLICA_FILES:
        shutil.copy2(tmp_path / "a" / name, tmp_path / "b" / name)
    b = Collector(
        tmp_path / "b", extra_args=[*common, "--relay-listen", f"127.0.0.1:{ports[1]}"]
    ).start()
    yield Replicas(a, b, balancer, url, ports)
    balancer.stop()
    for replica in (a, b):
        replica.stop()
        print(f"--- {replica.data_dir.name} log ---\n" + replica.log_text()[-6000:])


def holder_pid(url: str, agent_id: str) -> str | None:
    """The pid of the live replica holding the agent's stream, per the store."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT r.replica FROM agent_presence p JOIN replicas r ON r.replica = p.replica "
            "WHERE p.agent_id = %s AND r.expires_ms > %s",
            (agent_id, int(time.time() * 1000)),
        ).fetchone()
    return None if row is None else str(row[0]).split(":")[1]


def connected(replica: Collector, token: str) -> bool:
    hosts = replica.client_json(token, "agents")
    return bool(hosts and hosts[0]["connected"])


def ssh(
    port: int, key: Path, sid: str, *command: str, stdin: str = "", tty: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", *ssh_options(key), "-p", str(port), "-tt" if tty else "-T", f"{sid}@127.0.0.1",
         *command],
        input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_runs_and_sessions_from_b_reach_the_agent_on_a_then_on_b_after_a_dies(
    replicas: Replicas, tmp_path: Path, make_agent: Callable[..., Agent]
) -> None:
    a, b = replicas.a, replicas.b
    sshd = RealSshd(tmp_path / "sshd")
    sshd.start()
    try:
        policy = tmp_path / "policy.toml"
        policy.write_text('[sessions]\napproval = "collector"\n')
        policy.chmod(0o600)
        agent = make_agent(
            "db-1",
            stream={"max_backoff": "2s"},
            playbooks={"trusted_keys": [str(dev_public_key_path())], "policy": str(policy)},
            sessions={
                "backend": "sshd",
                "sshd_address": f"127.0.0.1:{sshd.port}",
                "user": sshd.user,
                "key_file": str(sshd.client_key),
                "host_key_files": [str(sshd.host_key_pub)],
            },
        )
        assert agent.enroll(a.join_command("acme")).returncode == 0
        agent.start()
        erin = b.add_user("erin", "engineer")
        alice = b.add_user("alice", "customer", "acme")
        key = keygen(tmp_path / "erin_key", "erin")
        assert b.client(erin, "keys", "add", str(key) + ".pub").returncode == 0

        # presence: the agent streams to A; B lists it as connected
        assert a.process is not None and b.process is not None
        a_pid, b_pid = str(a.process.pid), str(b.process.pid)
        wait_for(lambda: holder_pid(replicas.url, agent.agent_id) == a_pid, 30, "the agent on A")
        wait_for(lambda: connected(b, erin), 15, "B to see the agent connected")

        # a run from B: stored by B, delivered by A, followed live and shown on B
        outputs, arrived = follow_json(b, erin, "cpu-load", "--host", "db-1")
        run_id = b.client_json(erin, "runs")[0]["run_id"]
        shown = b.client_json(erin, "run", "show", run_id)
        assert shown["run"]["state"] == "ok" and "load" in shown["output"].lower(), shown
        # live from A's relay (ReplicaRelay.FollowRun): the first chunk (load averages)
        # comes seconds before the run ends (vmstat samples 5 s), each byte once
        assert arrived["finished"] - arrived["first output"] > 2.0, arrived
        assert "".join(outputs) == shown["output"]
        assert f"run {run_id} followed through replica" in b.log_text()
        assert f"message for agent {agent.agent_id} queued for replica" in b.log_text()

        # a session through B's gateway reaches the agent on A over the replica relay
        session = b.client_json(
            erin, "session", "request", "--host", "db-1", "--reason", "slow", "--duration", "1h"
        )
        sid = str(session["session_id"])
        approved = b.client(alice, "session", "approve", sid)
        assert approved.returncode == 0, approved.stderr
        state_dir = str(agent.state_dir)
        wait_for(
            lambda: sid not in run("agent.cli", "sessions", "--state-dir", state_dir).stdout,
            20, "the decision reaching the host on A",
        )  # fmt: skip
        done = ssh(b.ssh_port, key, sid, "echo hello-from-$(whoami)")
        assert done.stdout.strip() == f"hello-from-{sshd.user}", done.stderr
        shell = ssh(b.ssh_port, key, sid, stdin="echo typed-$((6*7))\nexit\n", tty=True)
        assert "typed-42" in shell.stdout, shell.stdout + shell.stderr
        assert f"session {sid} relayed to replica" in b.log_text()

        # the recordings were made on B's disk; A serves them from the store
        assert not list((a.data_dir / "recordings").rglob("*.cast"))
        cast = a.client(alice, "session", "replay", sid, "--part", "2", "--raw")
        assert cast.returncode == 0, cast.stderr
        _, *events = [json.loads(line) for line in cast.stdout.splitlines()]
        assert "typed-42" in "".join(e[2] for e in events if e[1] == "o")

        # the customer terminates on A a session whose engineer is on B's gateway
        other = b.client_json(
            erin, "session", "request", "--host", "db-1", "--reason", "more", "--duration", "1h"
        )
        other_sid = str(other["session_id"])
        assert b.client(alice, "session", "approve", other_sid).returncode == 0
        wait_for(
            lambda: other_sid not in run("agent.cli", "sessions", "--state-dir", state_dir).stdout,
            20, "the second decision reaching the host",
        )  # fmt: skip
        live = subprocess.Popen(
            ["ssh", *ssh_options(key), "-p", str(b.ssh_port), "-tt", f"{other_sid}@127.0.0.1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        watch: subprocess.Popen[str] | None = None
        try:
            wait_for(
                lambda: a.client_json(alice, "session", "show", other_sid)["state"] == "active",
                30, "the engineer logged in through B",
            )  # fmt: skip
            watch = subprocess.Popen(  # the customer watches on A, live
                [PYTHON, "-m", "collector.client.cli", *a.client_options(alice), "session",
                 "watch", other_sid],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            )  # fmt: skip
            time.sleep(1.5)
            assert live.stdin is not None
            live.stdin.write("echo watched-$((7*6))\n")
            live.stdin.flush()
            time.sleep(2.0)
            ended = a.client_json(alice, "session", "terminate", other_sid)
            assert ended["state"] == "terminated"
            out, _ = live.communicate(timeout=20)
            assert "terminated by alice" in out, out
            watched, watch_err = watch.communicate(timeout=20)
            assert "watched-42" in watched, watch_err
            assert watch.returncode == 0
        finally:
            for process in (live, watch):
                if process is not None and process.poll() is None:
                    process.kill()
        assert f"session {other_sid} watched through replica" in a.log_text()

        # A dies: the balancer sends the agent to B, which then routes locally
        a.process.send_signal(signal.SIGKILL)
        a.process.wait()
        replicas.balancer.point_at(b.agent_address)
        wait_for(lambda: holder_pid(replicas.url, agent.agent_id) == b_pid, 60, "the agent on B")
        again = b.client(erin, "run", "cpu-load", "--host", "db-1", "--follow")
        assert again.returncode == 0 and "load" in again.stdout.lower(), again.stderr
        local = ssh(b.ssh_port, key, sid, "echo still-$((40+2))")
        assert local.stdout.strip() == "still-42", local.stderr
        assert b.log_text().count(f"session {sid} relayed to replica") == 2  # not a third
    finally:
        sshd.stop()


def follow_json(
    replica: Collector, user: str, *run_args: str
) -> tuple[list[str], dict[str, float]]:
    """``aftercare run ... --follow --json`` on ``replica``: the output pieces, and when
    (monotonic seconds) the first output and the final state arrived."""
    command = [
        PYTHON, "-m", "collector.client.cli", *replica.client_options(user),
        "run", *run_args, "--follow", "--json",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    outputs: list[str] = []
    arrived: dict[str, float] = {}
    assert process.stdout is not None
    for line in process.stdout:
        event = json.loads(line)
        if "data" in event:
            arrived.setdefault("first output", time.monotonic())
            outputs.append(event["data"])
        elif event.get("state") in ("ok", "failed"):
            arrived["finished"] = time.monotonic()
    assert process.wait(timeout=60) == 0
    return outputs, arrived


def relay_call(
    port: int, ca_pem: bytes, key_pem: bytes | None = None, cert_pem: bytes | None = None
) -> grpc.RpcError:
    """Open a relayed tunnel to an unknown agent with the given client certificate (or
    none); the error the relay answers with."""
    credentials = grpc.ssl_channel_credentials(ca_pem, key_pem, cert_pem)
    options = [("grpc.ssl_target_name_override", REPLICA_NAME)]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        opening = api_pb2.RelayFrame(
            open=api_pb2.RelayOpen(agent_id="no-such-agent", session_id="ses-x", engineer="x")
        )
        replies = api_pb2_grpc.ReplicaRelayStub(channel).Tunnel(iter([opening]), timeout=20)
        with pytest.raises(grpc.RpcError) as raised:
            for reply in replies:
                assert not isinstance(reply, agent_pb2.TunnelFrame), "no tunnel may open"
        error = raised.value
        assert isinstance(error, grpc.RpcError)
        return error


def relay_watch(port: int, ca_pem: bytes, key_pem: bytes, cert_pem: bytes) -> grpc.RpcError:
    """Ask the relay for a session's live events with the given client certificate; the
    error it answers with."""
    credentials = grpc.ssl_channel_credentials(ca_pem, key_pem, cert_pem)
    options = [("grpc.ssl_target_name_override", REPLICA_NAME)]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        events = api_pb2_grpc.ReplicaRelayStub(channel).Watch(
            api_pb2.RelayWatchRequest(session_id="ses-x"), timeout=20
        )
        with pytest.raises(grpc.RpcError) as raised:
            for event in events:
                raise AssertionError(f"an event leaked: {event}")
        error = raised.value
        assert isinstance(error, grpc.RpcError)
        return error


def relay_follow_run(port: int, ca_pem: bytes, key_pem: bytes, cert_pem: bytes) -> grpc.RpcError:
    """Ask the relay for a run's live output with the given client certificate; the
    error it answers with."""
    credentials = grpc.ssl_channel_credentials(ca_pem, key_pem, cert_pem)
    options = [("grpc.ssl_target_name_override", REPLICA_NAME)]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        pieces = api_pb2_grpc.ReplicaRelayStub(channel).FollowRun(
            api_pb2.RelayFollowRunRequest(run_id="run-x"), timeout=20
        )
        with pytest.raises(grpc.RpcError) as raised:
            for piece in pieces:
                raise AssertionError(f"output leaked: {piece}")
        error = raised.value
        assert isinstance(error, grpc.RpcError)
        return error


def test_an_agent_certificate_cannot_use_the_replica_relay(
    replicas: Replicas, make_agent: Callable[..., Agent]
) -> None:
    """Attack: an enrolled agent (its certificate is from the same CA) dials the relay
    to reach another host's agent. It is refused; a replica's certificate is not."""
    agent = make_agent("web-1")
    assert agent.enroll(replicas.a.join_command("acme")).returncode == 0
    ca_pem = (replicas.a.data_dir / "ca.pem").read_bytes()
    port = replicas.relay_ports[0]
    stolen = relay_call(
        port,
        ca_pem,
        (agent.state_dir / "key.pem").read_bytes(),
        (agent.state_dir / "cert.pem").read_bytes(),
    )
    assert stolen.code() == grpc.StatusCode.PERMISSION_DENIED, stolen
    assert "only collector replicas" in (stolen.details() or "")
    watched = relay_watch(
        port,
        ca_pem,
        (agent.state_dir / "key.pem").read_bytes(),
        (agent.state_dir / "cert.pem").read_bytes(),
    )
    assert watched.code() == grpc.StatusCode.PERMISSION_DENIED, watched
    followed = relay_follow_run(
        port,
        ca_pem,
        (agent.state_dir / "key.pem").read_bytes(),
        (agent.state_dir / "cert.pem").read_bytes(),
    )
    assert followed.code() == grpc.StatusCode.PERMISSION_DENIED, followed

    ca = CertificateAuthority(ca_pem, (replicas.a.data_dir / "ca-key.pem").read_bytes())
    cert_pem, key_pem = ca.issue_replica_certificate("test-replica", dt.timedelta(hours=1))
    replica = relay_call(port, ca_pem, key_pem, cert_pem)
    assert replica.code() != grpc.StatusCode.PERMISSION_DENIED  # passed the check
    assert "not connected" in (replica.details() or ""), replica.details()
    nothing_live = relay_watch(port, ca_pem, key_pem, cert_pem)
    assert nothing_live.code() == grpc.StatusCode.NOT_FOUND, nothing_live
    no_run = relay_follow_run(port, ca_pem, key_pem, cert_pem)
    assert no_run.code() == grpc.StatusCode.NOT_FOUND, no_run

    anonymous = relay_call(port, ca_pem)  # no client certificate: TLS refuses
    assert anonymous.code() == grpc.StatusCode.UNAVAILABLE, anonymous
