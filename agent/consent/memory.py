"""What the host remembers about approvals: used nonces and the root's revocations.

Kept in ``<state dir>/consent.json`` (mode 0600, replaced atomically):

* ``nonces``: ``{NONCE: {"subject": KEY, "expires_ms": N}}`` - every approval used
  here, until it expires. A run approval is used once; a session approval may be
  shown again for the same session (an engineer reconnecting inside the window),
  never for another subject.
* ``revocations``: the signed revocation documents accepted so far (base64), and
  the fingerprints of the keys they revoke. A revocation is never forgotten, so a
  collector that stops sending it cannot bring a key back.

An unreadable or corrupt file is an error (``ApprovalRefused`` on use): forgetting
nonces or revocations silently would reopen replays.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.errors import ApprovalRefused
from common.atomic import write_atomic

__all__ = ["MEMORY_FILE", "ConsentMemory"]

MEMORY_FILE = "consent.json"


class ConsentMemory:
    """The nonces and revocations of one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / MEMORY_FILE
        self._lock = threading.Lock()

    def claim_nonce(
        self, nonce: str, subject: str, expires_ms: int, now_ms: int, *, reusable: bool
    ) -> None:
        """Record that ``nonce`` approves ``subject`` until ``expires_ms``.

        Raises ApprovalRefused if the nonce was used before for another subject, or
        for this one when the approval is not ``reusable``.
        """
        with self._lock:
            state = self._load()
            nonces = {n: e for n, e in state["nonces"].items() if e["expires_ms"] > now_ms}
            used = nonces.get(nonce)
            if used is not None and (used["subject"] != subject or not reusable):
                raise ApprovalRefused(
                    f"the approval was already used (nonce {nonce[:12]}… for {used['subject']}): "
                    "a replayed approval does not count"
                )
            nonces[nonce] = {"subject": subject, "expires_ms": expires_ms}
            self._save({**state, "nonces": nonces})

    def revoked_keys(self) -> frozenset[str]:
        """Fingerprints of the approver keys the root revoked."""
        with self._lock:
            return frozenset(self._load()["revoked_keys"])

    def add_revocations(self, accepted: Iterable[tuple[str, bytes]]) -> int:
        """Remember (key fingerprint, signed document) pairs; returns how many were new."""
        with self._lock:
            state = self._load()
            keys = set(state["revoked_keys"])
            documents = list(state["revocations"])
            added = 0
            for key, document in accepted:
                if key not in keys:
                    keys.add(key)
                    documents.append(base64.b64encode(document).decode("ascii"))
                    added += 1
            if added:
                self._save({**state, "revoked_keys": sorted(keys), "revocations": documents})
            return added

    def _load(self) -> dict[str, Any]:
        try:
            state = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {"nonces": {}, "revoked_keys": [], "revocations": []}
        except (OSError, ValueError) as exc:
            raise ApprovalRefused(
                f"cannot read {self.path} (used approvals and revocations): {exc}; approvals "
                "are refused until it is repaired or removed by the host's administrator"
            ) from exc
        if not isinstance(state, dict):
            raise ApprovalRefused(f"{self.path} is corrupt: expected a JSON object")
        state.setdefault("nonces", {})
        state.setdefault("revoked_keys", [])
        state.setdefault("revocations", [])
        return state

    def _save(self, state: dict[str, Any]) -> None:
        data = json.dumps(state, sort_keys=True, indent=1).encode("utf-8")
        try:
            write_atomic(self.path, data)
        except OSError as exc:
            raise ApprovalRefused(f"cannot record the approval in {self.path}: {exc}") from exc
