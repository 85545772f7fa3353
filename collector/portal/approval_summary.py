"""A signed approval in words: what the signing card shows before the browser signs.

``summary`` turns the canonical approval body the browser is about to sign (the exact
bytes from ``browser_sign.approval_body``, parsed) into translated label/value lines:
who approves, which host, which session and engineer until when, or which playbook,
version, file digest and parameter values, and when the approval expires. It reads
only the body itself, so what is shown is what is signed; the page keeps the exact
bytes in a <details> beside it. Pure (no aiohttp): the caller passes ``gettext``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["LABELS", "summary"]

# Every label shown (extracted for the zh-CN catalogue test through i18n.MESSAGES).
LABELS = (
    "You approve",
    "a remote session",
    "a playbook run",
    "Customer",
    "Approver",
    "Host",
    "Session",
    "Engineer",
    "Access until",
    "Run",
    "Playbook",
    "Version",
    "Playbook file (SHA-256)",
    "Parameters",
    "none",
    "Signed at",
    "The approval expires at",
)


def summary(
    body: Mapping[str, Any], gettext: Callable[[str], str], hostname: str = ""
) -> list[tuple[str, str]]:
    """(label, value) lines of the approval ``body``, labels translated by ``gettext``;
    ``hostname`` (the collector's name for the body's agent id) is shown beside it."""
    _ = gettext
    agent_id = str(body.get("agent_id", ""))
    subject = body.get("subject") or {}
    lines: list[tuple[str, str]] = []
    if subject.get("kind") == "session":
        lines.append((_("You approve"), _("a remote session")))
    else:
        lines.append((_("You approve"), _("a playbook run")))
    lines += [
        (_("Customer"), str(body.get("customer", ""))),
        (_("Approver"), str(body.get("approver", ""))),
        (_("Host"), f"{hostname} ({agent_id})" if hostname else agent_id),
    ]
    if subject.get("kind") == "session":
        lines += [
            (_("Session"), str(subject.get("session_id", ""))),
            (_("Engineer"), str(subject.get("engineer", ""))),
            (_("Access until"), when(subject.get("window_end_ms"))),
        ]
    else:
        params = subject.get("params") or {}
        shown = ", ".join(f"{name}={value}" for name, value in sorted(params.items()))
        lines += [
            (_("Run"), str(subject.get("run_id", ""))),
            (_("Playbook"), str(subject.get("playbook", ""))),
            (_("Version"), str(subject.get("version", ""))),
            (_("Playbook file (SHA-256)"), str(subject.get("digest", ""))),
            (_("Parameters"), shown or _("none")),
        ]
    lines += [
        (_("Signed at"), when(body.get("issued_ms"))),
        (_("The approval expires at"), when(body.get("expires_ms"))),
    ]
    return lines


def when(ms: object) -> str:
    """Unix milliseconds as ``YYYY-MM-DD HH:MM:SS UTC`` ("—" if not a number)."""
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "—"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
