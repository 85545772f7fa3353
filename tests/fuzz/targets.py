"""Fuzz targets: every parser that takes input from outside, with the errors it may raise.

A target takes arbitrary bytes and feeds them to one parser the way the product
does. The parser may refuse the input only with its documented error (``expected``);
any other exception is a crash, and an input that takes longer than the runner's
time limit is a hang. Targets are plain functions so that ``tests/fuzz/run.py`` can
drive them with atheris (coverage-guided) or with its own mutator.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from google.protobuf.message import DecodeError

from agent.consent.memory import ConsentMemory
from agent.consent.verify import ConsentVerifier
from agent.errors import ApprovalRefused, ConfigError
from agent.playbook.errors import PolicyError
from collector.errors import CollectorError
from common.approval_format import FormatError, SessionSubject
from common.audit_checkpoint import CheckpointError
from playbooks.errors import PlaybookError

__all__ = ["TARGETS", "Target"]


@dataclass(frozen=True)
class Target:
    """``run(data)`` parses ``data``; exceptions of ``expected`` types are refusals."""

    run: Callable[[bytes], object]
    expected: tuple[type[BaseException], ...]
    seeds: tuple[bytes, ...]


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


@cache
def _scratch() -> Path:
    """A private directory for targets that read files (tmpfs where available)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    return Path(tempfile.mkdtemp(prefix="aftercare-fuzz-", dir=base))


def _file(name: str, data: bytes) -> Path:
    path = _scratch() / name
    path.write_bytes(data)
    path.chmod(0o600)
    return path


# -- the agent's inputs ----------------------------------------------------------------


def collector_message(data: bytes) -> None:
    """Bytes off the control stream into the agent: protobuf, then the signed parts."""
    from proto import agent_pb2

    message = agent_pb2.CollectorMessage.FromString(data)
    kind = message.WhichOneof("kind")
    if kind == "run_approval":
        approval(bytes(message.run_approval.signed_approval))
    elif kind == "session_open":
        approval(bytes(message.session_open.signed_approval))
    elif kind == "approver_revocations":
        _verifier().add_revocations(bytes(d) for d in message.approver_revocations.revocations)
    elif kind == "audit_checkpoint":
        checkpoint(bytes(message.audit_checkpoint.checkpoint))


@cache
def _verifier() -> ConsentVerifier:
    root = "sha256:" + "0" * 64
    return ConsentVerifier(root, "acme", "agt-1", ConsentMemory(_scratch()))


def approval(data: bytes) -> None:
    """A signed approval bundle as the host verifies it."""
    _verifier().check(data, SessionSubject("ses-1", "erin", 0))


def checkpoint(data: bytes) -> None:
    """An audit checkpoint document as the agent's witness parses it."""
    import json

    from common import ed25519
    from common.audit_checkpoint import SignedCheckpoint

    try:
        value = json.loads(data)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    SignedCheckpoint.from_document(value, ed25519.verify)


def policy(data: bytes) -> None:
    from agent.playbook.policy import _build, _parse

    _build(_parse(_text(data)), Path("policy.toml"))


def agent_config(data: bytes) -> None:
    from agent.config import load_config

    load_config(_file("agent.toml", data))


# -- the playbook format ---------------------------------------------------------------


def playbook(data: bytes) -> None:
    from playbooks.loader import load_playbook_bytes

    load_playbook_bytes(data)


@cache
def _vendor_key() -> tuple[bytes, bytes]:
    from playbooks.signing_keys import generate_keypair

    return generate_keypair()


def manifest(data: bytes) -> None:
    """A manifest signed by a trusted key, so parsing (not the signature) is fuzzed."""
    from playbooks.sign import sign_manifest
    from playbooks.verify import verify_manifest

    private, public = _vendor_key()
    signature = sign_manifest(data, private)
    verify_manifest(data, signature, [public], now=dt.datetime.now(dt.UTC))


# -- the collector's inputs ------------------------------------------------------------


def agent_message(data: bytes) -> None:
    """Bytes off an agent's control stream into the collector's checks and store."""
    from collector.server.agent_stream import _check_batch, _check_gap
    from collector.store import GapRecord, StoredFailure, StoredSample
    from proto import agent_pb2

    message = agent_pb2.AgentMessage.FromString(data)
    store = _store()
    if message.WhichOneof("kind") == "batch":
        batch = message.batch
        _check_batch(batch)
        samples = [StoredSample(s.name, dict(s.labels), s.value) for s in batch.samples]
        failures = [StoredFailure(f.check, f.error) for f in batch.failures]
        now = int(time.time() * 1000)
        store.store_batch("agt-1", batch.sequence, batch.collected_unix_ms, now, samples, failures)
    elif message.WhichOneof("kind") == "gap":
        gap = message.gap
        _check_gap(gap)
        record = GapRecord(
            gap.sequence,
            gap.first_lost_sequence,
            gap.last_lost_sequence,
            gap.lost_batches,
            gap.start_unix_ms,
            gap.end_unix_ms,
            gap.reason[:1024],
            0,
        )
        store.store_gap("agt-1", record)


@cache
def _store():  # type: ignore[no-untyped-def]
    from collector.store import AgentRecord, SQLiteStore

    store = SQLiteStore(_scratch() / "fuzz.db")
    store.add_agent(AgentRecord("agt-1", "acme", "web-1", 0, "1", 2**40))
    return store


def rules(data: bytes) -> None:
    from collector.rules.loader import load_rules

    load_rules(_file("rules.yaml", data))


def alertmanager(data: bytes) -> None:
    from collector.alertmanager import parse_payload

    parse_payload(data)


def asciicast(data: bytes) -> None:
    from common.asciicast import parse_cast

    parse_cast(data)


def ssh_public_key(data: bytes) -> None:
    from collector.sessions.pubkey import parse_public_key

    parse_public_key(data)


# -- seeds -----------------------------------------------------------------------------

_REPO = Path(__file__).resolve().parents[2]


def _read(*parts: str) -> bytes:
    return (_REPO.joinpath(*parts)).read_bytes()


def _seeds_playbooks() -> tuple[bytes, ...]:
    return tuple(p.read_bytes() for p in sorted((_REPO / "playbooks" / "catalogue").glob("*.yaml")))


_ALERT = (
    b'{"version":"4","status":"firing","receiver":"aftercare","groupKey":"{}:{}",'
    b'"alerts":[{"status":"firing","labels":{"alertname":"DiskFull","instance":"web-1",'
    b'"severity":"critical"},"annotations":{"summary":"x"},"startsAt":'
    b'"2026-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"abc"}]}'
)
_CAST = (
    b'{"version": 2, "width": 80, "height": 24, "timestamp": 1700000000}\n'
    b'[0.1, "o", "hello\\r\\n"]\n[0.2, "r", "100x40"]\n'
)


def _protobuf_seeds(kind: str) -> tuple[bytes, ...]:
    from proto import agent_pb2

    if kind == "agent":
        batch = agent_pb2.MetricBatch(sequence=1, collected_unix_ms=1)
        batch.samples.add(name="cpu_usage_ratio", labels={"cpu": "0"}, value=0.5)
        gap = agent_pb2.Gap(sequence=2, first_lost_sequence=1, last_lost_sequence=1, lost_batches=1)
        huge = agent_pb2.MetricBatch(sequence=2**63 + 5, collected_unix_ms=-1)
        return (
            agent_pb2.AgentMessage(batch=batch).SerializeToString(),
            agent_pb2.AgentMessage(gap=gap).SerializeToString(),
            agent_pb2.AgentMessage(batch=huge).SerializeToString(),
        )
    approval_message = agent_pb2.RunApproval(run_id="r", signed_approval=b'{"approval":{}}')
    return (
        agent_pb2.CollectorMessage(run_approval=approval_message).SerializeToString(),
        agent_pb2.CollectorMessage(
            session_open=agent_pb2.SessionOpen(session_id="ses-1", signed_approval=b"{}")
        ).SerializeToString(),
    )


TARGETS: dict[str, Callable[[], Target]] = {
    "collector-message": lambda: Target(
        collector_message,
        (DecodeError, ApprovalRefused, CheckpointError, FormatError),
        _protobuf_seeds("collector"),
    ),
    "approval": lambda: Target(
        approval, (ApprovalRefused,), (b'{"approval":{"body":"","sig":""},"certificate":{}}',)
    ),
    "audit-checkpoint": lambda: Target(
        checkpoint, (CheckpointError,), (b'{"checkpoint":{"count":1},"signature":""}',)
    ),
    "policy": lambda: Target(policy, (PolicyError,), (_read("deploy", "policy.example.toml"),)),
    "agent-config": lambda: Target(
        agent_config, (ConfigError,), (_read("deploy", "agent.example.toml"),)
    ),
    "playbook": lambda: Target(playbook, (PlaybookError,), _seeds_playbooks()),
    "manifest": lambda: Target(
        manifest, (PlaybookError,), (_read("playbooks", "catalogue", "MANIFEST.json"),)
    ),
    "agent-message": lambda: Target(
        agent_message, (DecodeError, CollectorError), _protobuf_seeds("agent")
    ),
    "rules": lambda: Target(
        rules, (CollectorError,), (_read("collector", "rules", "default.yaml"),)
    ),
    "alertmanager": lambda: Target(alertmanager, (CollectorError,), (_ALERT,)),
    "asciicast": lambda: Target(asciicast, (ValueError,), (_CAST,)),
    "ssh-public-key": lambda: Target(
        ssh_public_key,
        (ValueError,),
        (b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x\n",),
    ),
}
