"""Runs the rendered steps of one playbook on this host: processes, builtins, output, limits.

Contract (the control stream calls ``Executor.run`` once per approved run):

* ``exec`` steps start one program with ``asyncio.create_subprocess_exec`` and the
  argv list - never a shell - in a new session (its own process group), with stdin
  from /dev/null, the fixed working directory ``workdir`` and a scrubbed environment:
  ``PATH=/usr/sbin:/usr/bin:/sbin:/bin``, ``LANG=C.UTF-8`` plus the step's ``env``
  (which may not set PATH or LD_*). ``run_as`` switches to that user, its primary
  group and no supplementary groups (the agent must be root for that).
* A program that is not installed is a ``skipped`` step ("program not installed:
  X"); it does not fail the run.
* Each step ends at its own timeout or the run's, whichever is first; on a timeout
  or a cancel (``cancel`` set, or the ``run`` task cancelled) the whole process
  group gets SIGTERM, then SIGKILL after ``kill_grace`` seconds. When a step's main
  process exits, whatever it left running in its process group is killed the same
  way.
* Output (stdout, stderr, builtin text) is read in chunks of at most ``CHUNK_SIZE``
  bytes, redacted (``agent.playbook.redact``) and only then passed to ``on_output``,
  which is awaited one chunk at a time, in order. After ``output_limit_bytes``
  bytes of a step have been forwarded, one marker chunk (``truncation_marker``) is
  sent and further output is read and discarded (so the program never blocks on a
  full pipe) until the step ends; memory stays bounded by a few chunks per stream.
* Steps run in order. After a failed or timed-out step a read-only playbook goes
  on with its next step; a mutating playbook stops (the rest are ``skipped``). The
  run is ``failed`` if a step failed or timed out - except an ``optional`` exec
  step, which is best effort: it is reported as failed but neither fails nor stops
  the run. A run timeout or cancel stops the run: the current step is
  ``timed_out`` / ``cancelled`` and the rest ``skipped``.
* At most ``max_concurrent_runs`` runs execute at once. Further runs wait in FIFO
  order (a cancel while waiting ends them as ``cancelled``); when ``max_queued_runs``
  are already waiting, ``run`` raises ExecutorBusy. The run timeout starts when the
  run starts executing, not while it waits.
* ``builtin`` steps call a function from the ``builtins`` registry on a daemon
  thread as ``fn(deadline, **args)`` (``deadline`` is a ``time.monotonic()`` value
  the function should finish by); an unknown function or bad arguments fail the
  step with a clear error. A builtin that overruns is abandoned (``timed_out``).
  The default registry (``agent.playbook.builtin_child``) runs each function in a
  child process, so psutil and the builtins' modules never stay in the agent.

Result fields: ``output_bytes`` is what the step wrote (before redaction and the
cap); ``redactions`` counts replacements, including in error messages, which are
redacted too because they leave the host.

The output path is ``agent.playbook.output``; environment, user switch and
process-group handling are ``agent.playbook.process``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agent.playbook.errors import BuiltinError, ExecutorBusy
from agent.playbook.output import (
    CHUNK_SIZE,
    OnOutput,
    OutputChunk,
    Pipes,
    StepOutput,
    truncation_marker,
)
from agent.playbook.process import (
    BASE_ENV,
    SetupError,
    environment,
    group_members,
    identity,
    signal_group,
    signal_name,
)
from agent.playbook.redact import Redactor

if TYPE_CHECKING:  # keeps the playbooks package (YAML, signatures) out of the agent at run time
    from playbooks.model import Playbook

__all__ = [
    "BASE_ENV",
    "CHUNK_SIZE",
    "BuiltinFn",
    "Executor",
    "OutputChunk",
    "RenderedBuiltin",
    "RenderedExec",
    "RenderedStep",
    "RunResult",
    "StepResult",
    "truncation_marker",
]

log = logging.getLogger(__name__)

_LATE_OUTPUT_SECONDS = 1.0  # wait for pipes to close after the process group is gone

StepStatus = Literal["ok", "failed", "skipped", "timed_out", "cancelled"]
RunStatus = Literal["ok", "failed", "timed_out", "cancelled"]
BuiltinFn = Callable[..., bytes]
"""A read-only builtin, called as ``fn(deadline, **args)`` and returning text as bytes."""
_Outcome = Literal["done", "step_timeout", "run_timeout", "cancelled"]


@dataclass(frozen=True)
class StepResult:
    name: str
    status: StepStatus
    exit_code: int | None  # None unless the program exited on its own
    duration_ms: int
    truncated: bool
    output_bytes: int  # written by the step, before redaction and the cap
    redactions: int
    error: str = ""


@dataclass(frozen=True)
class RunResult:
    status: RunStatus
    steps: list[StepResult]
    duration_ms: int
    redactions: int


@dataclass(frozen=True)
class RenderedExec:
    """An ``exec`` step with its parameters substituted."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = 30.0
    output_limit_bytes: int = 256 * 1024
    run_as: str | None = None
    optional: bool = False  # best effort: its failure does not fail (or stop) the run


@dataclass(frozen=True)
class RenderedBuiltin:
    """A ``builtin`` step with its parameters substituted."""

    name: str
    function: str
    args: Mapping[str, str | int] = field(default_factory=dict)
    timeout_seconds: float = 30.0
    output_limit_bytes: int = 256 * 1024


RenderedStep = RenderedExec | RenderedBuiltin


@dataclass
class _Run:
    """What the steps of one run share."""

    redactor: Redactor
    on_output: OnOutput
    cancel: asyncio.Event
    deadline: float  # time.monotonic()
    timeout: float


class Executor:
    """Runs playbooks; one per agent. See the module docstring for the contract."""

    def __init__(
        self,
        *,
        max_concurrent_runs: int = 2,
        workdir: Path = Path("/"),
        redactor: Redactor,
        builtins: Mapping[str, BuiltinFn] | None = None,
        max_queued_runs: int = 16,
        kill_grace: float = 2.0,
    ) -> None:
        if max_concurrent_runs < 1 or max_queued_runs < 0:
            raise ValueError("max_concurrent_runs must be >= 1 and max_queued_runs >= 0")
        if builtins is None:  # each call in a child process: psutil never loads here
            from agent.playbook.builtin_child import child_builtins

            builtins = child_builtins()
        self._max_runs = max_concurrent_runs
        self._max_queued = max_queued_runs
        self._workdir = workdir
        self._redactor = redactor
        self._builtins = dict(builtins)
        self._kill_grace = kill_grace
        self._running = 0
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def running(self) -> int:
        """Runs executing now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Runs waiting for a free slot."""
        return len(self._waiters)

    async def run(
        self,
        playbook: Playbook,
        steps: Sequence[RenderedStep],
        on_output: OnOutput,
        cancel: asyncio.Event,
        run_timeout: float,
        *,
        secrets: Sequence[str] = (),
    ) -> RunResult:
        """Run ``steps`` of ``playbook``; ``secrets`` are values to redact (secret params).

        Raises ExecutorBusy when the queue is full, RedactPatternError when one of
        the playbook's ``redact`` patterns is invalid (before anything runs).
        """
        if run_timeout <= 0:
            raise ValueError("run_timeout must be positive")
        redactor = self._redactor.extended(playbook.redact, secrets)
        if not await self._acquire(cancel):
            skipped = [_skipped(s.name, "not run: run cancelled while waiting") for s in steps]
            return RunResult("cancelled", skipped, 0, 0)
        try:
            started = time.monotonic()
            context = _Run(redactor, on_output, cancel, started + run_timeout, run_timeout)
            results, stop, failed = await self._steps(playbook, steps, context)
        finally:
            self._release()
        return RunResult(
            status=stop or ("failed" if failed else "ok"),
            steps=results,
            duration_ms=_ms_since(started),
            redactions=sum(r.redactions for r in results),
        )

    # --- concurrency ------------------------------------------------------------------

    async def _acquire(self, cancel: asyncio.Event) -> bool:
        """Take a run slot (FIFO); False if ``cancel`` was set while waiting."""
        if self._running < self._max_runs and not self._waiters:
            self._running += 1
            return True
        if len(self._waiters) >= self._max_queued:
            raise ExecutorBusy(
                f"{self._running} playbook runs are running and {len(self._waiters)} "
                "waiting; try again later"
            )
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(slot)
        try:
            if await _race(slot, None, cancel) == "done":
                return True
            if slot.done():  # the slot was handed over as the cancel arrived: pass it on
                self._release()
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(slot)
            if not slot.done():
                slot.cancel()

    def _release(self) -> None:
        """Hand the slot to the first waiter, or free it."""
        while self._waiters:
            slot = self._waiters.pop(0)
            if not slot.done():
                slot.set_result(None)  # _running stays: the slot changes hands
                return
        self._running -= 1

    # --- steps ------------------------------------------------------------------------

    async def _steps(
        self, playbook: Playbook, steps: Sequence[RenderedStep], run: _Run
    ) -> tuple[list[StepResult], _Stop | None, bool]:
        """Run the steps in order; returns the results, why the run stopped early
        (if it did) and whether a required step failed."""
        results: list[StepResult] = []
        stop: _Stop | None = None  # why the remaining steps are skipped
        failed = False
        for step in steps:
            if stop is None and run.cancel.is_set():
                stop = "cancelled"
            if stop is None and time.monotonic() >= run.deadline:
                stop = "timed_out"
            if stop is not None:
                results.append(_skipped(step.name, _STOP_REASONS[stop]))
                continue
            result, outcome = await self._step(step, run)
            results.append(result)
            required = not (isinstance(step, RenderedExec) and step.optional)
            failed = failed or (required and result.status in ("failed", "timed_out"))
            if outcome == "run_timeout":
                stop = "timed_out"
            elif outcome == "cancelled":
                stop = "cancelled"
            elif failed and playbook.mode == "mutating":
                stop = "failed"
        return results, stop, failed

    async def _step(self, step: RenderedStep, run: _Run) -> tuple[StepResult, _Outcome]:
        if isinstance(step, RenderedExec):
            return await self._exec(step, run)
        return await self._builtin(step, run)

    # --- exec steps -------------------------------------------------------------------

    async def _exec(self, step: RenderedExec, run: _Run) -> tuple[StepResult, _Outcome]:
        started = time.monotonic()
        sink = StepOutput(step.name, step.output_limit_bytes, run.redactor, run.on_output)
        try:
            env = environment(step.env)
            user = identity(step.run_as)
        except SetupError as exc:
            return _result(sink, run, "failed", started, error=str(exc)), "done"
        pipes = Pipes()
        try:
            try:
                process = await asyncio.create_subprocess_exec(
                    *step.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=pipes.child_stdout,
                    stderr=pipes.child_stderr,
                    cwd=self._workdir,
                    env=env,
                    start_new_session=True,
                    **user,
                )
            except (OSError, ValueError) as exc:
                status, error = self._spawn_error(step, exc)
                return _result(sink, run, status, started, error=error), "done"
            finally:
                pipes.close_child_ends()
            outcome = await self._supervise(process, pipes, sink, step, run)
        finally:
            pipes.close()
        return _exec_result(sink, process, started, outcome, step, run), outcome

    def _spawn_error(self, step: RenderedExec, exc: OSError | ValueError) -> tuple[StepStatus, str]:
        program = step.argv[0] if step.argv else "(empty argv)"
        if isinstance(exc, FileNotFoundError) and str(exc.filename) != str(self._workdir):
            return "skipped", f"program not installed: {program}"
        if isinstance(exc, FileNotFoundError):
            return "failed", f"working directory {self._workdir} does not exist"
        if isinstance(exc, PermissionError):
            return "failed", f"cannot start {program}: permission denied"
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return "failed", f"cannot start {program}: {detail}"

    async def _supervise(
        self,
        process: asyncio.subprocess.Process,
        pipes: Pipes,
        sink: StepOutput,
        step: RenderedExec,
        run: _Run,
    ) -> _Outcome:
        """Wait for the step to end (or stop it), then let its output drain."""
        group = process.pid  # start_new_session: the process group id is the leader's pid
        step_deadline = time.monotonic() + step.timeout_seconds
        tasks: list[asyncio.Future[Any]] = []
        try:
            stdout, stderr = await pipes.readers()
            pumps = asyncio.ensure_future(
                asyncio.gather(sink.pump(stdout, "stdout"), sink.pump(stderr, "stderr"))
            )
            exited = asyncio.ensure_future(_until_exit(process, pumps))
            tasks += [pumps, exited]
            outcome = await _race(exited, step_deadline, run.cancel, run)
            if outcome == "done":
                exited.result()  # an on_output failure surfaces here
            if outcome != "done" or group_members(group):
                await self._stop_group(group, process)
            late = _LATE_OUTPUT_SECONDS if outcome != "done" else None
            await _drain(pumps, late or min(step_deadline, run.deadline) - time.monotonic())
            return outcome
        finally:
            await _cleanup(process, group, tasks)

    async def _stop_group(self, group: int, process: asyncio.subprocess.Process) -> None:
        """SIGTERM the process group, SIGKILL whatever is left after the grace period."""
        signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + self._kill_grace
        while time.monotonic() < deadline:
            if process.returncode is not None and not group_members(group):
                return
            await asyncio.sleep(0.05)
        signal_group(group, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), _LATE_OUTPUT_SECONDS)

    # --- builtin steps ----------------------------------------------------------------

    async def _builtin(self, step: RenderedBuiltin, run: _Run) -> tuple[StepResult, _Outcome]:
        started = time.monotonic()
        sink = StepOutput(step.name, step.output_limit_bytes, run.redactor, run.on_output)
        deadline = min(started + step.timeout_seconds, run.deadline)
        try:
            call = self._builtin_call(step, deadline)
        except SetupError as exc:
            return _result(sink, run, "failed", started, error=str(exc)), "done"
        future = _in_daemon_thread(call, f"builtin-{step.function}")
        outcome = await _race(future, started + step.timeout_seconds, run.cancel, run)
        if outcome != "done":
            future.cancel()
            return _stopped_result(sink, started, outcome, step, run), outcome
        try:
            output = future.result()
        except Exception as exc:
            log.debug("builtin %s failed", step.function, exc_info=True)
            return _result(sink, run, "failed", started, error=_builtin_error(step, exc)), "done"
        await sink.feed_all("builtin", output)
        return _result(sink, run, "ok", started, exit_code=None), "done"

    def _builtin_call(self, step: RenderedBuiltin, deadline: float) -> Callable[[], bytes]:
        function = self._builtins.get(step.function)
        if function is None:
            raise SetupError(f"unknown builtin function: {step.function!r}")
        if "deadline" in step.args:
            raise SetupError(f"{step.function}: 'deadline' is reserved and cannot be an argument")
        try:
            inspect.signature(function).bind(deadline, **step.args)
        except TypeError as exc:
            raise SetupError(f"invalid arguments for {step.function}: {exc}") from exc
        args = dict(step.args)
        return lambda: _as_bytes(function(deadline, **args))


# --- helpers --------------------------------------------------------------------------


_Stop = Literal["cancelled", "timed_out", "failed"]
_STOP_REASONS: Mapping[_Stop, str] = {
    "cancelled": "not run: run cancelled",
    "timed_out": "not run: run timed out",
    "failed": "not run: an earlier step of this mutating playbook failed",
}


async def _race(
    task: asyncio.Future[Any],
    deadline: float | None,
    cancel: asyncio.Event,
    run: _Run | None = None,
) -> _Outcome:
    """Wait for ``task``, ``deadline`` (and ``run``'s deadline) or ``cancel``, first wins."""
    limits = [d for d in (deadline, run.deadline if run else None) if d is not None]
    limit = min(limits) if limits else None
    cancelled = asyncio.ensure_future(cancel.wait())
    try:
        timeout = None if limit is None else max(0.0, limit - time.monotonic())
        done, _ = await asyncio.wait(
            {task, cancelled}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        cancelled.cancel()
    if task in done:
        return "done"
    if cancelled in done:
        return "cancelled"
    if run is not None and limit == run.deadline:
        return "run_timeout"
    return "step_timeout"


async def _until_exit(
    process: asyncio.subprocess.Process, pumps: asyncio.Future[Any] | None = None
) -> None:
    """Wait for the process to exit; raise at once if forwarding its output failed."""
    waiter = asyncio.ensure_future(process.wait())
    try:
        while not waiter.done():
            await asyncio.wait(
                {waiter, *(p for p in [pumps] if p and not p.done())},
                return_when=asyncio.FIRST_COMPLETED,
            )
            if pumps is not None and pumps.done() and pumps.exception() is not None:
                pumps.result()
    finally:
        waiter.cancel()


async def _cleanup(
    process: asyncio.subprocess.Process, group: int, tasks: Sequence[asyncio.Future[Any]]
) -> None:
    """Last line of defence (also when ``run`` is cancelled): nothing of the step survives."""
    if process.returncode is None or group_members(group):
        signal_group(group, signal.SIGKILL)
    for task in tasks:
        task.cancel()
    reaped = asyncio.ensure_future(process.wait())
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait({reaped, *tasks}, timeout=_LATE_OUTPUT_SECONDS)
    reaped.cancel()
    for task in (reaped, *tasks):
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: reported elsewhere or irrelevant now


async def _drain(pumps: asyncio.Future[Any], timeout: float) -> None:
    """Let the output pumps finish within ``timeout`` seconds (then they are cancelled)."""
    done, _ = await asyncio.wait({pumps}, timeout=max(0.05, timeout))
    if pumps in done:
        pumps.result()  # an on_output failure surfaces here


def _exec_result(
    sink: StepOutput,
    process: asyncio.subprocess.Process,
    started: float,
    outcome: _Outcome,
    step: RenderedExec,
    run: _Run,
) -> StepResult:
    if outcome != "done":
        return _stopped_result(sink, started, outcome, step, run)
    code = process.returncode
    assert code is not None
    if code == 0:
        return _result(sink, run, "ok", started, exit_code=0)
    if code < 0:
        error = f"killed by signal {signal_name(-code)}"
        return _result(sink, run, "failed", started, exit_code=code, error=error)
    return _result(sink, run, "failed", started, exit_code=code, error=f"exited with status {code}")


def _stopped_result(
    sink: StepOutput, started: float, outcome: _Outcome, step: RenderedStep, run: _Run
) -> StepResult:
    if outcome == "cancelled":
        return _result(sink, run, "cancelled", started, error="run cancelled")
    if outcome == "run_timeout":
        return _result(
            sink, run, "timed_out", started, error=f"run timed out after {run.timeout:g}s"
        )
    return _result(
        sink, run, "timed_out", started, error=f"step timed out after {step.timeout_seconds:g}s"
    )


def _result(
    output: StepOutput,
    run: _Run,
    status: StepStatus,
    started: float,
    *,
    exit_code: int | None = None,
    error: str = "",
) -> StepResult:
    """The step's result; ``error`` is redacted (it leaves the host) and counted."""
    error_redactions = 0
    if error:
        redacted, error_redactions = run.redactor.redact(error.encode("utf-8", "replace"))
        error = redacted.decode("utf-8", "replace")
    return StepResult(
        name=output.step,
        status=status,
        exit_code=exit_code,
        duration_ms=_ms_since(started),
        truncated=output.truncated,
        output_bytes=output.output_bytes,
        redactions=output.redactions + error_redactions,
        error=error,
    )


def _skipped(name: str, error: str) -> StepResult:
    return StepResult(name, "skipped", None, 0, False, 0, 0, error)


def _builtin_error(step: RenderedBuiltin, exc: BaseException) -> str:
    if isinstance(exc, BuiltinError):
        return f"{step.function}: {exc}"
    return f"{step.function} failed: {type(exc).__name__}: {exc}"


def _as_bytes(output: object) -> bytes:
    if isinstance(output, bytes):
        return output
    if isinstance(output, str):
        return output.encode("utf-8", "surrogateescape")
    raise TypeError(f"a builtin returned {type(output).__name__}, not bytes")


def _in_daemon_thread(call: Callable[[], bytes], name: str) -> asyncio.Future[bytes]:
    """Run ``call`` on a new daemon thread (a hung call never blocks agent exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bytes] = loop.create_future()

    def settle(result: bytes | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or b"")

    def work() -> None:
        try:
            result, error = call(), None
        except Exception as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=name, daemon=True).start()
    return future


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
