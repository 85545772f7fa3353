"""Audit checkpoints as a host witnesses them: the accumulator, the extension check,
and the witness refusing anything that does not extend what it holds (attacks as tests)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.audit_witness import CHECKPOINT_FILE, AuditWitness, describe, ed25519_verify, load_held
from agent.consent.memory import ConsentMemory
from agent.consent.verify import ConsentVerifier
from agent.main_loop import dispatch
from collector.audit_checkpoint import AuditKey
from collector.audit_ledger import AuditLedger
from common.audit_checkpoint import (
    GENESIS,
    CheckpointError,
    SignedCheckpoint,
    extension_problem,
    fold,
)
from proto import agent_pb2

T0 = 1_700_000_000_000


def entry_hashes(n: int, seed: str = "real") -> list[bytes]:
    return [hashlib.sha256(f"{seed}-{i}".encode()).digest() for i in range(1, n + 1)]


class Log:
    """A collector's audit log as hashes, signing checkpoints with ``key``."""

    def __init__(self, key: AuditKey, hashes: list[bytes]) -> None:
        self.key, self.hashes = key, hashes

    def message(self, count: int, proof_from: int) -> agent_pb2.AuditCheckpoint:
        signed = self.signed(count)
        return agent_pb2.AuditCheckpoint(
            checkpoint=signed.checkpoint.encode(),
            signature=signed.signature,
            proof_from=proof_from,
            proof=self.hashes[proof_from:count],
        )

    def signed(self, count: int) -> SignedCheckpoint:
        head = self.hashes[count - 1].hex() if count else GENESIS
        return self.key.sign(count, head, fold(GENESIS, self.hashes[:count]), T0 + count)


@pytest.fixture
def key() -> AuditKey:
    return AuditKey(Ed25519PrivateKey.generate())


@pytest.fixture
def log(key: AuditKey) -> Log:
    return Log(key, entry_hashes(10))


def witness(state_dir: Path) -> tuple[AuditWitness, agent_pb2.Hello]:
    hello = agent_pb2.Hello()
    return AuditWitness(state_dir, _no_send, hello), hello


async def _no_send(message: agent_pb2.AgentMessage) -> None:
    return None


# -- the pure format, fold and extension check ---------------------------------------


def test_accumulator_follows_the_rule() -> None:
    hashes = entry_hashes(3)
    acc = GENESIS
    for digest in hashes:
        acc = hashlib.sha256(bytes.fromhex(acc) + digest).hexdigest()
    assert fold(GENESIS, hashes) == acc
    assert fold(fold(GENESIS, hashes[:1]), hashes[1:]) == acc


def test_signed_checkpoint_round_trips_as_a_document(log: Log) -> None:
    signed = log.signed(4)
    again = SignedCheckpoint.from_document(
        json.loads(json.dumps(signed.document())), ed25519_verify
    )
    assert again == signed
    body = json.loads(signed.checkpoint.encode())
    assert body["type"] == "aftercare.audit-checkpoint/v1" and body["count"] == 4


def test_extension_accepted(log: Log) -> None:
    held, new = log.signed(4).checkpoint, log.signed(9).checkpoint
    assert extension_problem(held, new, 4, log.hashes[4:9]) == ""
    assert extension_problem(held, held, 4, []) == ""
    assert extension_problem(None, new, 0, []) == ""


def test_shorter_log_refused(log: Log) -> None:
    problem = extension_problem(log.signed(6).checkpoint, log.signed(4).checkpoint, 6, [])
    assert "shrank" in problem and "cut" in problem


def test_rewritten_log_refused(key: AuditKey, log: Log) -> None:
    rewritten = Log(key, log.hashes[:3] + entry_hashes(7, "forged"))
    held = log.signed(5).checkpoint
    assert "rewritten" in extension_problem(held, rewritten.signed(5).checkpoint, 5, [])
    problem = extension_problem(held, rewritten.signed(8).checkpoint, 5, rewritten.hashes[5:8])
    assert "does not contain" in problem


def test_forged_proof_refused(log: Log) -> None:
    held, new = log.signed(4).checkpoint, log.signed(6).checkpoint
    forged = [log.hashes[4], hashlib.sha256(b"x").digest()]
    assert "does not contain" in extension_problem(held, new, 4, forged)
    assert "hashes" in extension_problem(held, new, 4, log.hashes[4:5])
    assert "starts after" in extension_problem(held, new, 3, log.hashes[3:6])


def test_another_key_refused(log: Log) -> None:
    other = Log(AuditKey(Ed25519PrivateKey.generate()), log.hashes)
    problem = extension_problem(log.signed(4).checkpoint, other.signed(6).checkpoint, 4, [])
    assert "another audit key" in problem


def test_bad_signature_refused(log: Log) -> None:
    signed = log.signed(4)
    with pytest.raises(CheckpointError, match="bad signature"):
        SignedCheckpoint.verified(signed.checkpoint.encode(), b"\0" * 64, ed25519_verify)
    tampered = signed.checkpoint.encode().replace(b'"count":4', b'"count":5')
    with pytest.raises(CheckpointError, match="bad signature"):
        SignedCheckpoint.verified(tampered, signed.signature, ed25519_verify)


def test_malformed_checkpoints_refused(log: Log) -> None:
    body = log.signed(4).checkpoint.body()
    for broken, field in [
        ({**body, "extra": 1}, "unknown"),
        ({**body, "count": -1}, "count"),
        ({**body, "head": "AB" * 32}, "head"),
        ({**body, "type": "other"}, "type"),
    ]:
        with pytest.raises(CheckpointError, match=field):
            SignedCheckpoint.from_document({"checkpoint": broken, "signature": ""}, ed25519_verify)
    spaced = json.dumps(body).encode()  # not canonical
    with pytest.raises(CheckpointError, match="canonical"):
        SignedCheckpoint.verified(spaced, log.signed(4).signature, ed25519_verify)


def test_ledger_steps_stay_within_the_proof_bound(log: Log) -> None:
    ledger = AuditLedger(step=4)
    prev = GENESIS
    rows = []
    for i, digest in enumerate(log.hashes, start=1):
        rows.append((i, prev, digest.hex()))
        prev = digest.hex()
    ledger.extend(rows)
    offers = ledger.offers(1, lambda after, limit: log.hashes[after : after + limit])
    assert [(o.proof_from, o.count) for o in offers] == [(1, 4), (4, 8), (8, 10)]
    held = log.signed(1).checkpoint
    for offer in offers:  # each step verifies against the one before
        new = log.signed(offer.count).checkpoint
        assert (offer.head, offer.accumulator) == (new.head, new.accumulator)
        assert extension_problem(held, new, offer.proof_from, offer.proof) == ""
        held = new
    assert [(o.proof_from, o.count, o.proof) for o in ledger.offers(0, lambda a, b: [])] == [
        (0, 10, ())
    ]


# -- the witness on a state directory -----------------------------------------------


def test_witness_accepts_extensions_and_keeps_the_newest(tmp_path: Path, log: Log) -> None:
    w, hello = witness(tmp_path)
    assert (hello.audit_checkpoint_count, hello.audit_checkpoint_head) == (0, "")
    first = w.consider(log.message(3, 0))
    assert (first.count, first.head, first.refused) == (3, log.hashes[2].hex(), "")
    answer = w.consider(log.message(7, 3))
    assert (answer.count, answer.refused) == (7, "")
    assert hello.audit_checkpoint_count == 7 and hello.audit_checkpoint_head == log.hashes[6].hex()
    path = tmp_path / CHECKPOINT_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    held = load_held(tmp_path)
    assert held is not None and held.checkpoint.count == 7
    _, hello_again = witness(tmp_path)  # a restarted agent reports what it holds
    assert hello_again.audit_checkpoint_count == 7
    status = describe(held)
    assert status is not None and status["key"].startswith("sha256:")
    assert status["document"] == held.document()


@pytest.mark.parametrize("attack", ["cut", "rewritten", "forged-proof", "other-key", "bad-sig"])
def test_witness_refuses_what_does_not_extend(
    tmp_path: Path, key: AuditKey, log: Log, attack: str
) -> None:
    w, hello = witness(tmp_path)
    assert w.consider(log.message(6, 0)).refused == ""
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    if attack == "cut":
        message = log.message(4, 6)
    elif attack == "rewritten":
        message = Log(key, log.hashes[:2] + entry_hashes(8, "forged")).message(9, 6)
    elif attack == "forged-proof":
        message = log.message(8, 6)
        message.proof[0] = hashlib.sha256(b"forged").digest()
    elif attack == "other-key":
        message = Log(AuditKey(Ed25519PrivateKey.generate()), log.hashes).message(8, 6)
    else:
        message = log.message(8, 6)
        message.signature = bytes(64)
    answer = w.consider(message)
    assert answer.refused, attack
    assert (answer.count, answer.head) == (6, log.hashes[5].hex())
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before
    assert hello.audit_checkpoint_count == 6


def test_dispatch_routes_checkpoints_to_the_witness(tmp_path: Path, log: Log) -> None:
    sent: list[agent_pb2.AgentMessage] = []

    async def send(message: agent_pb2.AgentMessage) -> None:
        sent.append(message)

    async def scenario() -> None:
        w = AuditWitness(tmp_path, send, agent_pb2.Hello())
        consent = ConsentVerifier("", "acme", "agt-1", ConsentMemory(tmp_path))
        on_message = dispatch(others.append, others.append, consent, w.on_message)
        on_message(agent_pb2.CollectorMessage(audit_checkpoint=log.message(2, 0)))
        await asyncio.sleep(0)

    others: list[agent_pb2.CollectorMessage] = []
    asyncio.run(scenario())
    assert others == []
    assert [m.audit_witness.count for m in sent] == [2]
