"""Attacks on the agent's run handler: nothing runs unless signed, valid, allowed and approved.

The handler gets RunRequests exactly as a (possibly compromised) collector would send
them; a real executor runs what gets through. Each refusal is asserted by what the
agent reports (a "refused" update with the reason) and by a marker file the playbook
would have written had it run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml

import agent.playbook_runs as runs_module
from agent.consent.memory import ConsentMemory
from agent.consent.verify import ConsentVerifier
from agent.journal import Journal
from agent.main_loop import RunsOnFirstMessage
from agent.playbook.approvals import ApprovalBook
from agent.playbook.errors import ApprovalError
from agent.playbook.executor import Executor
from agent.playbook.policy import load_policy
from agent.playbook.redact import Redactor
from agent.playbook.waiting import WaitingRuns, run_binding
from agent.playbook_runs import ExecutorFactory, RunHandler
from common.approval_format import RunSubject
from playbooks.sign import sign_catalogue
from playbooks.signing_keys import generate_keypair
from proto import agent_pb2
from tests.consent_support import Approver, CustomerRoot, now_ms

TOUCH = """name: touch-marker
version: {version}
description: Create a marker file (proves execution).
mode: {mode}
parameters:
  - name: word
    type: string
    required: true
    pattern: "[a-z]+"
steps:
  - name: touch
    exec:
      argv: ["touch", "{marker}"]
  - name: echo
    exec:
      argv: ["echo", "{{{{ word }}}}"]
"""

LEAK = """name: leak-secrets
version: 1.0.0
description: Print things that look like secrets.
mode: read-only
steps:
  - name: leak
    exec:
      argv: ["printf", "user=bob password=hunter2 token=abc123\\nok\\n"]
"""

Sent = list[agent_pb2.AgentMessage]
CUSTOMER, AGENT_ID = "acme", "agt-1"


class Fixture:
    """A signed catalogue in a temp dir, a handler trusting ``trusted``, and what it sent."""

    def __init__(self, tmp_path: Path, key: tuple[bytes, bytes]) -> None:
        self.tmp = tmp_path
        self.key = key
        self.marker = tmp_path / "marker"
        self.catalogue = tmp_path / "catalogue"
        self.catalogue.mkdir()
        self.sent: Sent = []

    def write(self, mode: str = "read-only", version: str = "1.0.0") -> None:
        text = TOUCH.format(version=version, mode=mode, marker=self.marker)
        (self.catalogue / "touch-marker.yaml").write_text(text)
        (self.catalogue / "leak-secrets.yaml").write_text(LEAK)

    def sign(
        self,
        private: bytes | None = None,
        version: int = 1,
        now: dt.datetime | None = None,
        valid_for: dt.timedelta = dt.timedelta(days=1),
    ) -> tuple[bytes, bytes]:
        return sign_catalogue(
            self.catalogue,
            private or self.key[0],
            catalogue_version=version,
            valid_for=valid_for,
            now=now,
        )

    def handler(
        self,
        policy: str = "",
        trusted: list[bytes] | None = None,
        root: str = "",
        executor: Executor | ExecutorFactory | None = None,
    ) -> RunHandler:
        policy_path = self.tmp / "policy.toml"
        policy_path.write_text(policy)
        policy_path.chmod(0o600)
        if executor is None:
            executor = Executor(max_concurrent_runs=2, workdir=self.tmp, redactor=Redactor())

        async def send(message: agent_pb2.AgentMessage) -> None:
            self.sent.append(message)

        keys = [self.key[1]] if trusted is None else trusted
        return RunHandler(
            self.tmp,
            keys,
            load_policy(policy_path),
            ApprovalBook(self.tmp / "approvals"),
            executor,
            send,
            ConsentVerifier(root, CUSTOMER, AGENT_ID, ConsentMemory(self.tmp)),
            Journal(self.tmp / "runs.log"),
        )

    def request(
        self,
        signed: tuple[bytes, bytes],
        run_id: str = "run-1",
        playbook: str = "touch-marker",
        word: str = "hello",
        yaml_bytes: bytes | None = None,
    ) -> agent_pb2.CollectorMessage:
        manifest, signature = signed
        data = (
            yaml_bytes
            if yaml_bytes is not None
            else (self.catalogue / f"{playbook}.yaml").read_bytes()
        )
        params = {"word": word} if playbook == "touch-marker" else {}
        return agent_pb2.CollectorMessage(
            run_request=agent_pb2.RunRequest(
                run_id=run_id,
                playbook=playbook,
                params=params,
                manifest=manifest,
                manifest_signature=signature,
                playbook_yaml=data,
                requested_by="user:erin",
            )
        )

    def subject(self, run_id: str = "run-1", word: str = "hello") -> RunSubject:
        """What an approval of the touch-marker run must bind."""
        data = (self.catalogue / "touch-marker.yaml").read_bytes()
        return RunSubject(
            run_id=run_id,
            playbook="touch-marker",
            version=yaml.safe_load(data)["version"],
            digest="sha256:" + hashlib.sha256(data).hexdigest(),
            params={"word": word},
        )

    def binding(self, word: str = "hello") -> str:
        return run_binding(self.subject(word=word))

    def updates(self, run_id: str = "run-1") -> list[tuple[str, str]]:
        return [
            (m.run_update.state, m.run_update.message)
            for m in self.sent
            if m.WhichOneof("kind") == "run_update" and m.run_update.run_id == run_id
        ]

    def result(self, run_id: str = "run-1") -> agent_pb2.RunResult | None:
        return next(
            (
                m.run_result
                for m in self.sent
                if m.WhichOneof("kind") == "run_result" and m.run_result.run_id == run_id
            ),
            None,
        )

    def output(self) -> bytes:
        return b"".join(
            m.run_output.data for m in self.sent if m.WhichOneof("kind") == "run_output"
        )


@pytest.fixture
def fx(tmp_path: Path) -> Fixture:
    fixture = Fixture(tmp_path, generate_keypair())
    fixture.write()
    return fixture


def drive(
    handler: RunHandler | RunsOnFirstMessage,
    *messages: agent_pb2.CollectorMessage,
    until: Callable[[], bool],
    timeout: float = 20.0,
    alongside: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Feed ``messages`` to ``handler`` (and run ``alongside``) until ``until()``."""

    async def main() -> None:
        for message in messages:
            handler.on_message(message)
        helper = asyncio.create_task(alongside()) if alongside else None
        deadline = asyncio.get_running_loop().time() + timeout
        while not until() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if helper is not None:
            helper.cancel()
        await handler.close()

    asyncio.run(main())


def refused_or_none(fx: Fixture) -> bool:
    """The run ended one way or the other (refused, or a result)."""
    return any(s == "refused" for s, _ in fx.updates()) or fx.result() is not None


def refused(fx: Fixture, run_id: str = "run-1") -> str:
    reasons = [message for state, message in fx.updates(run_id) if state == "refused"]
    assert reasons, f"expected a refusal, got {fx.updates(run_id)}"
    assert not fx.marker.exists(), "nothing may run after a refusal"
    return reasons[0]


def test_a_signed_allowed_playbook_runs(fx: Fixture) -> None:
    handler = fx.handler()
    drive(handler, fx.request(fx.sign()), until=lambda: fx.result() is not None)
    result = fx.result()
    assert result is not None and result.status == "ok", fx.updates()
    assert fx.marker.exists()
    assert b"hello" in fx.output()
    assert [s for s, _ in fx.updates()] == ["running"]


def test_the_agent_builds_its_run_handler_on_the_first_run_message(fx: Fixture) -> None:
    built: list[RunHandler] = []

    def build() -> RunHandler:
        built.append(fx.handler())
        return built[-1]

    runs = RunsOnFirstMessage(build)
    assert not runs.built and built == []
    drive(runs, fx.request(fx.sign()), until=lambda: fx.result() is not None)
    result = fx.result()
    assert runs.built and len(built) == 1
    assert result is not None and result.status == "ok", fx.updates()


def test_a_handler_that_cannot_be_built_drops_the_message_and_tries_again(
    fx: Fixture,
) -> None:
    attempts: list[str] = []

    def build() -> RunHandler:
        attempts.append("build")
        if len(attempts) == 1:
            raise ApprovalError("cannot list approvals: Permission denied")
        return fx.handler()

    runs = RunsOnFirstMessage(build)
    runs.on_message(agent_pb2.CollectorMessage(run_cancel=agent_pb2.RunCancel(run_id="x")))
    assert not runs.built
    drive(runs, fx.request(fx.sign()), until=lambda: fx.result() is not None)
    result = fx.result()
    assert attempts == ["build", "build"]
    assert result is not None and result.status == "ok", fx.updates()


def test_an_agent_that_ran_no_playbook_stops_without_building_the_handler() -> None:
    def build() -> RunHandler:
        raise AssertionError("built without a run message")

    runs = RunsOnFirstMessage(build)
    asyncio.run(runs.close())
    assert not runs.built


def test_no_trusted_key_means_nothing_runs(fx: Fixture) -> None:
    handler = fx.handler(trusted=[])
    drive(handler, fx.request(fx.sign()), until=lambda: bool(fx.updates()))
    assert "trusts no vendor key" in refused(fx)


def test_unsigned_catalogue_is_refused(fx: Fixture) -> None:
    manifest, _ = fx.sign()
    drive(fx.handler(), fx.request((manifest, b"")), until=lambda: bool(fx.updates()))
    assert "sign" in refused(fx).lower()


def test_one_byte_changed_in_the_playbook_is_refused(fx: Fixture) -> None:
    signed = fx.sign()
    data = bytearray((fx.catalogue / "touch-marker.yaml").read_bytes())
    data[-2] ^= 0x01
    drive(
        fx.handler(), fx.request(signed, yaml_bytes=bytes(data)), until=lambda: bool(fx.updates())
    )
    assert "sha256" in refused(fx)


def test_one_byte_changed_in_the_manifest_is_refused(fx: Fixture) -> None:
    manifest, signature = fx.sign()
    tampered = manifest.replace(b'"catalogue_version":1', b'"catalogue_version":9')
    assert tampered != manifest
    drive(fx.handler(), fx.request((tampered, signature)), until=lambda: bool(fx.updates()))
    refused(fx)


def test_signed_by_another_key_is_refused(fx: Fixture) -> None:
    other_private, _ = generate_keypair()
    drive(fx.handler(), fx.request(fx.sign(other_private)), until=lambda: bool(fx.updates()))
    assert "trusted vendor key" in refused(fx)


def test_expired_manifest_is_refused(fx: Fixture) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    signed = fx.sign(now=past, valid_for=dt.timedelta(days=1))
    drive(fx.handler(), fx.request(signed), until=lambda: bool(fx.updates()))
    assert "expired" in refused(fx).lower()


def test_catalogue_and_playbook_downgrades_are_refused(fx: Fixture) -> None:
    fx.write(version="2.0.0")
    newer = fx.sign(version=5)
    handler = fx.handler()
    drive(
        handler, fx.request(newer, run_id="run-new"), until=lambda: fx.result("run-new") is not None
    )
    assert fx.result("run-new").status == "ok"  # type: ignore[union-attr]
    fx.marker.unlink()
    older_catalogue = fx.sign(version=4)
    drive(
        fx.handler(),
        fx.request(older_catalogue, run_id="run-old"),
        until=lambda: bool(fx.updates("run-old")),
    )
    assert "downgrade" in refused(fx, "run-old").lower()
    fx.write(version="1.0.0")
    older_playbook = fx.sign(version=6)
    drive(
        fx.handler(),
        fx.request(older_playbook, run_id="run-old2"),
        until=lambda: bool(fx.updates("run-old2")),
    )
    assert "downgrade" in refused(fx, "run-old2").lower()


@pytest.mark.parametrize(
    "word", ["; rm -rf /", "$(reboot)", "`id`", "hello\nworld", "../../etc/shadow", "--help"]
)
def test_parameter_injection_is_refused(fx: Fixture, word: str) -> None:
    drive(fx.handler(), fx.request(fx.sign(), word=word), until=lambda: bool(fx.updates()))
    assert "word" in refused(fx)


def test_a_playbook_the_policy_denies_is_refused(fx: Fixture) -> None:
    policy = '[playbooks.touch-marker]\ndecision = "deny"\n'
    drive(fx.handler(policy), fx.request(fx.sign()), until=lambda: bool(fx.updates()))
    assert "denies" in refused(fx)


def test_mutating_without_approval_waits_then_expires(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs_module, "APPROVAL_TIMEOUT_SECONDS", 1.5)
    fx.write(mode="mutating")
    drive(
        fx.handler(),
        fx.request(fx.sign()),
        until=lambda: any(s == "refused" for s, _ in fx.updates()),
    )
    states = [s for s, _ in fx.updates()]
    assert states[0] == "waiting_approval"
    assert "approval" in refused(fx)


def test_a_run_the_customer_denied_is_dropped_with_the_reason(fx: Fixture) -> None:
    fx.write(mode="mutating")
    cancel = agent_pb2.CollectorMessage(
        run_cancel=agent_pb2.RunCancel(run_id="run-1", reason="denied by user:alice: not today")
    )
    drive(fx.handler(), fx.request(fx.sign()), cancel, until=lambda: refused_or_none(fx))
    assert refused(fx) == "cancelled by the collector: denied by user:alice: not today"


def test_collector_approval_runs_a_mutating_playbook_only_where_the_customer_trusts_it(
    fx: Fixture,
) -> None:
    fx.write(mode="mutating")
    approval = agent_pb2.CollectorMessage(
        run_approval=agent_pb2.RunApproval(run_id="run-1", approved_by="user:alice")
    )
    policy = '[defaults]\napproval = "collector"\n'
    drive(
        fx.handler(policy), fx.request(fx.sign()), approval, until=lambda: fx.result() is not None
    )
    assert fx.result().status == "ok"  # type: ignore[union-attr]
    assert fx.marker.exists()


def test_by_default_the_collectors_word_does_not_approve(fx: Fixture) -> None:
    """Secure by default: no pinned root and no policy file - an unsigned approval from
    the collector (as a breached collector would send) is refused and nothing runs."""
    fx.write(mode="mutating")
    forged = agent_pb2.CollectorMessage(
        run_approval=agent_pb2.RunApproval(run_id="run-1", approved_by="user:alice")
    )
    drive(fx.handler(), fx.request(fx.sign()), forged, until=lambda: refused_or_none(fx))
    assert "pins no customer approval root" in refused(fx)
    assert not fx.marker.exists()


def test_local_policy_ignores_collector_approvals_and_other_runs_approvals(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs_module, "APPROVAL_TIMEOUT_SECONDS", 2.0)
    fx.write(mode="mutating")
    policy = '[defaults]\napproval = "local"\n'
    book = ApprovalBook(fx.tmp / "approvals")
    book.approve("run-other", 1e12, binding=fx.binding())  # approval for another run
    book.approve("run-1", 1.0, binding=fx.binding())  # expired long ago
    forged = agent_pb2.CollectorMessage(
        run_approval=agent_pb2.RunApproval(run_id="run-1", approved_by="user:mallory")
    )
    drive(
        fx.handler(policy),
        fx.request(fx.sign()),
        forged,
        until=lambda: any(s == "refused" for s, _ in fx.updates()),
    )
    assert "approval" in refused(fx)


def test_local_approval_of_this_run_counts(fx: Fixture) -> None:
    fx.write(mode="mutating")
    policy = '[defaults]\napproval = "local"\n'

    async def approve_on_the_host() -> None:
        """What `aftercare-agent approve run-1 --yes` does: bind to what waits."""
        waiting = WaitingRuns(fx.tmp)
        while (run := waiting.get("run-1")) is None:
            await asyncio.sleep(0.05)
        assert (run.playbook, run.version, run.mode) == ("touch-marker", "1.0.0", "mutating")
        assert run.params == {"word": "hello"} and run.digest.startswith("sha256:")
        ApprovalBook(fx.tmp / "approvals").approve("run-1", 1e12, binding=run.binding)

    drive(
        fx.handler(policy),
        fx.request(fx.sign()),
        until=lambda: fx.result() is not None,
        alongside=approve_on_the_host,
    )
    assert fx.result().status == "ok"  # type: ignore[union-attr]
    assert "on the host by" in (fx.tmp / "runs.log").read_text()


def test_a_local_approval_does_not_count_for_other_parameters_under_the_same_run_id(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host approved run-1 with word=hello; the collector reuses the id with word=bye."""
    monkeypatch.setattr(runs_module, "APPROVAL_TIMEOUT_SECONDS", 2.0)
    fx.write(mode="mutating")
    policy = '[defaults]\napproval = "local"\n'
    ApprovalBook(fx.tmp / "approvals").approve("run-1", 1e12, binding=fx.binding())
    drive(
        fx.handler(policy),
        fx.request(fx.sign(), word="bye"),
        until=lambda: refused_or_none(fx),
    )
    assert "not approved in time" in refused(fx)
    assert not fx.marker.exists()


def test_secrets_in_output_are_redacted_before_they_leave(fx: Fixture) -> None:
    drive(
        fx.handler(),
        fx.request(fx.sign(), playbook="leak-secrets"),
        until=lambda: fx.result() is not None,
    )
    output = fx.output()
    assert b"hunter2" not in output and b"abc123" not in output
    assert b"[REDACTED]" in output and b"ok" in output
    assert fx.result().redactions >= 2  # type: ignore[union-attr]


# --- customer-signed approvals: what a breached collector cannot forge -------------------

SIGNED = '[defaults]\napproval = "signed"\n'


def approval_message(signed: bytes, run_id: str = "run-1") -> agent_pb2.CollectorMessage:
    return agent_pb2.CollectorMessage(
        run_approval=agent_pb2.RunApproval(
            run_id=run_id, approved_by="user:alice", signed_approval=signed
        )
    )


def test_a_signed_approval_of_exactly_this_run_runs_it(fx: Fixture) -> None:
    root = CustomerRoot(CUSTOMER)
    alice = root.certify("alice")
    fx.write(mode="mutating")
    signed = alice.approve(AGENT_ID, fx.subject())
    drive(
        fx.handler(root=root.fingerprint),
        fx.request(fx.sign()),
        approval_message(signed),
        until=lambda: fx.result() is not None,
    )
    assert fx.result().status == "ok"  # type: ignore[union-attr]
    log = (fx.tmp / "runs.log").read_text()
    assert "signed by alice of acme" in log


def _attack(name: str, root: CustomerRoot, alice: Approver, fx: Fixture) -> tuple[bytes, str]:
    """(signed approval bytes, expected reason) for one attack by a breached collector."""
    other_root = CustomerRoot(CUSTOMER)
    subject = fx.subject()
    if name == "unsigned":
        return b"", "not signed by a customer approver"
    if name == "forged signature":
        signed = alice.approve(AGENT_ID, subject, signer=other_root.key)
        return signed, "signature does not verify"
    if name == "uncertified key":
        return other_root.certify("alice").approve(AGENT_ID, subject), "not by the root this host"
    if name == "another host":
        return alice.approve("agt-other", subject), "host agent id 'agt-other'"
    if name == "another customer":
        mallory = root.certify("mallory", customer="globex")
        return mallory.approve(AGENT_ID, subject), "certificate is for customer 'globex'"
    if name == "another run id":
        return alice.approve(AGENT_ID, fx.subject(run_id="run-2")), "run_id 'run-2'"
    if name == "other parameters":
        return alice.approve(AGENT_ID, fx.subject(word="bye")), "params"
    if name == "another playbook version":
        older = RunSubject(
            subject.run_id, subject.playbook, "0.9.0", subject.digest, subject.params
        )
        return alice.approve(AGENT_ID, older), "version '0.9.0'"
    if name == "another playbook file":
        other = RunSubject(
            subject.run_id, subject.playbook, subject.version, "sha256:" + "0" * 64, subject.params
        )
        return alice.approve(AGENT_ID, other), "digest"
    if name == "expired":
        return alice.approve(
            AGENT_ID, subject, issued_ms=now_ms() - 7_200_000, expires_ms=now_ms() - 1
        ), "expired"
    if name == "expired certificate":
        old = root.certify("alice", issued_ms=now_ms() - 7_200_000, expires_ms=now_ms() - 1)
        return old.approve(AGENT_ID, subject), "not valid now"
    if name == "approver name not the certificate's":
        return alice.approve(AGENT_ID, subject, approver="bob"), "approver 'bob'"
    if name == "garbage":
        return b'{"approval": 1}', "malformed signed approval"
    raise AssertionError(name)


ATTACKS = [
    "unsigned",
    "forged signature",
    "uncertified key",
    "another host",
    "another customer",
    "another run id",
    "other parameters",
    "another playbook version",
    "another playbook file",
    "expired",
    "expired certificate",
    "approver name not the certificate's",
    "garbage",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_breached_collector_cannot_approve_a_run(fx: Fixture, attack: str) -> None:
    root = CustomerRoot(CUSTOMER)
    alice = root.certify("alice")
    fx.write(mode="mutating")
    signed, reason = _attack(attack, root, alice, fx)
    drive(
        fx.handler(SIGNED, root=root.fingerprint),
        fx.request(fx.sign()),
        approval_message(signed),
        until=lambda: refused_or_none(fx),
    )
    message = refused(fx)
    assert message.startswith("approval refused: ") and reason in message, message
    host_log = [json.loads(line) for line in (fx.tmp / "runs.log").read_text().splitlines()]
    assert any(e["event"] == "run_refused" and reason in e["reason"] for e in host_log)


def test_a_revoked_approver_cannot_approve(fx: Fixture) -> None:
    root = CustomerRoot(CUSTOMER)
    alice = root.certify("alice")
    fx.write(mode="mutating")
    handler = fx.handler(SIGNED, root=root.fingerprint)
    revocations = agent_pb2.ApproverRevocations(
        revocations=[CustomerRoot(CUSTOMER).revoke(alice), root.revoke(alice)]
    )
    verifier = ConsentVerifier(root.fingerprint, CUSTOMER, AGENT_ID, ConsentMemory(fx.tmp))
    assert verifier.add_revocations(revocations.revocations) == 1  # the other root's is ignored
    drive(
        handler,
        fx.request(fx.sign()),
        approval_message(alice.approve(AGENT_ID, fx.subject())),
        until=lambda: refused_or_none(fx),
    )
    assert "was revoked by the customer's root" in refused(fx)


def test_a_replayed_approval_is_refused(fx: Fixture) -> None:
    """The run happened; the collector sends the same request and approval again."""
    root = CustomerRoot(CUSTOMER)
    fx.write(mode="mutating")
    signed = root.certify("alice").approve(AGENT_ID, fx.subject())
    drive(
        fx.handler(SIGNED, root=root.fingerprint),
        fx.request(fx.sign()),
        approval_message(signed),
        until=lambda: fx.result() is not None,
    )
    assert fx.result().status == "ok"  # type: ignore[union-attr]
    fx.marker.unlink()
    fx.sent.clear()
    drive(
        fx.handler(SIGNED, root=root.fingerprint),
        fx.request(fx.sign()),
        approval_message(signed),
        until=lambda: refused_or_none(fx),
    )
    assert "already used" in refused(fx)


def test_a_signed_approval_under_a_local_only_policy_is_ignored(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs_module, "APPROVAL_TIMEOUT_SECONDS", 1.5)
    root = CustomerRoot(CUSTOMER)
    fx.write(mode="mutating")
    signed = root.certify("alice").approve(AGENT_ID, fx.subject())
    drive(
        fx.handler('[defaults]\napproval = "local"\n', root=root.fingerprint),
        fx.request(fx.sign()),
        approval_message(signed),
        until=lambda: refused_or_none(fx),
    )
    assert "not approved in time" in refused(fx)
    assert "approval_ignored" in (fx.tmp / "runs.log").read_text()


def test_the_executor_is_built_by_the_first_run_that_needs_it(fx: Fixture) -> None:
    built: list[Executor] = []

    def executor() -> Executor:
        built.append(Executor(max_concurrent_runs=2, workdir=fx.tmp, redactor=Redactor()))
        return built[-1]

    refusing = fx.handler(trusted=[], executor=executor)
    drive(refusing, fx.request(fx.sign()), until=lambda: bool(fx.updates()))
    assert refused(fx) and built == [], "a refused run must not load the executor"

    handler = fx.handler(executor=executor)
    signed = fx.sign()
    requests = [fx.request(signed, run_id=run_id) for run_id in ("run-2", "run-3")]
    drive(handler, *requests, until=lambda: None not in (fx.result("run-2"), fx.result("run-3")))
    results = [fx.result(run_id) for run_id in ("run-2", "run-3")]
    assert [r.status if r else None for r in results] == ["ok", "ok"], fx.updates("run-2")
    assert len(built) == 1, "one executor for the handler's whole life"
