"""The host's witness of the collector's audit log (docs/audit.md).

Keeps the newest signed audit checkpoint in ``STATE_DIR/audit-checkpoint.json``
(atomic, 0600) and accepts a new one only if its signature verifies, it is signed by
the audit key pinned on first sight (the key of the held checkpoint), and it extends
the held one (``common.audit_checkpoint.extension_problem``). Every checkpoint is
answered with an AuditWitness saying what is held and, if refused, why (also logged as
a warning). The held checkpoint is reported in the hello so the collector sends the
proof from there.

Signatures are verified with ``common.ed25519`` (pure Python, a few ms each), so
witnessing never loads the cryptography library into the agent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from common import ed25519
from common.atomic import write_atomic
from common.audit_checkpoint import CheckpointError, SignedCheckpoint, extension_problem
from proto import agent_pb2

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "audit-checkpoint.json"

Send = Callable[[agent_pb2.AgentMessage], Coroutine[Any, Any, None]]


def ed25519_verify(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``data`` by ``public_key``."""
    return ed25519.verify(public_key, data, signature)


def load_held(state_dir: Path) -> SignedCheckpoint | None:
    """The checkpoint held in ``state_dir`` (None if none). Its signature was verified
    when it was accepted; it is re-parsed, not re-verified, so reading it stays cheap."""
    path = state_dir / CHECKPOINT_FILE
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from exc
    return SignedCheckpoint.from_document(value, lambda key, data, sig: True)


def describe(held: SignedCheckpoint | None) -> dict[str, Any] | None:
    """``aftercare-agent status``'s ``audit_checkpoint``: what is held, and the document
    to hand to the vendor for ``aftercare-collector audit verify --checkpoint``."""
    if held is None:
        return None
    checkpoint = held.checkpoint
    return {
        "count": checkpoint.count,
        "head": checkpoint.head,
        "at": dt.datetime.fromtimestamp(checkpoint.at_ms / 1000, dt.UTC).isoformat(
            timespec="seconds"
        ),
        "at_unix_ms": checkpoint.at_ms,
        "key": checkpoint.key_fingerprint,
        "document": held.document(),
    }


class AuditWitness:
    """Handles ``audit_checkpoint`` messages; keeps ``hello``'s audit fields current."""

    def __init__(
        self,
        state_dir: Path,
        send: Send,
        hello: agent_pb2.Hello,
        verify: Callable[[bytes, bytes, bytes], bool] = ed25519_verify,
    ) -> None:
        self._path = state_dir / CHECKPOINT_FILE
        self._send = send
        self._hello = hello
        self._verify = verify
        self._tasks: set[asyncio.Task[None]] = set()
        try:
            self.held = load_held(state_dir)
        except CheckpointError as exc:  # a damaged file: start over, say so
            log.warning("audit checkpoint ignored: %s", exc)
            self.held = None
        self._update_hello()

    def consider(self, message: agent_pb2.AuditCheckpoint) -> agent_pb2.AuditWitness:
        """Accept ``message``'s checkpoint if it is valid and extends the held one; the
        answer says what is held now and why the checkpoint was refused ('' if not)."""
        refused = ""
        try:
            new = SignedCheckpoint.verified(message.checkpoint, message.signature, self._verify)
        except CheckpointError as exc:
            refused = str(exc)
        else:
            held = self.held.checkpoint if self.held else None
            refused = extension_problem(held, new.checkpoint, message.proof_from, message.proof)
            if not refused and (held is None or new.checkpoint.count > held.count):
                self._store(new)
        if refused:
            log.warning("audit checkpoint from the collector REFUSED: %s", refused)
        held_now = self.held.checkpoint if self.held else None
        return agent_pb2.AuditWitness(
            count=held_now.count if held_now else 0,
            head=held_now.head if held_now else "",
            refused=refused,
        )

    def on_message(self, message: agent_pb2.CollectorMessage) -> None:
        """The link's handler for ``audit_checkpoint`` (answers without blocking)."""
        if message.WhichOneof("kind") != "audit_checkpoint":
            return
        answer = agent_pb2.AgentMessage(audit_witness=self.consider(message.audit_checkpoint))
        task = asyncio.get_running_loop().create_task(self._send(answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _store(self, signed: SignedCheckpoint) -> None:
        data = json.dumps(signed.document(), indent=2, sort_keys=True).encode() + b"\n"
        write_atomic(self._path, data)
        self.held = signed
        self._update_hello()
        log.info(
            "audit checkpoint accepted: %d entries, head %s",
            signed.checkpoint.count,
            signed.checkpoint.head[:16],
        )

    def _update_hello(self) -> None:
        checkpoint = self.held.checkpoint if self.held else None
        self._hello.audit_checkpoint_count = checkpoint.count if checkpoint else 0
        self._hello.audit_checkpoint_head = checkpoint.head if checkpoint else ""
