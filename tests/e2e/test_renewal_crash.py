"""Certificate renewal survives a crash at every step: the agent reconnects with the
old identity or the new one, never the new key with the old certificate.

The crash is injected in a child process that runs the agent's own
``replace_certificate``: before its k-th file-system call (open, write, fsync,
rename, mkdir, unlink, ...) the child calls ``os._exit``, as a power cut or
``kill -9`` would stop it. Then the identity is loaded and used against a real
collector; for the torn state of the former code (new key, old certificate) a real
agent process is started on it and must deliver batches.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from agent.errors import BrokenIdentity
from agent.identity import load_identity, new_key_and_csr, replace_certificate
from proto import agent_pb2, agent_pb2_grpc
from tests.support import REPO, Agent, Collector, wait_for

CRASH_EXIT = 86

CHILD = r"""
import json, os, sys
from pathlib import Path

state, crash_at, new_path = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
new = json.loads(new_path.read_text())
from agent.identity import replace_certificate

calls = 0

def crashing(fn):
    def wrapper(*args, **kwargs):
        global calls
        calls += 1
        if calls == crash_at:
            os._exit(86)
        return fn(*args, **kwargs)
    return wrapper

for name in ("open", "write", "fsync", "replace", "rename", "mkdir", "rmdir", "unlink",
             "chmod", "link", "symlink"):
    setattr(os, name, crashing(getattr(os, name)))
replace_certificate(state, new["key"].encode(), new["cert"].encode(), new["not_after"], new["now"])
"""


def _renew_over_grpc(collector: Collector, state: Path) -> dict[str, object]:
    """A new key and the certificate the collector issues for it, as the agent gets them."""
    key_pem, csr_pem = new_key_and_csr("web-1")
    creds = grpc.ssl_channel_credentials(
        (state / "ca.pem").read_bytes(),
        (state / "key.pem").read_bytes(),
        (state / "cert.pem").read_bytes(),
    )
    with grpc.secure_channel(collector.agent_address, creds) as channel:
        reply = agent_pb2_grpc.AgentStreamStub(channel).RenewCertificate(
            agent_pb2.RenewRequest(csr_pem=csr_pem), timeout=20
        )
    return {
        "key": key_pem.decode(),
        "cert": reply.certificate_pem.decode(),
        "not_after": reply.certificate_not_after_unix_ms,
        "now": time.time_ns() // 1_000_000,
    }


def _welcome(collector: Collector, ca: bytes, key: bytes, cert: bytes) -> str:
    """Open the control stream with this identity; the agent id in the welcome."""
    creds = grpc.ssl_channel_credentials(ca, key, cert)
    hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(hostname="web-1"))
    with grpc.secure_channel(collector.agent_address, creds) as channel:
        connect = channel.stream_stream(
            "/aftercare.v1.AgentStream/Connect",
            request_serializer=lambda b: b,
            response_deserializer=agent_pb2.CollectorMessage.FromString,
        )
        replies = connect(iter([hello.SerializeToString()]), timeout=20)
        first = next(iter(replies))
        replies.cancel()
    return str(first.welcome.agent_id)


def _crash_at(pristine: Path, target: Path, k: int, new_file: Path) -> int:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(pristine, target)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(target), str(k), str(new_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode in (0, CRASH_EXIT), result.stderr
    return result.returncode


def test_a_crash_at_any_step_of_renewal_leaves_a_working_identity(
    collector: Collector, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    agent = make_agent("web-1")
    assert agent.enroll(collector.join_command("acme")).returncode == 0
    pristine = agent.state_dir
    old = {"key": (pristine / "key.pem").read_bytes(), "cert": (pristine / "cert.pem").read_bytes()}
    ca = (pristine / "ca.pem").read_bytes()
    new = _renew_over_grpc(collector, pristine)
    new_file = tmp_path / "renewed.json"
    new_file.write_text(json.dumps(new))
    new_pair = {"key": str(new["key"]).encode(), "cert": str(new["cert"]).encode()}

    outcomes: list[str] = []
    torn_step = 0
    k = 0
    while True:
        k += 1
        state = tmp_path / f"crash-{k}"
        code = _crash_at(pristine, state, k, new_file)
        on_disk = ((state / "key.pem").read_bytes(), (state / "cert.pem").read_bytes())
        if on_disk == (new_pair["key"], old["cert"]) and not torn_step:
            torn_step = k  # the state that disconnected the former agent for good
            torn = tmp_path / "torn"
            shutil.copytree(state, torn)
        identity = load_identity(state)  # completes or rolls back what the crash left
        pair = {"key": identity.key_pem, "cert": identity.cert_pem}
        assert pair in (old, new_pair), f"crash before call {k}: key and cert do not match"
        outcomes.append("new" if pair == new_pair else "old")
        if pair == new_pair:  # identity.json moved with them
            times = (identity.cert_obtained_ms, identity.cert_not_after_ms)
            assert times == (new["now"], new["not_after"])
        assert not (state / "renewal").exists() and not (state / ".renewal-tmp").exists()
        assert _welcome(collector, ca, identity.key_pem, identity.cert_pem) == agent.agent_id
        if code == 0:
            break  # no k-th call: renewal ran to its end
        assert k < 200, "the renewal never finished"
    assert outcomes[0] == "old" and outcomes[-1] == "new", outcomes
    assert outcomes == sorted(outcomes, key=lambda o: o == "new"), "old until the commit, then new"
    assert torn_step, "some step replaces the key before the certificate"

    # A real agent process started on the torn state reconnects and delivers.
    restarted = Agent(torn, "web-1")
    restarted.start()
    try:
        from collector.store import open_store

        def stored() -> int:
            store = open_store(collector.data_dir)
            try:
                return len(store.stored_sequences(agent.agent_id))
            finally:
                store.close()

        wait_for(lambda: stored() >= 2, 40, "batches from the agent restarted after the crash")
        assert (torn / "cert.pem").read_bytes() == new_pair["cert"]
        assert (torn / "key.pem").read_bytes() == new_pair["key"]
    finally:
        restarted.stop()
        print("--- restarted agent log ---\n" + restarted.log_text()[-3000:])


def test_renewal_files_left_by_the_former_agent_are_completed_or_discarded(
    collector: Collector, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """``*.new`` files of the former two-replace renewal, at both of its crash points."""
    agent = make_agent("web-1")
    assert agent.enroll(collector.join_command("acme")).returncode == 0
    state = agent.state_dir
    new = _renew_over_grpc(collector, state)
    meta = json.loads((state / "identity.json").read_text())
    meta["cert_obtained_ms"] = 7
    for case in ("nothing replaced", "key replaced"):
        target = tmp_path / case.replace(" ", "-")
        shutil.copytree(state, target)
        (target / "key.pem.new").write_text(str(new["key"]))
        (target / "cert.pem.new").write_text(str(new["cert"]))
        (target / "identity.json.new").write_text(json.dumps(meta))
        if case == "key replaced":
            (target / "key.pem.new").replace(target / "key.pem")
        identity = load_identity(target)
        want_new = case == "key replaced"
        assert identity.cert_pem == ((target / "cert.pem").read_bytes())
        assert (identity.key_pem == str(new["key"]).encode()) is want_new
        assert (identity.cert_pem == str(new["cert"]).encode()) is want_new
        assert (identity.cert_obtained_ms == 7) is want_new
        assert not list(target.glob("*.new"))
        ca = (target / "ca.pem").read_bytes()
        assert _welcome(collector, ca, identity.key_pem, identity.cert_pem) == agent.agent_id


def test_a_key_that_does_not_match_the_certificate_is_named_not_retried(
    collector: Collector, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """A certificate the collector issued for another key is refused before anything
    changes; a state directory edited by hand into a mismatch stops the agent with
    BrokenIdentity instead of a reconnect loop."""
    agent = make_agent("web-1")
    assert agent.enroll(collector.join_command("acme")).returncode == 0
    state = agent.state_dir
    before = {name: (state / name).read_bytes() for name in ("key.pem", "cert.pem")}
    new = _renew_over_grpc(collector, state)
    other_key, _ = new_key_and_csr("web-1")
    with pytest.raises(ValueError, match="does not belong"):
        replace_certificate(state, other_key, str(new["cert"]).encode(), 1, 1)
    assert {name: (state / name).read_bytes() for name in before} == before
    assert not (state / ".renewal-tmp").exists() and not (state / "renewal").exists()

    (state / "key.pem").write_bytes(other_key)
    with pytest.raises(BrokenIdentity, match=r"key\.pem does not belong to cert\.pem"):
        load_identity(state)
