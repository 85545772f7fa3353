"""The agent's half of a playbook run: verify, check policy, wait for approval, execute.

Order, for every RunRequest (nothing is parsed before its signature is checked):

1. the manifest's Ed25519 signature against the vendor keys pinned in the agent
   config, its expiry, and no catalogue or playbook version downgrade;
2. the playbook file's SHA-256 against the manifest, then parsing;
3. the parameters against the playbook's declared types and patterns;
4. the customer's local policy: allow, approve (per run) or deny;
5. for ``approve``: an approval that counts under the policy's source - a
   statement signed by a customer approver that binds exactly this run
   (``agent.consent``), an approval on the host bound to the same digest
   (``aftercare-agent approve``), or, only where the customer opted in with
   ``approval = "collector"``, the collector's word;
6. execution, output redacted before it leaves the host.

A refusal at any step - an approval that does not count included - is reported
to the collector (which audits it) with the reason, written to the host's own
``runs.log``, and nothing runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import PlaybooksConfig
from agent.consent.verify import ConsentVerifier
from agent.errors import ApprovalRefused
from agent.journal import RUNS_JOURNAL_FILE, Journal
from agent.memory import release_free_memory
from agent.playbook.approvals import APPROVALS_DIR, ApprovalBook
from agent.playbook.policy import Decision, Policy, load_policy
from agent.trusted_file import read_vendor_keys
from common.approval_format import RunSubject, bound_params
from common.atomic import write_atomic
from proto import agent_pb2

if TYPE_CHECKING:
    # loaded on the first run, not at start-up (issue 17: the agent's RSS)
    from agent.playbook.executor import Executor, OutputChunk, RenderedBuiltin, RenderedExec
    from agent.playbook.executor import RunResult as ExecutionResult
    from agent.playbook.waiting import WaitingRun, WaitingRuns
    from playbooks.model import BuiltinStep, ExecStep, Playbook

ExecutorFactory = Callable[[], "Executor"]

log = logging.getLogger(__name__)

SEEN_FILE = "playbooks-seen.json"
APPROVAL_TIMEOUT_SECONDS = 3600.0
APPROVAL_POLL_SECONDS = 1.0

Send = Callable[[agent_pb2.AgentMessage], Awaitable[None]]


@dataclass
class _Pending:
    """A run waiting for approval or executing."""

    request: agent_pb2.RunRequest
    approved: asyncio.Event = field(default_factory=asyncio.Event)
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    approval: agent_pb2.RunApproval | None = None  # the latest one the collector sent
    cancel_reason: str = ""  # the collector's RunCancel reason (e.g. a customer's denial)


class RunHandler:
    """Handles run requests, approvals and cancellations from the collector."""

    def __init__(
        self,
        state_dir: Path,
        trusted_keys: Sequence[bytes],
        policy: Policy,
        approvals: ApprovalBook,
        executor: Executor | ExecutorFactory,
        send: Send,
        consent: ConsentVerifier,
        journal: Journal,
    ) -> None:
        self._state_dir = state_dir
        self._trusted_keys = list(trusted_keys)
        self._policy = policy
        self._approvals = approvals
        self._executor: Executor | None = None if callable(executor) else executor
        self._make_executor: ExecutorFactory | None = executor if callable(executor) else None
        self._send = send
        self._consent = consent
        self._journal = journal
        self._waiting_runs: WaitingRuns | None = None
        self._runs: dict[str, _Pending] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def on_message(self, message: agent_pb2.CollectorMessage) -> None:
        """Dispatch a run request, approval or cancellation (never blocks)."""
        kind = message.WhichOneof("kind")
        if kind == "run_request":
            pending = _Pending(message.run_request)
            self._runs[pending.request.run_id] = pending
            task = asyncio.create_task(self._run(pending))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind == "run_approval":
            run = self._runs.get(message.run_approval.run_id)
            if run is not None:
                run.approval = message.run_approval
                run.approved.set()
        elif kind == "run_cancel":
            run = self._runs.get(message.run_cancel.run_id)
            if run is not None:
                run.cancel_reason = message.run_cancel.reason[:500]
                run.cancel.set()

    async def close(self) -> None:
        for run in self._runs.values():
            run.cancel.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def _waiting(self) -> WaitingRuns:
        """The waiting-run descriptions (made when a run first needs approval)."""
        if self._waiting_runs is None:
            from agent.playbook.waiting import WaitingRuns

            self._waiting_runs = WaitingRuns(self._state_dir)
        return self._waiting_runs

    async def _run(self, pending: _Pending) -> None:
        from playbooks.errors import PlaybookError

        request = pending.request
        self._journal.write(
            "run_received",
            run_id=request.run_id,
            playbook=request.playbook,
            requested_by=request.requested_by,
            ticket_id=request.ticket_id,
        )
        if not self._trusted_keys:
            await self._refuse(
                request, "this agent trusts no vendor key: set playbooks.trusted_keys in its config"
            )
            return
        try:
            playbook, values = await self._verify(request)
        except PlaybookError as exc:
            await self._refuse(request, str(exc))
            return
        try:
            if not await self._allowed(pending, playbook):
                return
            await self._update(request.run_id, "running", "")
            self._journal.write("run_started", run_id=request.run_id, version=playbook.version)
            result = await self._execute(pending, playbook, values)
            self._journal.write("run_finished", run_id=request.run_id, status=result.status)
            await self._send(agent_pb2.AgentMessage(run_result=_result(request.run_id, result)))
        except Exception as exc:  # report, never crash the agent
            log.exception("run %s failed", request.run_id)
            await self._send(
                agent_pb2.AgentMessage(
                    run_result=agent_pb2.RunResult(
                        run_id=request.run_id, status="failed", error=f"agent error: {exc}"
                    )
                )
            )
        finally:
            self._runs.pop(request.run_id, None)
            release_free_memory()  # what the run's output and builtins used

    async def _verify(self, request: agent_pb2.RunRequest) -> tuple[Playbook, dict[str, str | int]]:
        """Signature, expiry, downgrade, digest, parameters — in that order.

        Checked in a child process (``agent.playbook.verify_child``), so the
        cryptography and YAML libraries never stay resident in the agent.
        """
        from agent.playbook.verify_child import verify_in_child

        seen = self._load_seen()
        verified = await verify_in_child(
            manifest=request.manifest,
            signature=request.manifest_signature,
            name=request.playbook,
            playbook_yaml=request.playbook_yaml,
            params=request.params,
            trusted_keys=self._trusted_keys,
            seen=seen,
        )
        playbook = verified.playbook
        self._save_seen(verified.catalogue_version, request.playbook, playbook.version, seen)
        return playbook, verified.values

    async def _allowed(self, pending: _Pending, playbook: Playbook) -> bool:
        request = pending.request
        decision = self._policy.decide(playbook.name, playbook.mode)
        if decision.kind == "deny":
            await self._refuse(request, f"the host's policy denies playbook {playbook.name!r}")
            return False
        if decision.kind == "allow":
            return True
        subject = run_subject(request, playbook)
        waiting = _waiting_run(request, playbook, subject)
        self._waiting.add(waiting)
        await self._update(request.run_id, "waiting_approval", _how_to_approve(decision, request))
        self._journal.write(
            "run_waiting_approval", run_id=request.run_id, source=decision.approval_source
        )
        try:
            approved_by = await self._wait_for_approval(pending, decision, waiting, subject)
        except ApprovalRefused as exc:
            await self._refuse(request, f"approval refused: {exc}")
            return False
        finally:
            self._waiting.remove(request.run_id)
        if approved_by is None:
            why = "not approved in time (approval expired)"
            if pending.cancel_reason:
                why = f"cancelled by the collector: {pending.cancel_reason}"
            await self._refuse(request, why)
            return False
        self._journal.write("run_approved", run_id=request.run_id, approved=approved_by)
        return True

    async def _wait_for_approval(
        self, pending: _Pending, decision: Decision, waiting: WaitingRun, subject: RunSubject
    ) -> str | None:
        """How the run was approved; None if not in time. Raises ApprovalRefused."""
        deadline = time.monotonic() + APPROVAL_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not pending.cancel.is_set():
            if pending.approved.is_set() and pending.approval is not None:
                pending.approved.clear()
                how = self._collector_approval(pending.approval, decision, subject)
                if how:
                    return how
            if decision.counts("local"):
                local = self._approvals.approval(waiting.run_id, time.time(), waiting.binding)
                if local is not None:
                    return f"on the host by {local.by}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pending.approved.wait(), APPROVAL_POLL_SECONDS)
        return None

    def _collector_approval(
        self, message: agent_pb2.RunApproval, decision: Decision, subject: RunSubject
    ) -> str:
        """How an approval the collector delivered counts ("" if the policy ignores it).

        Raises ApprovalRefused when it should count but does not verify.
        """
        signed = bytes(message.signed_approval)
        if decision.counts("collector") and not (signed and self._consent.root):
            return f"through the collector by {message.approved_by or 'unnamed'} (trusted)"
        if not decision.counts("signed"):
            self._journal.write(
                "approval_ignored",
                run_id=subject.run_id,
                reason="the host's policy counts only approvals given on the host",
            )
            return ""
        approval = self._consent.check(signed, subject)
        return f"signed by {approval.approver} of {approval.customer}"

    async def _execute(
        self, pending: _Pending, playbook: Playbook, values: dict[str, str | int]
    ) -> ExecutionResult:
        from agent.playbook.redact import secret_values

        run_id = pending.request.run_id
        steps = [_render(step, values) for step in playbook.steps]

        async def forward(chunk: OutputChunk) -> None:
            output = agent_pb2.RunOutput(
                run_id=run_id, step=chunk.step, stream=chunk.stream, data=chunk.data
            )
            await self._send(agent_pb2.AgentMessage(run_output=output))

        return await self._executor_now().run(
            playbook,
            steps,
            forward,
            pending.cancel,
            playbook.timeout_seconds,
            secrets=secret_values(playbook, values),
        )

    def _executor_now(self) -> Executor:
        """The executor, built by the factory on the first run that needs it."""
        if self._executor is None:
            assert self._make_executor is not None
            self._executor = self._make_executor()
        return self._executor

    async def _refuse(self, request: agent_pb2.RunRequest, reason: str) -> None:
        log.warning("run %s of %r refused: %s", request.run_id, request.playbook, reason)
        self._journal.write(
            "run_refused", run_id=request.run_id, playbook=request.playbook, reason=reason
        )
        await self._update(request.run_id, "refused", reason)

    async def _update(self, run_id: str, state: str, message: str) -> None:
        update = agent_pb2.RunUpdate(run_id=run_id, state=state, message=message)
        await self._send(agent_pb2.AgentMessage(run_update=update))

    def _load_seen(self) -> dict[str, Any]:
        path = self._state_dir / SEEN_FILE
        if not path.exists():
            return {}
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def _save_seen(
        self, catalogue_version: int, name: str, version: str, seen: dict[str, Any]
    ) -> None:
        """Remember the newest accepted versions: older ones are refused from now on."""
        versions = dict(seen.get("versions", {}))
        versions[name] = version
        data = {
            "catalogue_version": max(catalogue_version, seen.get("catalogue_version", 0)),
            "versions": versions,
        }
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        write_atomic(self._state_dir / SEEN_FILE, text.encode(), 0o600)


def run_subject(request: agent_pb2.RunRequest, playbook: Playbook) -> RunSubject:
    """What an approval of ``request`` must bind: playbook, version, file digest, parameters."""
    return RunSubject(
        run_id=request.run_id,
        playbook=playbook.name,
        version=playbook.version,
        digest="sha256:" + hashlib.sha256(request.playbook_yaml).hexdigest(),
        params=bound_params(dict(request.params), _secret_names(playbook)),
    )


def _secret_names(playbook: Playbook) -> frozenset[str]:
    return frozenset(p.name for p in playbook.parameters if p.secret)


def _waiting_run(
    request: agent_pb2.RunRequest, playbook: Playbook, subject: RunSubject
) -> WaitingRun:
    from agent.playbook.waiting import WaitingRun, run_binding

    secret = _secret_names(playbook)
    return WaitingRun(
        run_id=request.run_id,
        playbook=playbook.name,
        version=playbook.version,
        mode=playbook.mode,
        description=playbook.description,
        digest=subject.digest,
        params={k: "***" if k in secret else v for k, v in request.params.items()},
        requested_by=request.requested_by,
        ticket_id=request.ticket_id,
        binding=run_binding(subject),
    )


def _how_to_approve(decision: Decision, request: agent_pb2.RunRequest) -> str:
    signed = f"a customer approver signs it: aftercare run approve {request.run_id}"
    local = f"on the host: aftercare-agent approve {request.run_id}"
    ways = {
        "signed": signed,
        "local": local,
        "either": f"{signed}; or {local}",
        "collector": f"a customer user approves it: aftercare run approve {request.run_id}",
    }
    source = decision.approval_source
    return f"{request.playbook} needs approval ({source}): {ways[source]}"


def _render(
    step: ExecStep | BuiltinStep, values: dict[str, str | int]
) -> RenderedExec | RenderedBuiltin:
    from agent.playbook.executor import RenderedBuiltin, RenderedExec
    from playbooks.model import ExecStep
    from playbooks.params import render_builtin, render_exec

    if isinstance(step, ExecStep):
        argv, env = render_exec(step, values)
        return RenderedExec(
            name=step.name,
            argv=tuple(argv),
            env=env,
            timeout_seconds=step.timeout_seconds,
            output_limit_bytes=step.output_limit_bytes,
            run_as=step.run_as,
            optional=step.optional,
        )
    return RenderedBuiltin(
        name=step.name,
        function=step.function,
        args=render_builtin(step, values),
        timeout_seconds=step.timeout_seconds,
        output_limit_bytes=step.output_limit_bytes,
    )


def _result(run_id: str, result: ExecutionResult) -> agent_pb2.RunResult:
    return agent_pb2.RunResult(
        run_id=run_id,
        status=result.status,
        duration_ms=result.duration_ms,
        redactions=result.redactions,
        steps=[
            agent_pb2.StepResult(
                name=s.name,
                status=s.status,
                exit_code=s.exit_code or 0,
                has_exit_code=s.exit_code is not None,
                duration_ms=s.duration_ms,
                truncated=s.truncated,
                output_bytes=s.output_bytes,
                redactions=s.redactions,
                error=s.error,
            )
            for s in result.steps
        ],
    )


def build_run_handler(
    state_dir: Path,
    config: PlaybooksConfig,
    send: Send,
    consent: ConsentVerifier,
    policy: Policy | None = None,
    keys: Sequence[bytes] | None = None,
) -> RunHandler:
    """The run handler as configured: pinned keys, the customer's policy, the executor.

    ``consent`` verifies signed approvals against the host's pinned approval root;
    ``policy`` and ``keys`` are the already loaded policy and vendor keys (default:
    read from ``config.policy`` and ``config.trusted_keys``). Raises ConfigError
    (policy, keys) so a bad file stops the agent at start.
    """
    if keys is None:
        keys = read_vendor_keys(config.trusted_keys)
    if policy is None:
        policy = load_policy(Path(config.policy))

    def executor() -> Executor:  # on the first run: its modules stay out of an idle agent
        from agent.playbook.executor import Executor
        from agent.playbook.redact import Redactor

        return Executor(
            max_concurrent_runs=config.max_concurrent_runs,
            workdir=Path(config.workdir),
            redactor=Redactor(),
        )

    approvals = ApprovalBook(state_dir / APPROVALS_DIR)
    approvals.prune(time.time())
    journal = Journal(state_dir / RUNS_JOURNAL_FILE)
    return RunHandler(state_dir, keys, policy, approvals, executor, send, consent, journal)
