"""Playbook runs: engineers ask, agents verify and execute, the collector records.

The collector never decides what runs on a host. It forwards the vendor-signed
catalogue entry (manifest, signature, playbook bytes) with typed parameters; the
agent verifies the signature and digest, validates the parameters and applies the
customer's policy. The collector stores the run, its live output (under
``DATA_DIR/runs/RUN_ID.out``, hashed when finished; each step's start offset in the
sidecar ``RUN_ID.steps``, JSON lines ``{"step": NAME, "offset": N}`` written when the
step changes, so ``step_outputs`` splits the output by step), the result, and attaches the
output to the ticket the run belongs to. Refusals by the agent go to the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from collector.approval_check import check_pinned_root, check_run, verify_bundle
from collector.auth import Principal
from collector.errors import (
    Conflict,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from collector.revocation import require_not_revoked
from collector.rules import HostRef
from collector.runs.catalogue import Catalogue
from collector.runs.model import FINISHED_RUN_STATES, OutputPiece, RunRecord
from collector.store import AgentRecord
from collector.store.writer import StoreThread
from collector.tickets.model import NewEvent
from common.approval_format import bound_params
from playbooks.errors import PlaybookError
from playbooks.model import Playbook
from playbooks.params import validate_params
from proto import agent_pb2

log = logging.getLogger(__name__)

MAX_OUTPUT_BYTES = 16 * 1024 * 1024  # per run, on the collector's disk
# A run with no result this long after it was requested is given up: the agent waits
# at most 1 h for an approval, and runs are bounded by their playbook's timeout.
STALE_RUN_MS = 2 * 3600 * 1000
EXCERPT_BYTES = 8 * 1024  # attached to the ticket timeline
SECRET_MASK = "***"
FOLLOW_POLL_SECONDS = 1.0  # a follower re-reads the run this often (runs on other replicas)
PIECE_BYTES = 64 * 1024  # read from the output file at a time for a follower on another replica

# Sends to an agent connected to another replica (``AgentRouter.send``); False if none.
Forward = Callable[[str, agent_pb2.CollectorMessage], Awaitable[bool]]
# The live output of a run (agent id, run id, from byte offset) from the replica holding
# its agent (``RelayClient.follow_run``); None when no other live replica holds it.
RemoteOutput = Callable[[str, str, int], Awaitable[AsyncIterator[OutputPiece] | None]]


class SharedFiles(Protocol):
    """Finished files other replicas can read (``collector.shared_files.SharedFiles``)."""

    async def publish(self, path: Path) -> None:
        """Copy the finished file at ``path`` where every replica reads it."""

    async def read(self, path: Path) -> bytes | None:
        """The file from this replica's disk, else from the shared copy; None if neither."""


class RunService:
    """Starts runs, relays approvals, records what agents report."""

    def __init__(
        self,
        db: StoreThread,
        catalogue: Catalogue | None,
        send: Callable[[str, agent_pb2.CollectorMessage], bool],
        output_dir: Path,
        clock_ms: Callable[[], int],
        forward: Forward | None = None,
        files: SharedFiles | None = None,
        remote_output: RemoteOutput | None = None,
    ) -> None:
        """``forward`` reaches agents on other replicas, ``files`` shares finished
        outputs with them, ``remote_output`` streams their runs' live output (all None
        with one process: SQLite)."""
        self._db = db
        self._store = db.store
        self.catalogue = catalogue
        self._send = send
        self._forward = forward
        self._files = files
        self._remote_output = remote_output
        self._output_dir = output_dir
        self._clock_ms = clock_ms
        self._followers: dict[str, list[asyncio.Queue[Any]]] = defaultdict(list)
        self._current_step: dict[str, str] = {}  # run id -> step of the last output chunk
        output_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    # -- engineers ----------------------------------------------------------------------

    def list_playbooks(self) -> list[Playbook]:
        if self.catalogue is None:
            return []
        return [self.catalogue.playbooks[name] for name in sorted(self.catalogue.playbooks)]

    async def start(
        self,
        requested_by: str,
        agent: AgentRecord,
        playbook_name: str,
        params: Mapping[str, str],
        ticket_id: int | None,
        reason: str = "",
    ) -> RunRecord:
        """Record a run and send it to the agent; ``undeliverable`` if it is not connected.

        ``reason`` (why the engineer runs it; optional) is stored with the run and goes
        into the audit entry ``playbook.run_requested``. FailedPrecondition ("agent
        revoked") for a revoked agent."""
        require_not_revoked(agent, "run a playbook on it")
        playbook = self._playbook(playbook_name)
        masked = _mask(playbook, params)
        self._check_params(playbook, params)
        assert self.catalogue is not None
        playbook_yaml = self.catalogue.files[playbook.name]
        now = self._clock_ms()
        run = RunRecord(
            run_id="run-" + secrets.token_hex(8),
            agent_id=agent.agent_id,
            customer=agent.customer,
            hostname=agent.hostname,
            playbook=playbook.name,
            version=playbook.version,
            mode=playbook.mode,
            params=masked,
            requested_by=requested_by,
            requested_ms=now,
            ticket_id=ticket_id,
            updated_ms=now,
            playbook_digest="sha256:" + hashlib.sha256(playbook_yaml).hexdigest(),
            bound_params=bound_params(params, _secret_names(playbook)),
            reason=reason,
        )
        run = await self._db.call(self._store.create_run, run)
        requested: dict[str, Any] = {"params": dict(masked)}
        if reason:
            requested["reason"] = reason
        await self._audit(requested_by, "playbook.run_requested", run, requested)
        request = agent_pb2.RunRequest(
            run_id=run.run_id,
            playbook=playbook.name,
            params=dict(params),
            manifest=self.catalogue.manifest,
            manifest_signature=self.catalogue.signature,
            playbook_yaml=playbook_yaml,
            requested_by=requested_by,
            ticket_id=ticket_id or 0,
        )
        if await self._deliver(agent.agent_id, agent_pb2.CollectorMessage(run_request=request)):
            return await self._update(run.run_id, state="sent")
        return await self._finish(run.run_id, "undeliverable", "the host is not connected")

    async def approve(self, who: Principal, run_id: str, signed_approval: bytes = b"") -> RunRecord:
        """A customer user of the run's customer approves a run that waits for approval.

        ``signed_approval`` (a bundle, docs/approvers-cli.md) must name exactly this run
        and verify (checked here for early errors; the host checks again); it is stored
        with the run and forwarded to the host. Without one, the approval is accepted
        only if the host pins no approval root (its own policy then decides).
        """
        if who.role != "customer":
            raise PermissionDenied("only a customer user of this host's customer can approve")
        run = await self.get(who, run_id)
        if run.state != "waiting_approval":
            raise Conflict(f"run {run_id} is {run.state}, not waiting for approval")
        agent = await self._db.call(self._store.get_agent, run.agent_id)
        if agent is not None:
            require_not_revoked(agent, "approve a run on it")
        pinned = agent.approval_root if agent is not None else ""
        approved_by, expires_ms, details = f"user:{who.name}", 0, {}
        if signed_approval:
            revoked = {
                r.key_fingerprint
                for r in await self._db.call(self._store.list_revocations, run.customer)
            }
            signed = verify_bundle(signed_approval, self._clock_ms(), revoked)
            check_pinned_root(signed, pinned, run.hostname)
            check_run(signed, run)
            approved_by, expires_ms = signed.certificate.approver, signed.approval.expires_ms
            details = {
                "approver": approved_by,
                "key_fingerprint": signed.key_fingerprint,
                "nonce": signed.approval.nonce,
            }
        elif pinned:
            raise FailedPrecondition(
                f"host {run.hostname!r} pins the customer's approval root {pinned}: approve "
                "with a signed approval (create your key with `aftercare approvers key` and "
                "ask your admin to certify it with `aftercare approvers add`)"
            )
        approval = agent_pb2.RunApproval(
            run_id=run_id,
            approved_by=approved_by,
            expires_unix_ms=expires_ms,
            signed_approval=signed_approval,
        )
        if not await self._deliver(run.agent_id, agent_pb2.CollectorMessage(run_approval=approval)):
            raise Conflict(f"the host of run {run_id} is not connected; approve on the host")
        await self._audit(
            f"user:{who.name}",
            "playbook.run_approved",
            run,
            {"signed": bool(signed_approval), **details},
        )
        return await self._update(
            run_id, approved_by=approved_by, signed_approval=signed_approval or None
        )

    async def deny(self, who: Principal, run_id: str, reason: str) -> RunRecord:
        """A customer user of the run's customer denies a run that waits for approval.

        The run ends as ``refused`` with the message "denied by user:NAME: REASON"
        (audited ``playbook.run_denied``); the host is told to drop it (RunCancel) if it
        is connected. InvalidRequest for an empty reason; Conflict if the run does not
        wait for approval."""
        if who.role != "customer":
            raise PermissionDenied("only a customer user of this host's customer can deny")
        reason = reason.strip()
        if not reason:
            raise InvalidRequest("reason must not be empty: say why the run is denied")
        run = await self.get(who, run_id)
        if run.state != "waiting_approval":
            raise Conflict(f"run {run_id} is {run.state}, not waiting for approval")
        message = f"denied by user:{who.name}: {reason}"
        cancel = agent_pb2.RunCancel(run_id=run_id, reason=message)
        self._send(run.agent_id, agent_pb2.CollectorMessage(run_cancel=cancel))
        await self._audit(f"user:{who.name}", "playbook.run_denied", run, {"reason": reason})
        return await self._finish(run_id, "refused", message, audit_refusal=False)

    async def get(self, who: Principal, run_id: str) -> RunRecord:
        run = await self._db.call(self._store.get_run, run_id)
        if run is None or not who.can_see(run.customer):
            raise NotFound(f"no run {run_id}; `aftercare runs` lists them")
        return run

    async def list_runs(self, who: Principal, agent_id: str | None, limit: int) -> list[RunRecord]:
        customer = who.visible_customer(None)
        return await self._db.call(self._store.list_runs, customer, agent_id, limit)

    async def list_ticket_runs(self, who: Principal, ticket_id: int, limit: int) -> list[RunRecord]:
        """The runs attached to ticket ``ticket_id`` that ``who`` may see, newest first."""
        customer = who.visible_customer(None)
        return await self._db.call(
            lambda: self._store.list_runs(customer, None, limit, ticket_id=ticket_id)
        )

    def output(self, run_id: str, limit: int = MAX_OUTPUT_BYTES) -> tuple[bytes, bool]:
        """The stored (redacted) output and whether it was cut at ``limit``."""
        path = self._output_path(run_id)
        if not path.exists():
            return b"", False
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
        return data[:limit], len(data) > limit

    def output_from(self, run_id: str, offset: int, limit: int) -> bytes:
        """At most ``limit`` bytes of the stored output from byte ``offset`` on (b"" past
        its end): a follower reads what was added since it last looked."""
        path = self._output_path(run_id)
        if not path.exists():
            return b""
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(limit)

    async def read_output(self, run_id: str, limit: int = MAX_OUTPUT_BYTES) -> tuple[bytes, bool]:
        """Like ``output``, but a run whose agent is on another replica is read from the
        shared store once finished."""
        path = self._output_path(run_id)
        if self._files is None or path.exists():
            return self.output(run_id, limit)
        data = await self._files.read(path) or b""
        return data[:limit], len(data) > limit

    def step_outputs(self, run_id: str) -> dict[str, bytes]:
        """The stored output split by step name (steps run one after another), in
        step order; empty when the run produced no output. A step whose output came
        after the size cap has ``b""``."""
        data, _ = self.output(run_id)
        return _split_by_step(data, self._step_marks(run_id))

    async def read_step_outputs(self, run_id: str) -> dict[str, bytes]:
        """Like ``step_outputs``, for a run whose agent may be on another replica (read
        from the shared store once finished)."""
        steps = self._output_dir / f"{run_id}.steps"
        if self._files is None or steps.exists():
            return self.step_outputs(run_id)
        data, _ = await self.read_output(run_id)
        return _split_by_step(data, await self._read_step_marks(run_id))

    async def _read_step_marks(self, run_id: str) -> list[tuple[str, int]]:
        """The step marks from this replica's disk, else from the shared copy."""
        steps = self._output_dir / f"{run_id}.steps"
        if self._files is None or steps.exists():
            return self._step_marks(run_id)
        text = (await self._files.read(steps) or b"").decode("utf-8", "replace")
        return _parse_marks(run_id, text)

    def _step_marks(self, run_id: str) -> list[tuple[str, int]]:
        path = self._output_dir / f"{run_id}.steps"
        if not path.exists():
            return []
        return _parse_marks(run_id, path.read_text(encoding="utf-8"))

    def _mark_step(self, run_id: str, step: str, offset: int) -> None:
        """Record where ``step``'s output starts, if it is not the current step."""
        current = self._current_step.get(run_id)
        if current is None:  # first chunk since the collector started: the file knows
            marks = self._step_marks(run_id)
            current = marks[-1][0] if marks else None
        if current == step:
            return
        self._current_step[run_id] = step
        line = json.dumps({"step": step, "offset": offset}, ensure_ascii=False) + "\n"
        path = self._output_dir / f"{run_id}.steps"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(line)

    async def follow(self, who: Principal, run_id: str) -> AsyncIterator[Any]:
        """The run's current state, then its output and state changes until it finishes
        (a run already finished: its state, then its stored output as ``OutputPiece``s).

        Output is an agent ``RunOutput`` chunk when the agent streams to this replica;
        for an agent on another replica it is ``OutputPiece``s, live from that replica
        (``remote_output``) and, once the run finished, whatever was not received yet
        from the shared copy: each byte once."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._followers[run_id].append(queue)
        relaying: asyncio.Task[None] | None = None
        try:
            run = await self.get(who, run_id)
            yield run
            if run.state in FINISHED_RUN_STATES:  # finished before following began
                for stored in await self._shared_pieces(run_id, 0):
                    yield stored
                return
            relaying = await self._relay_output(run, queue)
            last, output_seen, received = run, False, 0
            while True:
                item = await self._next_followed(queue, last)
                if item is None or _same_state(item, last):  # polled and published
                    continue
                if isinstance(item, OutputPiece):
                    piece = _unseen(item, received)
                    if piece is not None:
                        received = piece.end
                        yield piece
                    continue
                if isinstance(item, RunRecord):
                    elsewhere = not self._output_path(run_id).exists()  # another replica's agent
                    if item.state in FINISHED_RUN_STATES and elsewhere and not output_seen:
                        for piece in await self._shared_pieces(run_id, received):
                            yield piece
                    last = item
                else:
                    output_seen = True
                yield item
                if isinstance(item, RunRecord) and item.state in FINISHED_RUN_STATES:
                    return
        finally:
            if relaying is not None:
                relaying.cancel()
            self._followers[run_id].remove(queue)
            if not self._followers[run_id]:
                del self._followers[run_id]

    async def _relay_output(
        self, run: RunRecord, queue: asyncio.Queue[Any]
    ) -> asyncio.Task[None] | None:
        """Put the live output of a run whose agent is on another replica into
        ``queue`` (in the background); None when the agent is here or nowhere."""
        if self._remote_output is None or self._output_path(run.run_id).exists():
            return None
        pieces = await self._remote_output(run.agent_id, run.run_id, 0)
        if pieces is None:
            return None

        async def pump() -> None:
            async with contextlib.aclosing(pieces):  # type: ignore[type-var]
                async for piece in pieces:
                    queue.put_nowait(piece)

        return asyncio.get_running_loop().create_task(pump())

    async def _shared_pieces(self, run_id: str, offset: int) -> list[OutputPiece]:
        """A finished run's output from byte ``offset`` on (this replica's file, else the
        shared copy of another replica's), split by step."""
        data, _ = await self.read_output(run_id)
        return _pieces(run_id, offset, data[offset:], await self._read_step_marks(run_id))

    async def output_pieces(self, run_id: str, offset: int) -> AsyncIterator[OutputPiece]:
        """This replica's stored output of ``run_id`` from byte ``offset`` on, each byte
        once, live until the run finishes (for a follower on another replica:
        ``ReplicaRelay.FollowRun``). NotFound for an unknown run."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._followers[run_id].append(queue)
        try:
            run = await self._db.call(self._store.get_run, run_id)
            if run is None:
                raise NotFound(f"no run {run_id}")
            while True:
                finished = run.state in FINISHED_RUN_STATES  # then the file is complete
                while data := self.output_from(run_id, offset, PIECE_BYTES):
                    for piece in _pieces(run_id, offset, data, self._step_marks(run_id)):
                        yield piece
                    offset += len(data)
                if finished:
                    return
                item = await self._next_followed(queue, run)
                if item is None:
                    return
                if isinstance(item, RunRecord):
                    run = item
        finally:
            self._followers[run_id].remove(queue)
            if not self._followers[run_id]:
                del self._followers[run_id]

    async def _next_followed(self, queue: asyncio.Queue[Any], last: RunRecord) -> Any:
        """The next item this replica published, else (after a poll interval) the run
        as stored (another replica may have changed it); None if it is gone."""
        try:
            return await asyncio.wait_for(queue.get(), FOLLOW_POLL_SECONDS)
        except TimeoutError:
            stored = await self._db.call(self._store.get_run, last.run_id)
            return stored

    async def expire_stale(self, now_ms: int) -> int:
        """Fail unfinished runs older than STALE_RUN_MS (the agent never answered)."""
        runs = await self._db.call(self._store.list_runs, None, None, 500)
        stale = [
            run
            for run in runs
            if run.state not in FINISHED_RUN_STATES and now_ms - run.requested_ms > STALE_RUN_MS
        ]
        for run in stale:
            await self._finish(
                run.run_id, "failed", "no result from the agent (it restarted or lost the run)"
            )
        return len(stale)

    # -- agents -------------------------------------------------------------------------

    async def on_agent_message(self, host: HostRef, message: agent_pb2.AgentMessage) -> None:
        """Record a run update, output chunk or result sent by ``host``'s agent."""
        kind = message.WhichOneof("kind") or ""
        run_id = getattr(message, kind).run_id
        run = await self._db.call(self._store.get_run, run_id)
        if run is None or run.agent_id != host.agent_id:
            log.warning("agent %s sent %s for unknown run %s", host.agent_id, kind, run_id)
            return
        if run.state in FINISHED_RUN_STATES:
            return
        if kind == "run_output":
            self._append_output(run, message.run_output)
        elif kind == "run_update":
            await self._on_update(run, message.run_update)
        else:
            await self._on_result(run, message.run_result)

    def _append_output(self, run: RunRecord, chunk: agent_pb2.RunOutput) -> None:
        path = self._output_path(run.run_id)
        size = path.stat().st_size if path.exists() else 0
        room = MAX_OUTPUT_BYTES - size
        self._mark_step(run.run_id, chunk.step, min(size, MAX_OUTPUT_BYTES))
        if room > 0:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "ab") as handle:
                handle.write(chunk.data[:room])
        self._publish(run.run_id, chunk)

    async def _on_update(self, run: RunRecord, update: agent_pb2.RunUpdate) -> None:
        if update.state == "refused":
            await self._finish(run.run_id, "refused", update.message)
            return
        if update.state not in ("verified", "waiting_approval", "running"):
            log.warning("run %s: unknown state %r from the agent", run.run_id, update.state)
            return
        state = "sent" if update.state == "verified" else update.state
        await self._update(run.run_id, state=state, message=update.message)

    async def _on_result(self, run: RunRecord, result: agent_pb2.RunResult) -> None:
        summary = {
            "status": result.status,
            "duration_ms": result.duration_ms,
            "redactions": result.redactions,
            "error": result.error,
            "steps": [_step_dict(step) for step in result.steps],
        }
        state = result.status if result.status in FINISHED_RUN_STATES else "failed"
        record = await self._finish(run.run_id, state, result.error, summary)
        if record.ticket_id:
            await self._attach_to_ticket(record)

    async def _finish(
        self,
        run_id: str,
        state: str,
        message: str,
        result: Mapping[str, Any] | None = None,
        *,
        audit_refusal: bool = True,
    ) -> RunRecord:
        """End the run; a refusal by the agent is audited (``audit_refusal``)."""
        data, _ = self.output(run_id)
        self._current_step.pop(run_id, None)
        if self._files is not None:  # before the state: a replica seeing it finished reads it
            await self._files.publish(self._output_path(run_id))
            await self._files.publish(self._output_dir / f"{run_id}.steps")
        record = await self._update(
            run_id,
            state=state,
            message=message,
            finished_ms=self._clock_ms(),
            result=result,
            output_bytes=len(data),
            output_sha256=hashlib.sha256(data).hexdigest(),
        )
        if state == "refused" and audit_refusal:
            await self._audit(
                f"agent:{record.agent_id}", "playbook.run_refused", record, {"reason": message}
            )
        return record

    async def _attach_to_ticket(self, run: RunRecord) -> None:
        data, _ = self.output(run.run_id, EXCERPT_BYTES)
        event = NewEvent(
            at_ms=self._clock_ms(),
            actor=f"agent:{run.agent_id}",
            kind="diagnostics",
            details={
                "run_id": run.run_id,
                "playbook": run.playbook,
                "version": run.version,
                "status": run.state,
                "output": data.decode("utf-8", "replace"),
                "output_bytes": run.output_bytes,
                "output_sha256": run.output_sha256,
            },
        )
        assert run.ticket_id is not None
        await self._db.call(self._store.add_ticket_events, run.ticket_id, [event])

    # -- helpers ------------------------------------------------------------------------

    async def _deliver(self, agent_id: str, message: agent_pb2.CollectorMessage) -> bool:
        """Send on this replica's stream of the agent, else forward to its replica."""
        if self._send(agent_id, message):
            return True
        return self._forward is not None and await self._forward(agent_id, message)

    async def _update(self, run_id: str, **fields: Any) -> RunRecord:
        record = await self._db.call(
            lambda: self._store.update_run(run_id, at_ms=self._clock_ms(), **fields)
        )
        self._publish(run_id, record)
        return record

    def _publish(self, run_id: str, item: Any) -> None:
        for queue in self._followers.get(run_id, ()):
            queue.put_nowait(item)

    async def _audit(
        self, actor: str, action: str, run: RunRecord, details: Mapping[str, Any]
    ) -> None:
        await self._db.call(
            self._store.append_audit,
            actor,
            action,
            run.run_id,
            {
                "playbook": run.playbook,
                "agent_id": run.agent_id,
                "customer": run.customer,
                **details,
            },
            self._clock_ms(),
        )

    def _playbook(self, name: str) -> Playbook:
        if self.catalogue is None:
            raise InvalidRequest("this collector serves no playbook catalogue (--playbooks)")
        playbook = self.catalogue.playbooks.get(name)
        if playbook is None:
            raise NotFound(f"no playbook {name!r}; `aftercare playbooks list` shows them")
        return playbook

    @staticmethod
    def _check_params(playbook: Playbook, params: Mapping[str, str]) -> None:
        """Early, friendly parameter errors (the agent validates again: it trusts no one)."""
        try:
            validate_params(playbook, params)
        except PlaybookError as exc:
            raise InvalidRequest(str(exc)) from exc

    def _output_path(self, run_id: str) -> Path:
        return self._output_dir / f"{run_id}.out"


def _same_state(item: Any, last: RunRecord) -> bool:
    """Whether ``item`` is the run as ``last`` already showed it."""
    return isinstance(item, RunRecord) and (item.state, item.updated_ms) == (
        last.state,
        last.updated_ms,
    )


def _unseen(piece: OutputPiece, received: int) -> OutputPiece | None:
    """The part of ``piece`` past the first ``received`` bytes; None if it has none, or
    if it starts past them (a gap: the shared copy fills it once the run finished)."""
    if piece.end <= received or piece.offset > received:
        return None
    skip = received - piece.offset
    return OutputPiece(piece.run_id, received, piece.step, piece.data[skip:])


def _pieces(
    run_id: str, offset: int, data: bytes, marks: list[tuple[str, int]]
) -> list[OutputPiece]:
    """``data`` (output from byte ``offset`` on) cut where a step starts, each piece
    named by its step (``marks``: step start offsets, in order)."""
    if not data:
        return []
    end = offset + len(data)
    bounds = [offset, *sorted({at for _, at in marks if offset < at < end}), end]
    return [
        OutputPiece(run_id, start, _step_at(marks, start), data[start - offset : stop - offset])
        for start, stop in itertools.pairwise(bounds)
    ]


def _step_at(marks: list[tuple[str, int]], offset: int) -> str:
    """The step whose output holds byte ``offset`` ("" before the first mark)."""
    step = ""
    for name, start in marks:
        if start <= offset:
            step = name
    return step


def _parse_marks(run_id: str, text: str) -> list[tuple[str, int]]:
    """The step marks of a ``RUN_ID.steps`` file: (step, output offset), in order."""
    marks = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            marks.append((str(entry["step"]), int(entry["offset"])))
        except (ValueError, KeyError, TypeError):
            log.warning("run %s: unreadable step mark %r skipped", run_id, line[:80])
    return marks


def _split_by_step(data: bytes, marks: list[tuple[str, int]]) -> dict[str, bytes]:
    outputs: dict[str, bytes] = {}
    for index, (step, offset) in enumerate(marks):
        end = marks[index + 1][1] if index + 1 < len(marks) else len(data)
        outputs[step] = outputs.get(step, b"") + data[offset:end]
    return outputs


def _secret_names(playbook: Playbook) -> frozenset[str]:
    return frozenset(p.name for p in playbook.parameters if p.secret)


def _mask(playbook: Playbook, params: Mapping[str, str]) -> dict[str, str]:
    secret = _secret_names(playbook)
    return {k: SECRET_MASK if k in secret else v for k, v in params.items()}


def _step_dict(step: agent_pb2.StepResult) -> dict[str, Any]:
    return {
        "name": step.name,
        "status": step.status,
        "exit_code": step.exit_code if step.has_exit_code else None,
        "duration_ms": step.duration_ms,
        "truncated": step.truncated,
        "output_bytes": step.output_bytes,
        "redactions": step.redactions,
        "error": step.error,
    }
