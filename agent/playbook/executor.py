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
  on with its next step; a mutating playbook stops (the rest are ``skipped``). A
  run timeout or cancel stops the run: the current step is ``timed_out`` /
  ``cancelled`` and the rest ``skipped``.
* At most ``max_concurrent_runs`` runs execute at once. Further runs wait in FIFO
  order (a cancel while waiting ends them as ``cancelled``); when ``max_queued_runs``
  are already waiting, ``run`` raises ExecutorBusy. The run timeout starts when the
  run starts executing, not while it waits.
* ``builtin`` steps call a function from the ``builtins`` registry on a daemon
  thread as ``fn(deadline, **args)`` (``deadline`` is a ``time.monotonic()`` value
  the function should finish by); an unknown function or bad arguments fail the
  step with a clear error. A builtin that overruns is abandoned (``timed_out``).

Result fields: ``output_bytes`` is what the step wrote (before redaction and the
cap); ``redactions`` counts replacements, including in error messages, which are
redacted too because they leave the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import pwd
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agent.playbook.errors import BuiltinError, ExecutorBusy
from agent.playbook.redact import Redactor, StreamRedactor

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

CHUNK_SIZE = 16 * 1024  # largest chunk passed to on_output
_DRAIN_SIZE = 256 * 1024  # read size once output is only being discarded
SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV: Mapping[str, str] = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}
_LATE_OUTPUT_SECONDS = 1.0  # wait for pipes to close after the process group is gone

StreamName = Literal["stdout", "stderr", "builtin"]
StepStatus = Literal["ok", "failed", "skipped", "timed_out", "cancelled"]
RunStatus = Literal["ok", "failed", "timed_out", "cancelled"]
BuiltinFn = Callable[..., bytes]
"""A read-only builtin, called as ``fn(deadline, **args)`` and returning text as bytes."""
OnOutput = Callable[["OutputChunk"], Awaitable[None]]
_Outcome = Literal["done", "step_timeout", "run_timeout", "cancelled"]


def truncation_marker(limit: int) -> bytes:
    """The chunk sent once a step's output reached its cap of ``limit`` bytes."""
    return f"\n[aftercare: output truncated after {limit} bytes]\n".encode()


@dataclass(frozen=True)
class OutputChunk:
    """Redacted output of one step; ``stream`` says where it came from."""

    step: str
    stream: StreamName
    data: bytes


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
        if builtins is None:
            from agent.playbook.builtins import default_builtins  # psutil, only when needed

            builtins = default_builtins()
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
            results, stop = await self._steps(playbook, steps, context)
        finally:
            self._release()
        return RunResult(
            status=_run_status(results, stop),
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
    ) -> tuple[list[StepResult], str | None]:
        results: list[StepResult] = []
        stop: str | None = None  # why the remaining steps are skipped
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
            if outcome == "run_timeout":
                stop = "timed_out"
            elif outcome == "cancelled":
                stop = "cancelled"
            elif result.status in ("failed", "timed_out") and playbook.mode == "mutating":
                stop = "failed"
        return results, stop

    async def _step(self, step: RenderedStep, run: _Run) -> tuple[StepResult, _Outcome]:
        if isinstance(step, RenderedExec):
            return await self._exec(step, run)
        return await self._builtin(step, run)

    # --- exec steps -------------------------------------------------------------------

    async def _exec(self, step: RenderedExec, run: _Run) -> tuple[StepResult, _Outcome]:
        started = time.monotonic()
        sink = _Sink(step.name, step.output_limit_bytes, run)
        try:
            env = _environment(step.env)
            identity = _identity(step.run_as)
        except _StepError as exc:
            return sink.result("failed", started, error=str(exc)), "done"
        pipes = _Pipes()
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
                    **identity,
                )
            except (OSError, ValueError) as exc:
                status, error = self._spawn_error(step, exc)
                return sink.result(status, started, error=error), "done"
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
        pipes: _Pipes,
        sink: _Sink,
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
            if outcome != "done" or _group_members(group):
                await self._stop_group(group, process)
            late = _LATE_OUTPUT_SECONDS if outcome != "done" else None
            await _drain(pumps, late or min(step_deadline, run.deadline) - time.monotonic())
            return outcome
        finally:
            await _cleanup(process, group, tasks)

    async def _stop_group(self, group: int, process: asyncio.subprocess.Process) -> None:
        """SIGTERM the process group, SIGKILL whatever is left after the grace period."""
        _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + self._kill_grace
        while time.monotonic() < deadline:
            if process.returncode is not None and not _group_members(group):
                return
            await asyncio.sleep(0.05)
        _signal_group(group, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), _LATE_OUTPUT_SECONDS)

    # --- builtin steps ----------------------------------------------------------------

    async def _builtin(self, step: RenderedBuiltin, run: _Run) -> tuple[StepResult, _Outcome]:
        started = time.monotonic()
        sink = _Sink(step.name, step.output_limit_bytes, run)
        deadline = min(started + step.timeout_seconds, run.deadline)
        try:
            call = self._builtin_call(step, deadline)
        except _StepError as exc:
            return sink.result("failed", started, error=str(exc)), "done"
        future = _in_daemon_thread(call, f"builtin-{step.function}")
        outcome = await _race(future, started + step.timeout_seconds, run.cancel, run)
        if outcome != "done":
            future.cancel()
            return _stopped_result(sink, started, outcome, step, run), outcome
        try:
            output = future.result()
        except Exception as exc:
            log.debug("builtin %s failed", step.function, exc_info=True)
            return sink.result("failed", started, error=_builtin_error(step, exc)), "done"
        await sink.feed_all("builtin", output)
        return sink.result("ok", started, exit_code=None), "done"

    def _builtin_call(self, step: RenderedBuiltin, deadline: float) -> Callable[[], bytes]:
        function = self._builtins.get(step.function)
        if function is None:
            raise _StepError(f"unknown builtin function: {step.function!r}")
        if "deadline" in step.args:
            raise _StepError(f"{step.function}: 'deadline' is reserved and cannot be an argument")
        try:
            inspect.signature(function).bind(deadline, **step.args)
        except TypeError as exc:
            raise _StepError(f"invalid arguments for {step.function}: {exc}") from exc
        args = dict(step.args)
        return lambda: _as_bytes(function(deadline, **args))


# --- output ---------------------------------------------------------------------------


class _Pipes:
    """A step's stdout and stderr pipes: write ends for the child, read ends for us.

    The executor owns the read ends (rather than letting asyncio create them with
    the process) so that it can close them itself when a process that escaped the
    group keeps the write end open, and so that ``Process.wait()`` waits for the
    exit of the program only, not for its pipes.
    """

    def __init__(self) -> None:
        self._stdout = os.pipe()
        self._stderr = os.pipe()
        self._open = {*self._stdout, *self._stderr}
        self._transports: list[asyncio.BaseTransport] = []

    @property
    def child_stdout(self) -> int:
        return self._stdout[1]

    @property
    def child_stderr(self) -> int:
        return self._stderr[1]

    def close_child_ends(self) -> None:
        self._close_fds(self._stdout[1], self._stderr[1])

    async def readers(self) -> tuple[asyncio.StreamReader, asyncio.StreamReader]:
        return await self._reader(self._stdout[0]), await self._reader(self._stderr[0])

    async def _reader(self, fd: int) -> asyncio.StreamReader:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_DRAIN_SIZE, loop=loop)
        pipe = os.fdopen(fd, "rb", buffering=0)
        self._open.discard(fd)  # the file object owns it now
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe
            )
        except BaseException:
            pipe.close()
            raise
        self._transports.append(transport)
        return reader

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        self._close_fds(*self._open)

    def _close_fds(self, *fds: int) -> None:
        for fd in fds:
            if fd in self._open:
                self._open.discard(fd)
                os.close(fd)


class _Sink:
    """One step's output path: redact per stream, cap, forward in order; counts bytes."""

    def __init__(self, step: str, limit: int, run: _Run) -> None:
        self._step = step
        self._limit = limit
        self._run = run
        self._streams: dict[StreamName, StreamRedactor] = {}
        self._lock = asyncio.Lock()
        self.forwarded = 0
        self.output_bytes = 0
        self.truncated = False
        self.error_redactions = 0

    @property
    def redactions(self) -> int:
        return self.error_redactions + sum(s.redactions for s in self._streams.values())

    async def pump(self, reader: asyncio.StreamReader, stream: StreamName) -> None:
        """Read ``reader`` to its end, forwarding (or, past the cap, discarding) output."""
        while data := await reader.read(_DRAIN_SIZE if self.truncated else CHUNK_SIZE):
            await self.feed(stream, data)
        await self.close(stream)

    async def feed_all(self, stream: StreamName, data: bytes) -> None:
        for start in range(0, len(data), CHUNK_SIZE):
            await self.feed(stream, data[start : start + CHUNK_SIZE])
        await self.close(stream)

    async def feed(self, stream: StreamName, data: bytes) -> None:
        self.output_bytes += len(data)
        if not self.truncated:
            await self._forward(stream, self._redactor(stream).feed(data))

    async def close(self, stream: StreamName) -> None:
        if not self.truncated:
            await self._forward(stream, self._redactor(stream).finish())

    def _redactor(self, stream: StreamName) -> StreamRedactor:
        if stream not in self._streams:
            self._streams[stream] = self._run.redactor.stream()
        return self._streams[stream]

    async def _forward(self, stream: StreamName, data: bytes) -> None:
        async with self._lock:
            if self.truncated:
                return
            room = self._limit - self.forwarded
            for start in range(0, min(len(data), room), CHUNK_SIZE):
                piece = data[start : min(start + CHUNK_SIZE, room)]
                self.forwarded += len(piece)
                await self._run.on_output(OutputChunk(self._step, stream, piece))
            if len(data) > room:
                self.truncated = True
                marker = truncation_marker(self._limit)
                await self._run.on_output(OutputChunk(self._step, stream, marker))

    def result(
        self, status: StepStatus, started: float, *, exit_code: int | None = None, error: str = ""
    ) -> StepResult:
        if error:
            redacted, count = self._run.redactor.redact(error.encode("utf-8", "replace"))
            error, self.error_redactions = redacted.decode("utf-8", "replace"), count
        return StepResult(
            name=self._step,
            status=status,
            exit_code=exit_code,
            duration_ms=_ms_since(started),
            truncated=self.truncated,
            output_bytes=self.output_bytes,
            redactions=self.redactions,
            error=error,
        )


# --- helpers --------------------------------------------------------------------------


class _StepError(Exception):
    """A step cannot start; the message is the step's error."""


_STOP_REASONS = {
    "cancelled": "not run: run cancelled",
    "timed_out": "not run: run timed out",
    "failed": "not run: an earlier step of this mutating playbook failed",
}


def _environment(step_env: Mapping[str, str]) -> dict[str, str]:
    for name in step_env:
        if not name or "=" in name or "\0" in name:
            raise _StepError(f"invalid environment variable name {name!r}")
        if name == "PATH" or name.startswith("LD_"):
            raise _StepError(f"environment variable {name} cannot be set by a playbook")
    return {**BASE_ENV, **step_env}


def _identity(run_as: str | None) -> dict[str, Any]:
    """Keyword arguments of create_subprocess_exec that switch to ``run_as``."""
    if run_as is None:
        return {}
    try:
        user = pwd.getpwnam(run_as)
    except KeyError as exc:
        raise _StepError(f"cannot run as {run_as!r}: no such user on this host") from exc
    if os.geteuid() != 0:
        if user.pw_uid == os.geteuid():
            return {}
        raise _StepError(f"cannot run as {run_as!r}: the agent is not running as root")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


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
    if process.returncode is None or _group_members(group):
        _signal_group(group, signal.SIGKILL)
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


def _group_members(group: int) -> list[int]:
    """Pids of live (non-zombie) processes in process group ``group``, from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(group).encode() and fields[0] != b"Z":
            members.append(int(entry))
    return members


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _exec_result(
    sink: _Sink,
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
        return sink.result("ok", started, exit_code=0)
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return sink.result("failed", started, exit_code=code, error=f"killed by signal {name}")
    return sink.result("failed", started, exit_code=code, error=f"exited with status {code}")


def _stopped_result(
    sink: _Sink, started: float, outcome: _Outcome, step: RenderedStep, run: _Run
) -> StepResult:
    if outcome == "cancelled":
        return sink.result("cancelled", started, error="run cancelled")
    if outcome == "run_timeout":
        return sink.result("timed_out", started, error=f"run timed out after {run.timeout:g}s")
    return sink.result(
        "timed_out", started, error=f"step timed out after {step.timeout_seconds:g}s"
    )


def _skipped(name: str, error: str) -> StepResult:
    return StepResult(name, "skipped", None, 0, False, 0, 0, error)


def _run_status(results: Sequence[StepResult], stop: str | None) -> RunStatus:
    if stop == "cancelled":
        return "cancelled"
    if stop == "timed_out":
        return "timed_out"
    if any(r.status in ("failed", "timed_out") for r in results):
        return "failed"
    return "ok"


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
