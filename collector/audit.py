"""Hash-chained audit log: the hashing rule and chain verification (pure, no SQL).

Each entry stores ``hash = entry_hash(prev_hash, at_ms, actor, action, target, details)``
where ``prev_hash`` is the previous entry's hash (``GENESIS_HASH`` for the first entry)
and ids run 1, 2, 3, ... without gaps. ``verify_chain`` then detects:

- an edited entry (any field changed): its recomputed hash no longer matches;
- a deleted, inserted or reordered entry: an id gap or a ``prev_hash`` that does not
  match the previous entry's hash — even if the attacker recomputed the edited entry's
  own hash, the next entry's ``prev_hash`` gives it away.

What it cannot detect on its own: removal of the newest entries (truncating the tail)
or a wholesale rewrite of the chain from some point onwards, because a shorter or
rebuilt chain is internally consistent. Anchor the head (``entries[-1].hash`` and its
id) somewhere the writer cannot change — a ticket, an off-host log, a signed report —
and verify from there to catch that.

The store backends persist entries and call ``entry_hash``; they import this module,
never the other way round.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # runtime import would be circular: the store imports this module
    from collector.store.base import AuditEntry

__all__ = ["GENESIS_HASH", "ChainVerdict", "canonical_json", "entry_hash", "verify_chain"]

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, no whitespace, UTF-8, no NaN/Infinity.

    Raises ``TypeError``/``ValueError`` for values JSON cannot represent exactly.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def entry_hash(
    prev_hash: str,
    at_ms: int,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any],
) -> str:
    """SHA-256 (hex) over the canonical JSON encoding of the entry and its predecessor."""
    document = {
        "prev_hash": prev_hash,
        "at_ms": at_ms,
        "actor": actor,
        "action": action,
        "target": target,
        "details": dict(details),
    }
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainVerdict:
    """Outcome of ``verify_chain``: ``checked`` counts entries found good."""

    ok: bool
    checked: int
    first_bad_id: int | None
    reason: str


def verify_chain(
    entries: Iterable[AuditEntry],
    *,
    prev_hash: str = GENESIS_HASH,
    prev_id: int = 0,
) -> ChainVerdict:
    """Check that ``entries`` (in id order) form an unbroken, unedited chain.

    By default the chain must start at the genesis entry (id 1). To verify only a
    suffix, pass the trusted id and hash of the entry just before it.
    """
    checked = 0
    for entry in entries:
        problem = _entry_problem(entry, prev_id, prev_hash)
        if problem:
            return ChainVerdict(ok=False, checked=checked, first_bad_id=entry.id, reason=problem)
        prev_id, prev_hash = entry.id, entry.hash
        checked += 1
    return ChainVerdict(ok=True, checked=checked, first_bad_id=None, reason=f"{checked} entries ok")


def _entry_problem(entry: AuditEntry, prev_id: int, prev_hash: str) -> str:
    """Describe what is wrong with ``entry`` given its predecessor, or '' if nothing."""
    if entry.id != prev_id + 1:
        return (
            f"entry {entry.id} follows entry {prev_id}: entries are missing or reordered "
            f"(expected id {prev_id + 1})"
        )
    if entry.prev_hash != prev_hash:
        return (
            f"entry {entry.id} does not chain to entry {prev_id} (prev_hash mismatch): "
            f"an entry was deleted, inserted or rewritten"
        )
    expected = entry_hash(
        entry.prev_hash, entry.at_ms, entry.actor, entry.action, entry.target, entry.details
    )
    if entry.hash != expected:
        return f"entry {entry.id} was modified after it was written (hash mismatch)"
    return ""
