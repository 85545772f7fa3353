"""Customer-signed approvals end to end: a real collector, the real ``aftercare`` CLI,
and a scripted agent (an enrolled identity speaking the control stream) whose hello
pins the customer's approval root, so what the collector forwards can be checked.

Attacks are tests: forged or mismatched documents are refused by the collector with
a clear error (hosts verify again; that is the agent's side).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import queue
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.store import SQLiteStore
from common.approval_format import (
    Approval,
    ApproverCertificate,
    Revocation,
    RunSubject,
    SessionSubject,
    SignedDocument,
    bundle,
    fingerprint,
    seal,
    unbundle,
)
from playbooks.sign import write_signed_catalogue
from playbooks.signing_keys import generate_keypair
from proto import agent_pb2, agent_pb2_grpc, api_pb2, api_pb2_grpc
from tests.support import Agent, Collector, run, wait_for

PLAYBOOK = """name: rotate-marker
version: 1.2.0
description: A mutating playbook with a secret parameter (for tests).
mode: mutating
parameters:
  - name: target
    type: string
    pattern: '[a-z]+'
    required: true
  - name: token
    type: string
    pattern: '[A-Za-z0-9]{8,64}'
    secret: true
    required: true
steps:
  - name: touch
    exec:
      argv: ["true", "{{ target }}"]
      env: {TOKEN: "{{ token }}"}
"""


def NOW() -> int:
    return int(time.time() * 1000)


# -- helpers ---------------------------------------------------------------------------


def raw(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def certify(
    root: Ed25519PrivateKey,
    key: Ed25519PrivateKey,
    name: str = "alice",
    customer: str = "acme",
    claimed_root: bytes | None = None,
) -> SignedDocument:
    body = ApproverCertificate(
        customer, name, raw(key), claimed_root or raw(root), NOW() - 1000, NOW() + 86_400_000
    ).body()
    return seal(body, root.sign)


def approve_doc(
    key: Ed25519PrivateKey,
    certificate: SignedDocument,
    agent_id: str,
    subject: SessionSubject | RunSubject,
    customer: str = "acme",
    name: str = "alice",
) -> bytes:
    approval = Approval(
        customer, agent_id, name, subject, NOW(), NOW() + 3_600_000, secrets.token_hex(16)
    )
    return bundle(seal(approval.body(), key.sign), certificate)


class Api:
    """Direct API calls as one user (for documents the CLI would never make)."""

    def __init__(self, collector: Collector, token: str) -> None:
        creds = grpc.ssl_channel_credentials((collector.data_dir / "ca.pem").read_bytes())
        self._channel = grpc.secure_channel(collector.api, creds)
        self._stub = api_pb2_grpc.ApiStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),)

    def __call__(self, method: str, request: Any) -> Any:
        return getattr(self._stub, method)(request, metadata=self._metadata, timeout=10)

    def refused(self, method: str, request: Any) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as info:
            self(method, request)
        error: Any = info.value
        return error.code(), error.details()

    def close(self) -> None:
        self._channel.close()


@dataclass
class ScriptedAgent:
    """An enrolled agent identity on the control stream: sends what the test says,
    keeps everything the collector sends."""

    collector: Collector
    identity: Agent
    approval_root: str
    outgoing: queue.Queue[agent_pb2.AgentMessage | None] = field(default_factory=queue.Queue)
    received: list[agent_pb2.CollectorMessage] = field(default_factory=list)

    def start(self) -> ScriptedAgent:
        state = self.identity.state_dir
        creds = grpc.ssl_channel_credentials(
            (state / "ca.pem").read_bytes(),
            (state / "key.pem").read_bytes(),
            (state / "cert.pem").read_bytes(),
        )
        self._channel = grpc.secure_channel(self.collector.agent_address, creds)
        hello = agent_pb2.Hello(
            hostname=self.identity.hostname,
            agent_version="test",
            session_approval="collector",
            approval_root=self.approval_root,
        )
        self.outgoing.put(agent_pb2.AgentMessage(hello=hello))
        stub = agent_pb2_grpc.AgentStreamStub(self._channel)
        self._call = stub.Connect(iter(self.outgoing.get, None))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for(lambda: self.of("welcome"), 10, "welcome")
        return self

    def _read(self) -> None:
        try:
            for message in self._call:
                self.received.append(message)
        except grpc.RpcError:
            pass

    def of(self, kind: str) -> list[Any]:
        return [getattr(m, kind) for m in list(self.received) if m.WhichOneof("kind") == kind]

    def send(self, message: agent_pb2.AgentMessage) -> None:
        self.outgoing.put(message)

    def stop(self) -> None:
        self.outgoing.put(None)
        self._call.cancel()
        self._channel.close()


@dataclass
class Site:
    collector: Collector
    tmp: Path
    tokens: dict[str, str]
    agent: ScriptedAgent
    root_fp: str

    def cli(self, user: str, home: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("AFTERCARE_")}
        environ.update(HOME=str(self.tmp / home), **env)
        options = self.collector.client_options(self.tokens[user]) if user else []
        return run("collector.client.cli", *options, *args, env=environ)

    def cli_json(self, user: str, home: str, *args: str) -> Any:
        result = self.cli(user, home, *args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def home(self, name: str) -> Path:
        return self.tmp / name / ".config" / "aftercare"


@pytest.fixture
def site(tmp_path: Path, make_agent: Callable[..., Agent]) -> Iterator[Site]:
    """A collector serving a mutating playbook; users; the admin's root created with
    the CLI; a scripted agent of acme pinning that root; alice's key certified."""
    private, _ = generate_keypair()  # the scripted agent does not verify playbooks
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    (catalogue / "rotate-marker.yaml").write_text(PLAYBOOK)
    write_signed_catalogue(catalogue, private, catalogue_version=1, valid_for=dt.timedelta(days=1))
    collector = Collector(tmp_path / "collector", extra_args=["--playbooks", str(catalogue)])
    collector.start()
    tokens = {
        "erin": collector.add_user("erin", "engineer"),
        "carol": collector.add_user("carol", "customer", customer="acme"),
        "alice": collector.add_user("alice", "customer", customer="acme"),
        "mallory": collector.add_user("mallory", "customer", customer="globex"),
    }
    identity = make_agent("db-1")
    assert identity.enroll(collector.join_command("acme")).returncode == 0
    site = Site(collector, tmp_path, tokens, None, "")  # type: ignore[arg-type]
    init = site.cli_json("", "carol", "approvers", "init")
    site.root_fp = init["root_fingerprint"]
    site.agent = ScriptedAgent(collector, identity, site.root_fp).start()
    key = site.cli_json("", "alice", "approvers", "key")
    added = site.cli_json(
        "carol",
        "carol",
        "approvers",
        "add",
        "alice",
        "--key",
        key["public_key"],
        "--customer",
        "acme",
    )
    assert added["uploaded"] and added["approver"]["name"] == "alice"
    try:
        yield site
    finally:
        site.agent.stop()
        collector.stop()
        print("--- collector log ---\n" + collector.log_text()[-6000:])


def root_key(site: Site) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(
        (site.home("carol") / "approval-root.key").read_bytes(), None
    )
    assert isinstance(key, Ed25519PrivateKey)
    return key


def alice_key(site: Site) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(
        (site.home("alice") / "approval.key").read_bytes(), None
    )
    assert isinstance(key, Ed25519PrivateKey)
    return key


# -- keys, certificates, revocations ----------------------------------------------------


def test_key_files_are_private_and_never_overwritten(site: Site) -> None:
    root_file = site.home("carol") / "approval-root.key"
    assert root_file.stat().st_mode & 0o777 == 0o600
    assert (site.home("alice") / "approval.key").stat().st_mode & 0o777 == 0o600
    again = site.cli("", "carol", "approvers", "init")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert site.collector.client_json(site.tokens["erin"], "agents")[0]["approval_root"] == (
        site.root_fp
    )
    text = site.cli("", "carol2", "approvers", "init")
    assert "--approver-root sha256:" in text.stdout and "[approvals]" in text.stdout


def test_add_refuses_private_keys_garbage_and_open_key_files(site: Site) -> None:
    pem = (site.home("alice") / "approval.key").read_text()
    for bad, message in ((pem, "that is a private key"), ("hello", "not an approval public key")):
        result = site.cli(
            "carol", "carol", "approvers", "add", "x", "--key", bad, "--customer", "acme"
        )
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert "PRIVATE KEY" not in result.stderr
    public = base64.b64encode(raw(Ed25519PrivateKey.generate())).decode()
    (site.home("carol") / "approval-root.key").chmod(0o644)
    open_file = site.cli(
        "carol", "carol", "approvers", "add", "bob", "--key", public, "--customer", "acme"
    )
    assert open_file.returncode == 1 and "chmod 600" in open_file.stderr
    (site.home("carol") / "approval-root.key").chmod(0o600)
    offline = site.cli(
        "", "carol", "approvers", "add", "bob", "--key", public, "--customer", "acme"
    )
    assert offline.returncode == 0, offline.stderr
    assert "not uploaded" in offline.stderr
    document = SignedDocument.parse(offline.stdout.strip().encode())
    assert json.loads(document.body)["approver"] == "bob"


def test_only_the_customers_own_users_add_and_revoke_with_signed_documents(site: Site) -> None:
    public = base64.b64encode(raw(Ed25519PrivateKey.generate())).decode()
    args = ("approvers", "add", "bob", "--key", public)
    engineer = site.cli("erin", "carol", *args, "--customer", "acme")
    assert engineer.returncode == 1 and "PERMISSION_DENIED" in engineer.stderr
    other = site.cli("mallory", "carol", *args, "--customer", "acme")
    assert other.returncode == 1 and "may not add approvers for customer 'acme'" in other.stderr
    listed = site.cli_json("erin", "x", "approvers", "list")
    assert [(a["customer"], a["name"], a["revoked"]) for a in listed] == [("acme", "alice", None)]
    assert site.cli_json("mallory", "x", "approvers", "list") == []

    api = Api(site.collector, site.tokens["carol"])
    root, stranger = root_key(site), Ed25519PrivateKey.generate()
    key = Ed25519PrivateKey.generate()
    tampered = certify(root, key)
    tampered = SignedDocument(tampered.body.replace(b"alice", b"mario"), tampered.signature)
    code, details = api.refused(
        "AddApprover", api_pb2.AddApproverRequest(certificate=tampered.encode())
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED and "does not verify" in details
    claimed = certify(
        stranger, key, claimed_root=raw(root)
    )  # names carol's root, signed by another
    code, details = api.refused(
        "AddApprover", api_pb2.AddApproverRequest(certificate=claimed.encode())
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED and "the root it names" in details
    code, _ = api.refused("AddApprover", api_pb2.AddApproverRequest(certificate=b"{nonsense"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    alice = raw(alice_key(site))
    by_stranger = seal(Revocation("acme", alice, raw(stranger), NOW()).body(), stranger.sign)
    code, details = api.refused(
        "RevokeApprover", api_pb2.RevokeApproverRequest(revocation=by_stranger.encode())
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED and "revoke with that root" in details
    api.close()
    assert site.cli_json("erin", "x", "approvers", "list")[0]["revoked"] is None
    audit = [
        e["action"] for e in json.loads(site.collector.admin("audit", "list", "--json").stdout)
    ]
    assert audit.count("approver.added") == 1 and "approver.revoked" not in audit


def test_revoke_signs_uploads_and_reaches_the_hosts(site: Site) -> None:
    assert site.agent.of("approver_revocations") == []
    refused = site.cli("alice", "alice", "approvers", "revoke", "alice", "--customer", "acme")
    assert refused.returncode == 1 and "approval-root.key" in refused.stderr  # no root key
    revoked = site.cli_json(
        "carol", "carol", "approvers", "revoke", "alice", "--customer", "acme", "--reason", "left"
    )
    assert revoked["name"] == "alice" and revoked["revoked"] is not None
    [sent] = wait_for(lambda: site.agent.of("approver_revocations"), 10, "revocations sent")
    [document] = sent.revocations
    body = json.loads(SignedDocument.parse(document).body)
    assert (body["customer"], body["reason"], body["key"]) == (
        "acme",
        "left",
        base64.b64encode(raw(alice_key(site))).decode(),
    )
    later = ScriptedAgent(site.collector, site.agent.identity, site.root_fp).start()
    try:
        wait_for(lambda: later.of("approver_revocations"), 10, "revocations on connect")
        kinds = [m.WhichOneof("kind") for m in later.received]
        assert kinds[:2] == ["welcome", "approver_revocations"]
    finally:
        later.stop()
    audit = [
        e["action"] for e in json.loads(site.collector.admin("audit", "list", "--json").stdout)
    ]
    assert "approver.revoked" in audit
    # A revoked approver can no longer approve (the collector refuses early).
    sid = _request_session(site)
    result = site.cli("alice", "alice", "session", "approve", sid)
    assert result.returncode == 1 and "was revoked" in result.stderr
    key = alice_key(site)
    signed = approve_doc(
        key,
        certify(root_key(site), key),
        site.agent.identity.agent_id,
        SessionSubject(sid, "erin", NOW() + 600_000),
    )
    api = Api(site.collector, site.tokens["alice"])
    code, details = api.refused(
        "DecideSession",
        api_pb2.DecideSessionRequest(session_id=sid, decision="approve", signed_approval=signed),
    )
    api.close()
    assert code == grpc.StatusCode.PERMISSION_DENIED and "was revoked" in details


# -- sessions --------------------------------------------------------------------------


def _request_session(site: Site, duration: str = "1h") -> str:
    wait_for(
        lambda: site.collector.client_json(site.tokens["erin"], "agents")[0]["connected"],
        10,
        "agent connected",
    )
    info = site.collector.client_json(
        site.tokens["erin"],
        "session",
        "request",
        "--host",
        "db-1",
        "--reason",
        "look",
        "--duration",
        duration,
    )
    return str(info["session_id"])


def test_signed_session_approval_is_checked_stored_and_kept_for_session_open(site: Site) -> None:
    sid = _request_session(site)
    agent_id = site.agent.identity.agent_id
    no_key = site.cli("alice", "nobody", "session", "approve", sid)
    assert no_key.returncode == 1 and "aftercare approvers key" in no_key.stderr
    api = Api(site.collector, site.tokens["alice"])
    code, details = api.refused(
        "DecideSession", api_pb2.DecideSessionRequest(session_id=sid, decision="approve")
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "aftercare approvers key" in details

    key, cert = alice_key(site), certify(root_key(site), alice_key(site))
    end = NOW() + 30 * 60_000
    good = SessionSubject(sid, "erin", end)
    attacks = {
        "another session": approve_doc(
            key, cert, agent_id, SessionSubject("ses-000000000000", "erin", end)
        ),
        "another engineer": approve_doc(key, cert, agent_id, SessionSubject(sid, "mallory", end)),
        "another host": approve_doc(key, cert, "other-host", good),
        "longer window": approve_doc(
            key, cert, agent_id, SessionSubject(sid, "erin", NOW() + 3 * 3_600_000)
        ),
        "forged": approve_doc(Ed25519PrivateKey.generate(), cert, agent_id, good),
        "another root": approve_doc(
            key, certify(Ed25519PrivateKey.generate(), key), agent_id, good
        ),
        "a run": approve_doc(key, cert, agent_id, RunSubject(sid, "p", "1", "sha256:x", {})),
    }
    reasons = {}
    for name, data in attacks.items():
        request = api_pb2.DecideSessionRequest(
            session_id=sid, decision="approve", signed_approval=data
        )
        code, details = api.refused("DecideSession", request)
        assert code == grpc.StatusCode.PERMISSION_DENIED, (name, details)
        reasons[name] = details
    assert "is for session ses-000000000000" in reasons["another session"]
    assert "'mallory'" in reasons["another engineer"]
    assert "for host 'other-host'" in reasons["another host"]
    assert "can only shorten the window" in reasons["longer window"]
    assert "does not verify" in reasons["forged"]
    assert f"pins {site.root_fp}" in reasons["another root"]
    api.close()

    # Another root via the CLI: bob's key certified by a root the host does not pin.
    site.cli_json("", "other-admin", "approvers", "init")
    bob = site.cli_json("", "bob", "approvers", "key")
    certified = site.cli(
        "",
        "other-admin",
        "approvers",
        "add",
        "bob",
        "--key",
        bob["public_key"],
        "--customer",
        "acme",
        "--out",
        str(site.home("bob") / "approval.cert"),
    )
    assert certified.returncode == 0, certified.stderr
    wrong_root = site.cli("alice", "bob", "session", "approve", sid)
    assert wrong_root.returncode == 1 and f"this host pins {site.root_fp}" in wrong_root.stderr
    (site.home("alice") / "approval.key").chmod(0o640)
    open_key = site.cli("alice", "alice", "session", "approve", sid)
    assert open_key.returncode == 1 and "chmod 600" in open_key.stderr
    (site.home("alice") / "approval.key").chmod(0o600)

    # The genuine path: the certificate comes from the collector (no file beside the key).
    approved = site.cli_json("alice", "alice", "session", "approve", sid, "--until", "20m")
    assert approved["state"] == "approved" and approved["approved_by"] == "alice"
    store = SQLiteStore(site.collector.data_dir / "aftercare.db")
    try:
        session = store.get_session(sid)
    finally:
        store.close()
    assert session is not None and session.signed_approval
    approval_doc, certificate_doc = unbundle(session.signed_approval)
    statement = Approval.from_body(json.loads(approval_doc.body))
    assert statement.subject == SessionSubject(sid, "erin", session.window_end_ms or 0)
    assert statement.agent_id == agent_id and statement.customer == "acme"
    assert abs((session.window_end_ms or 0) - (NOW() + 20 * 60_000)) < 60_000
    assert json.loads(certificate_doc.body)["approver"] == "alice"


def test_unpinned_hosts_still_take_unsigned_approvals(
    site: Site, make_agent: Callable[..., Agent]
) -> None:
    identity = make_agent("web-2")
    assert identity.enroll(site.collector.join_command("acme")).returncode == 0
    unpinned = ScriptedAgent(site.collector, identity, "").start()
    try:
        info = site.collector.client_json(
            site.tokens["erin"], "session", "request", "--host", "web-2", "--reason", "r"
        )
        approved = site.cli_json("alice", "nobody", "session", "approve", info["session_id"])
        assert approved["state"] == "approved"
    finally:
        unpinned.stop()


# -- runs ------------------------------------------------------------------------------


def _waiting_run(site: Site) -> tuple[str, agent_pb2.RunRequest]:
    wait_for(
        lambda: site.collector.client_json(site.tokens["erin"], "agents")[0]["connected"],
        10,
        "agent connected",
    )
    info = site.collector.client_json(
        site.tokens["erin"],
        "run",
        "rotate-marker",
        "--host",
        "db-1",
        "--param",
        "target=nginx",
        "--param",
        "token=Sup3rSecret99",
    )
    run_id = info["run_id"]
    [request] = wait_for(
        lambda: [r for r in site.agent.of("run_request") if r.run_id == run_id], 10, "run sent"
    )
    site.agent.send(
        agent_pb2.AgentMessage(
            run_update=agent_pb2.RunUpdate(run_id=run_id, state="waiting_approval")
        )
    )
    wait_for(
        lambda: (
            site.collector.client_json(site.tokens["erin"], "run", "show", run_id)["run"]["state"]
            == "waiting_approval"
        ),
        10,
        "waiting for approval",
    )
    return run_id, request


def test_signed_run_approval_binds_the_exact_run_and_is_forwarded(site: Site) -> None:
    run_id, request = _waiting_run(site)
    shown = site.collector.client_json(site.tokens["alice"], "run", "show", run_id)["run"]
    digest = "sha256:" + hashlib.sha256(request.playbook_yaml).hexdigest()
    secret_hash = "sha256:" + hashlib.sha256(b"Sup3rSecret99").hexdigest()
    assert shown["playbook_digest"] == digest
    assert shown["bound_params"] == {"target": "nginx", "token": secret_hash}
    assert shown["params"] == {"target": "nginx", "token": "***"}

    agent_id = site.agent.identity.agent_id
    key, cert = alice_key(site), certify(root_key(site), alice_key(site))
    bound = {"target": "nginx", "token": secret_hash}

    def subject(**changes: Any) -> RunSubject:
        values: dict[str, Any] = {
            "run_id": run_id,
            "playbook": "rotate-marker",
            "version": "1.2.0",
            "digest": digest,
            "params": bound,
        }
        return RunSubject(**{**values, **changes})

    attacks = {
        "another run": approve_doc(key, cert, agent_id, subject(run_id="run-0000000000000000")),
        "other params": approve_doc(
            key, cert, agent_id, subject(params={**bound, "target": "sshd"})
        ),
        "other version": approve_doc(key, cert, agent_id, subject(version="1.1.0")),
        "another host": approve_doc(key, cert, "other-host", subject()),
        "forged": approve_doc(Ed25519PrivateKey.generate(), cert, agent_id, subject()),
        "other customer": approve_doc(
            key, certify(root_key(site), key, "alice", "globex"), agent_id, subject(), "globex"
        ),
    }
    api = Api(site.collector, site.tokens["alice"])
    for name, data in attacks.items():
        code, details = api.refused(
            "ApproveRun", api_pb2.ApproveRunRequest(run_id=run_id, signed_approval=data)
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED, (name, details)
    code, details = api.refused("ApproveRun", api_pb2.ApproveRunRequest(run_id=run_id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "approvers key" in details
    api.close()
    assert site.agent.of("run_approval") == []

    no_tty = site.cli("alice", "alice", "run", "approve", run_id)
    assert no_tty.returncode == 1 and "pass --yes" in no_tty.stderr
    assert "token = ***" in no_tty.stdout and secret_hash in no_tty.stdout
    assert "Sup3rSecret99" not in no_tty.stdout + no_tty.stderr
    approved = site.cli_json("alice", "alice", "run", "approve", run_id, "--yes")
    assert approved["run_id"] == run_id
    [forwarded] = wait_for(lambda: site.agent.of("run_approval"), 10, "approval forwarded")
    assert forwarded.run_id == run_id and forwarded.approved_by == "alice"
    approval_doc, _ = unbundle(forwarded.signed_approval)
    statement = Approval.from_body(json.loads(approval_doc.body))
    assert statement.subject == subject() and statement.agent_id == agent_id
    assert forwarded.expires_unix_ms == statement.expires_ms
    store = SQLiteStore(site.collector.data_dir / "aftercare.db")
    try:
        stored = store.get_run(run_id)
    finally:
        store.close()
    assert stored is not None and stored.signed_approval == forwarded.signed_approval
    assert stored.approved_by == "alice"
    assert fingerprint(raw(root_key(site))) == site.root_fp
