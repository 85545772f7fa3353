"""Know-how (问题知识库): resolved tickets like this one, with their cause and actions.

When a ticket opens, an engineer wants to see how the same fault was fixed before.
``similar`` ranks resolved and closed tickets against a ticket by what they share:

- the same rule (``ticket.rule``; Alertmanager tickets: the ``alertname`` label): 4
- the same category (the ``category`` label of the shipped rules): 2
- the same host class (the hostname without digits, e.g. ``web-01`` -> ``web-``): 1
- the same host: 1 more
- words in common in the titles: up to 3 (Jaccard similarity of the word sets x 3)

Only candidates that carry a cause or actions are offered (there is nothing to learn
from the others), never the ticket itself, and only those scoring at least
``MIN_SCORE``. Pure: the caller reads the candidates (and applies tenancy: a customer
only ever passes its own customer's tickets).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from collector.tickets.model import Ticket

__all__ = ["MIN_SCORE", "Match", "host_class", "similar"]

MIN_SCORE = 1.5  # e.g. three of four title words, or the same host class and some words
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Match:
    """A resolved ticket like the one asked about, with why it matched."""

    ticket: Ticket
    score: float
    reasons: tuple[str, ...]  # e.g. ("same rule", "same host class", "similar title")


def host_class(hostname: str) -> str:
    """The hostname with its digits removed: hosts numbered within one role share it."""
    return re.sub(r"\d+", "", hostname.lower())


def similar(ticket: Ticket, candidates: Iterable[Ticket], limit: int = 5) -> list[Match]:
    """The ``limit`` best matches for ``ticket`` among resolved or closed ``candidates``
    with a cause or actions, best first (ties: most recently resolved first)."""
    matches = [
        m
        for c in candidates
        if c.id != ticket.id and c.state in ("resolved", "closed") and _has_knowhow(c)
        for m in (_match(ticket, c),)
        if m.score >= MIN_SCORE
    ]
    matches.sort(key=lambda m: (-m.score, -(m.ticket.resolved_ms or 0), -m.ticket.id))
    return matches[:limit]


def _has_knowhow(ticket: Ticket) -> bool:
    return bool(ticket.resolution.get("cause") or ticket.resolution.get("actions"))


def _match(ticket: Ticket, other: Ticket) -> Match:
    score = 0.0
    reasons: list[str] = []
    rule = _rule(ticket)
    if rule and rule == _rule(other):
        score += 4
        reasons.append("same rule")
    category = ticket.labels.get("category", "")
    if category and category == other.labels.get("category", ""):
        score += 2
        reasons.append("same category")
    if ticket.hostname and host_class(ticket.hostname) == host_class(other.hostname):
        score += 1
        reasons.append("same host class")
        if ticket.hostname == other.hostname:
            score += 1
            reasons.append("same host")
    overlap = _title_overlap(ticket.title, other.title)
    if overlap > 0:
        score += 3 * overlap
        reasons.append("similar title")
    return Match(other, round(score, 2), tuple(reasons))


def _rule(ticket: Ticket) -> str:
    return ticket.rule or ticket.labels.get("alertname", "")


def _title_overlap(a: str, b: str) -> float:
    words_a = {w.lower() for w in _WORD.findall(a)}
    words_b = {w.lower() for w in _WORD.findall(b)}
    if not words_a or not words_b:
        return 0.0
    return len(words_a & words_b) / len(words_a | words_b)
