"""Remote-session requests this host was told about, and approvals given on the host.

The collector sends ``SessionRequested`` while a request waits for a decision. The
running agent remembers them in ``<state dir>/session-requests.json`` (written
atomically, mode 0600; entries past their ``pending_expires`` are pruned on every
write), so ``aftercare-agent sessions`` can list them and ``aftercare-agent
approve-session ID`` can approve one. Approvals are kept by an ``ApprovalBook`` in
``<state dir>/session-approvals`` (one file per session id, 0600, until + by).

The agent polls for approvals of remembered requests and reports each approval to
the collector once: ``reported_until_ms`` in the file records the approval already
sent (a new approval with another end is sent again). The file also records the
host policy's ``[sessions] approval`` mode, so the CLI can refuse an approval that
would not count. Only the agent writes the requests file; the CLI only reads it.
Times are Unix seconds in the API and Unix milliseconds in the file.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from agent.playbook.approvals import ApprovalBook, LocalApproval
from agent.session.errors import RequestError
from common.atomic import write_atomic
from common.durations import parse_duration
from proto import agent_pb2

__all__ = [
    "REQUESTS_FILE",
    "SESSION_APPROVALS_DIR",
    "PendingRequest",
    "SessionRequests",
    "parse_until",
    "valid_session_id",
]

REQUESTS_FILE = "session-requests.json"
SESSION_APPROVALS_DIR = "session-approvals"
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def valid_session_id(session_id: str) -> bool:
    """Whether ``session_id`` (or a tunnel id) can name a file: no separators, no dot-dot."""
    return bool(_SESSION_ID.fullmatch(session_id)) and ".." not in session_id


@dataclass(frozen=True)
class PendingRequest:
    """A request waiting for a decision, as the collector described it."""

    session_id: str
    engineer: str
    reason: str
    duration_ms: int
    pending_expires_ms: int
    ticket_id: int = 0
    reported_until_ms: int = 0  # the local approval (its end) already sent; 0: none

    @classmethod
    def from_message(cls, message: agent_pb2.SessionRequested) -> PendingRequest:
        return cls(
            session_id=message.session_id,
            engineer=message.engineer,
            reason=message.reason,
            duration_ms=message.duration_ms,
            pending_expires_ms=message.pending_expires_unix_ms,
            ticket_id=message.ticket_id,
        )


class SessionRequests:
    """The requests file and the session approvals of one state directory."""

    def __init__(self, state_dir: Path, mode: str = "") -> None:
        """``mode``: the policy's ``[sessions] approval``, recorded on every write (agent)."""
        self.path = state_dir / REQUESTS_FILE
        self.approvals = ApprovalBook(state_dir / SESSION_APPROVALS_DIR)
        self.mode = mode

    # -- the running agent ------------------------------------------------------------

    def remember(self, message: agent_pb2.SessionRequested, now: float) -> PendingRequest | None:
        """Add or refresh a request (keeping what was reported); None if invalid or expired."""
        request = PendingRequest.from_message(message)
        if not valid_session_id(request.session_id) or request.pending_expires_ms <= now * 1000:
            return None
        requests, _ = self._load()
        known = requests.get(request.session_id)
        if known is not None:
            request = replace(request, reported_until_ms=known.reported_until_ms)
        requests[request.session_id] = request
        self._save(requests.values(), now)
        return request

    def forget(self, session_id: str, now: float) -> bool:
        """Drop a request (its session was closed); False if it was not known."""
        requests, _ = self._load()
        if requests.pop(session_id, None) is None:
            return False
        self._save(requests.values(), now)
        return True

    def unreported(self, now: float) -> list[tuple[PendingRequest, LocalApproval]]:
        """Pending requests with a counting local approval not yet sent to the collector."""
        due = []
        for request in self.pending(now):
            approval = self.approvals.approval(request.session_id, now)
            if approval is not None and _ms(approval.until) != request.reported_until_ms:
                due.append((request, approval))
        return due

    def mark_reported(self, session_id: str, approval: LocalApproval, now: float) -> None:
        """Record that ``approval`` of ``session_id`` was sent to the collector."""
        requests, _ = self._load()
        if session_id in requests:
            requests[session_id] = replace(
                requests[session_id], reported_until_ms=_ms(approval.until)
            )
            self._save(requests.values(), now)

    # -- the CLI ------------------------------------------------------------------------

    def policy_mode(self) -> str:
        """The ``[sessions] approval`` mode the agent recorded ("" before its first write)."""
        return self._load()[1]

    def pending(self, now: float) -> list[PendingRequest]:
        """Known requests still pending at ``now``, oldest expiry first."""
        live = [r for r in self._load()[0].values() if r.pending_expires_ms > now * 1000]
        return sorted(live, key=lambda r: (r.pending_expires_ms, r.session_id))

    def approve(self, session_id: str, until: float | None, by: str, now: float) -> LocalApproval:
        """Approve a known pending request until ``until`` (default: now + its duration).

        Raises RequestError for an id that is not a known pending request or an end
        that is not in the future; ApprovalError if the approval cannot be written.
        """
        if not valid_session_id(session_id):
            raise RequestError(f"{session_id!r} is not a session id (such as ses-0123456789ab)")
        mode = self._load()[1]
        if mode in ("signed", "collector", "disabled"):
            raise RequestError(
                f'this host\'s policy ([sessions] approval = "{mode}") does not count approvals '
                "given on the host"
                + (": a customer user approves through aftercare" if mode != "disabled" else "")
            )
        request = next((r for r in self.pending(now) if r.session_id == session_id), None)
        if request is None:
            raise RequestError(
                f"no pending request {session_id} is known on this host; is the agent running "
                "and connected? `aftercare-agent sessions` lists them"
            )
        end = now + request.duration_ms / 1000 if until is None else until
        if end <= now:
            raise RequestError(f"the approval must end in the future, not at {_iso(end)}")
        self.approvals.approve(session_id, end, by=by, binding=request.engineer)
        return LocalApproval(session_id, end, by, request.engineer)

    # -- the file -----------------------------------------------------------------------

    def _load(self) -> tuple[dict[str, PendingRequest], str]:
        """The requests in the file, and the policy mode it records ("" if none)."""
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, ""
        except (OSError, ValueError) as exc:
            raise RequestError(f"cannot read {self.path}: {exc}") from exc
        if not isinstance(document, dict):
            return {}, ""
        entries = document.get("requests", [])
        requests = {}
        for entry in entries if isinstance(entries, list) else []:
            request = _entry(entry)
            if request is not None:
                requests[request.session_id] = request
        return requests, str(document.get("session_approval", ""))

    def _save(self, requests: Iterable[PendingRequest], now: float) -> None:
        live = [asdict(r) for r in requests if r.pending_expires_ms > now * 1000]
        document = {"session_approval": self.mode, "requests": live}
        data = json.dumps(document, indent=2, sort_keys=True) + "\n"
        try:
            write_atomic(self.path, data.encode("utf-8"))
        except OSError as exc:
            raise RequestError(f"cannot write {self.path}: {exc}") from exc


def _entry(entry: Any) -> PendingRequest | None:
    """A PendingRequest from one file entry; None for anything malformed."""
    if not isinstance(entry, dict):
        return None
    try:
        request = PendingRequest(
            session_id=str(entry["session_id"]),
            engineer=str(entry.get("engineer", "")),
            reason=str(entry.get("reason", "")),
            duration_ms=int(entry.get("duration_ms", 0)),
            pending_expires_ms=int(entry["pending_expires_ms"]),
            ticket_id=int(entry.get("ticket_id", 0)),
            reported_until_ms=int(entry.get("reported_until_ms", 0)),
        )
    except (KeyError, TypeError, ValueError):
        return None
    return request if valid_session_id(request.session_id) else None


def parse_until(text: str, now: float) -> float:
    """Unix seconds from ``--until``: a duration from ``now`` ("45m") or an ISO time.

    An ISO time without a zone is local time. Raises RequestError for anything else.
    """
    try:
        return now + parse_duration(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise RequestError(
            f"--until {text!r}: expected a duration (45m, 2h) or an ISO time "
            "(2030-01-31T18:00, with or without a zone)"
        ) from exc
    return (moment if moment.tzinfo else moment.astimezone()).timestamp()


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")
