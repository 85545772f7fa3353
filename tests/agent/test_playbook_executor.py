"""The playbook executor against real processes: isolation, timeouts, caps, redaction, limits."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import tracemalloc
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from agent.playbook import (
    Executor,
    ExecutorBusy,
    OutputChunk,
    Redactor,
    RenderedBuiltin,
    RenderedExec,
    RenderedStep,
    RunResult,
    truncation_marker,
)
from agent.playbook.executor import CHUNK_SIZE
from playbooks.model import Playbook

PY = sys.executable
READ_ONLY = Playbook(name="diag", version="1.0.0", description="test", mode="read-only")
MUTATING = Playbook(name="fix", version="1.0.0", description="test", mode="mutating")


class Output:
    """Collects the chunks passed to ``on_output``."""

    def __init__(self) -> None:
        self.chunks: list[OutputChunk] = []
        self.times: list[float] = []

    async def __call__(self, chunk: OutputChunk) -> None:
        self.chunks.append(chunk)
        self.times.append(time.monotonic())

    def text(self, step: str | None = None) -> str:
        data = b"".join(c.data for c in self.chunks if step is None or c.step == step)
        return data.decode("utf-8", "replace")


def executor(**options: object) -> Executor:
    options.setdefault("redactor", Redactor())
    options.setdefault("builtins", {})
    return Executor(**options)  # type: ignore[arg-type]


def run(
    steps: Sequence[RenderedStep],
    *,
    ex: Executor | None = None,
    playbook: Playbook = READ_ONLY,
    run_timeout: float = 60.0,
    secrets: Sequence[str] = (),
) -> tuple[RunResult, Output]:
    output = Output()

    async def main() -> RunResult:
        return await (ex or executor()).run(
            playbook, steps, output, asyncio.Event(), run_timeout, secrets=secrets
        )

    return asyncio.run(main()), output


def step(*argv: str, **options: object) -> RenderedExec:
    name = str(options.pop("name", "s"))
    return RenderedExec(name, tuple(argv), **options)  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    """True if ``pid`` runs (zombies waiting for a non-reaping init count as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rpartition(b")")[2].split()[0] != b"Z"


def wait_dead(pids: Sequence[int], seconds: float = 2.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


# --- isolation ------------------------------------------------------------------------


def test_argv_is_never_given_to_a_shell() -> None:
    result, out = run([step("echo", "$(id)", ";", "`id`", "&&", "rm -rf /")])
    assert result.status == "ok"
    assert out.text() == "$(id) ; `id` && rm -rf /\n"


def test_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFTERCARE_LEAK", "from-the-agent")
    result, out = run([step("env", env={"FOO": "bar"})])
    assert result.status == "ok"
    assert sorted(out.text().splitlines()) == [
        "FOO=bar",
        "LANG=C.UTF-8",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    ]


@pytest.mark.parametrize("name", ["PATH", "LD_PRELOAD", "A=B"])
def test_a_step_cannot_set_path_or_loader_variables(name: str) -> None:
    result, out = run([step("env", env={name: "/tmp"})])
    assert result.steps[0].status == "failed"
    assert name in result.steps[0].error
    assert out.chunks == []


def test_fixed_working_directory_stdin_devnull_and_own_process_group(tmp_path: Path) -> None:
    code = (
        "import os; print(os.getcwd()); print(os.readlink('/proc/self/fd/0'));"
        "print(os.getpgrp() == os.getpid(), os.getsid(0) == os.getpid())"
    )
    result, out = run([step(PY, "-c", code)], ex=executor(workdir=tmp_path))
    assert result.status == "ok", result
    assert out.text().splitlines() == [str(tmp_path), "/dev/null", "True True"]


def test_cat_ends_at_once_because_stdin_is_devnull() -> None:
    result, _ = run([step("cat", timeout_seconds=5)])
    assert result.steps[0].status == "ok"
    assert result.steps[0].duration_ms < 2000


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_run_as_switches_user_group_and_drops_supplementary_groups() -> None:
    result, out = run([step("id", run_as="nobody"), step("id", "-G", run_as="nobody")])
    assert result.status == "ok", result
    first, groups = out.text().splitlines()
    assert first.startswith("uid=65534(nobody) gid=65534(")
    assert groups.split() == ["65534"]


def test_run_as_unknown_user_fails_the_step() -> None:
    result, _ = run([step("id", run_as="no-such-user-xyz")])
    assert result.steps[0].status == "failed"
    assert "no such user" in result.steps[0].error


# --- exit codes and missing programs --------------------------------------------------


def test_missing_program_is_skipped_and_the_run_goes_on() -> None:
    result, out = run(
        [step("aftercare-no-such-program", "x", name="a"), step("echo", "after", name="b")]
    )
    missing, after = result.steps
    assert missing.status == "skipped"
    assert missing.error == "program not installed: aftercare-no-such-program"
    assert after.status == "ok"
    assert result.status == "ok"
    assert out.text("b") == "after\n"


def test_missing_absolute_program_is_skipped() -> None:
    result, _ = run([step("/opt/nowhere/bin/tool")])
    assert result.steps[0].status == "skipped"
    assert result.status == "ok"


def test_non_zero_exit_fails_the_step_and_the_run_but_read_only_goes_on() -> None:
    result, _ = run([step("false", name="a"), step("true", name="b")])
    assert [(s.status, s.exit_code) for s in result.steps] == [("failed", 1), ("ok", 0)]
    assert result.steps[0].error == "exited with status 1"
    assert result.status == "failed"


def test_mutating_playbook_stops_after_a_failed_step() -> None:
    result, _ = run([step("false", name="a"), step("true", name="b")], playbook=MUTATING)
    assert [s.status for s in result.steps] == ["failed", "skipped"]
    assert "earlier step" in result.steps[1].error
    assert result.status == "failed"


def test_optional_steps_are_best_effort() -> None:
    steps = [step("false", name="a", optional=True), step("true", name="b")]
    for playbook in (READ_ONLY, MUTATING):
        result, _ = run(steps, playbook=playbook)
        assert [s.status for s in result.steps] == ["failed", "ok"]
        assert result.status == "ok"


def test_killed_by_signal_is_reported() -> None:
    result, _ = run([step(PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")])
    assert result.steps[0].status == "failed"
    assert result.steps[0].error == "killed by signal SIGSEGV"


# --- timeouts, cancel, process groups -------------------------------------------------

HANG = "sleep 1000 & echo $!; sleep 1000"  # a shell in a test, never in a playbook


def pids_in(out: Output) -> list[int]:
    return [int(word) for word in out.text().split() if word.isdigit()]


def test_step_timeout_kills_the_whole_process_group() -> None:
    started = time.monotonic()
    result, out = run([step("sh", "-c", HANG, timeout_seconds=0.5), step("true", name="next")])
    assert time.monotonic() - started < 4
    hung, following = result.steps
    assert hung.status == "timed_out"
    assert hung.error == "step timed out after 0.5s"
    assert hung.exit_code is None
    assert following.status == "ok"  # read-only playbooks go on
    assert result.status == "failed"
    (grandchild,) = pids_in(out)
    assert wait_dead([grandchild]) == []


def test_sigkill_follows_when_sigterm_is_ignored() -> None:
    script = "trap '' TERM; sleep 1000 & echo $!; while :; do sleep 0.1; done"
    started = time.monotonic()
    result, out = run([step("sh", "-c", script, timeout_seconds=0.3)], ex=executor(kill_grace=0.5))
    assert result.steps[0].status == "timed_out"
    assert time.monotonic() - started < 3
    assert wait_dead(pids_in(out)) == []


def test_run_timeout_stops_the_step_and_skips_the_rest() -> None:
    result, out = run(
        [step("sh", "-c", HANG, timeout_seconds=100, name="a"), step("true", name="b")],
        run_timeout=0.5,
    )
    assert [s.status for s in result.steps] == ["timed_out", "skipped"]
    assert result.steps[0].error == "run timed out after 0.5s"
    assert result.steps[1].error == "not run: run timed out"
    assert result.status == "timed_out"
    assert wait_dead(pids_in(out)) == []


def test_cancel_kills_the_group_and_skips_the_rest() -> None:
    output = Output()
    cancel = asyncio.Event()

    async def on_output(chunk: OutputChunk) -> None:
        await output(chunk)
        cancel.set()

    async def main() -> RunResult:
        steps = [step("sh", "-c", HANG, timeout_seconds=100, name="a"), step("true", name="b")]
        return await executor().run(READ_ONLY, steps, on_output, cancel, 60)

    started = time.monotonic()
    result = asyncio.run(main())
    assert time.monotonic() - started < 4
    assert [s.status for s in result.steps] == ["cancelled", "skipped"]
    assert result.status == "cancelled"
    assert wait_dead(pids_in(output)) == []


def test_cancelling_the_run_task_kills_the_group() -> None:
    output = Output()

    async def main() -> None:
        steps = [step("sh", "-c", HANG, timeout_seconds=100)]
        task = asyncio.create_task(executor().run(READ_ONLY, steps, output, asyncio.Event(), 60))
        while not output.chunks:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert wait_dead(pids_in(output)) == []


def test_leftovers_of_a_finished_step_are_killed() -> None:
    started = time.monotonic()
    result, out = run([step("sh", "-c", "sleep 1000 & echo $!", timeout_seconds=30)])
    assert result.steps[0].status == "ok"
    assert time.monotonic() - started < 4
    assert wait_dead(pids_in(out)) == []


# --- output ---------------------------------------------------------------------------


def test_flood_is_capped_with_a_marker_and_memory_stays_bounded() -> None:
    limit = 64 * 1024
    flood = step("head", "-c", "200M", "/dev/zero", output_limit_bytes=limit, timeout_seconds=60)
    tracemalloc.start()
    try:
        result, out = run([flood])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (done,) = result.steps
    assert done.status == "ok"
    assert done.truncated
    assert done.output_bytes == 200 * 1024 * 1024
    data = [c.data for c in out.chunks]
    assert data[-1] == truncation_marker(limit)
    assert data[-1] == b"\n[aftercare: output truncated after 65536 bytes]\n"
    assert sum(len(d) for d in data[:-1]) == limit
    assert all(len(d) <= CHUNK_SIZE for d in data)
    assert peak < 4 * 1024 * 1024, f"peak traced memory {peak} bytes"


def test_endless_output_is_capped_and_ends_at_the_timeout() -> None:
    result, out = run([step("yes", output_limit_bytes=1000, timeout_seconds=1)])
    assert result.steps[0].status == "timed_out"
    assert result.steps[0].truncated
    assert result.steps[0].output_bytes > 1000
    assert len(out.text()) == 1000 + len(truncation_marker(1000))


def test_stdout_and_stderr_are_streamed_separately() -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    result, out = run([step(PY, "-c", code)])
    assert result.status == "ok"
    assert {(c.stream, c.data) for c in out.chunks} == {("stdout", b"out\n"), ("stderr", b"err\n")}


def test_output_arrives_while_the_step_runs() -> None:
    code = "import time; print('first', flush=True); time.sleep(0.5); print('second')"
    result, out = run([step(PY, "-c", code)])
    assert result.status == "ok"
    assert out.text() == "first\nsecond\n"
    assert out.times[1] - out.times[0] > 0.3


# --- redaction ------------------------------------------------------------------------


def test_secrets_are_redacted_before_on_output() -> None:
    code = (
        "print('password=hunter2 user=bob'); print('Authorization: Bearer abcdefghijkl');"
        "print('aws AKIAABCDEFGHIJKLMNOP'); print('ticket T-1234 value s3cr3t-param')"
    )
    playbook = Playbook(
        name="diag", version="1.0.0", description="", mode="read-only", redact=(r"T-\d+",)
    )
    result, out = run([step(PY, "-c", code)], playbook=playbook, secrets=["s3cr3t-param"])
    text = out.text()
    for secret in ("hunter2", "abcdefghijkl", "AKIAABCDEFGHIJKLMNOP", "T-1234", "s3cr3t-param"):
        assert secret not in text
    assert "password=[REDACTED] user=bob" in text
    assert result.steps[0].redactions == 5
    assert result.redactions == 5


def test_secret_split_across_chunks_is_redacted() -> None:
    code = (
        "import sys, time\n"
        "for part in ('pass', 'word=hun', 'ter2\\n-----BEGIN RSA PRIVATE', ' KEY-----\\nMIIB\\n',"
        " 'abc\\n-----END RSA PRIVATE KEY-----\\nbye\\n'):\n"
        "    sys.stdout.write(part); sys.stdout.flush(); time.sleep(0.15)\n"
    )
    result, out = run([step(PY, "-c", code)])
    assert len(out.chunks) >= 2  # the pieces really arrived separately
    assert out.text() == "password=[REDACTED]\n[REDACTED]\nbye\n"
    assert result.steps[0].redactions == 2


def test_error_messages_are_redacted() -> None:
    result, _ = run([step("/opt/token=abcdef/bin/tool")])
    assert "abcdef" not in result.steps[0].error
    assert result.steps[0].redactions == 1


# --- concurrency ----------------------------------------------------------------------


def test_runs_beyond_the_limit_wait_their_turn() -> None:
    ex = executor(max_concurrent_runs=1)
    code = "import time; print('start', flush=True); time.sleep(0.3); print('end')"
    output = Output()

    async def main() -> list[RunResult]:
        runs = [
            ex.run(READ_ONLY, [step(PY, "-c", code, name=f"r{i}")], output, asyncio.Event(), 30)
            for i in range(3)
        ]
        return list(await asyncio.gather(*runs))

    results = asyncio.run(main())
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    lines = [(c.step, c.data) for c in output.chunks]
    assert lines == [(f"r{i}", word) for i in range(3) for word in (b"start\n", b"end\n")]
    assert ex.running == 0 and ex.waiting == 0


def test_a_full_queue_refuses_and_a_waiting_run_can_be_cancelled() -> None:
    ex = executor(max_concurrent_runs=1, max_queued_runs=1)
    output = Output()

    async def main() -> tuple[RunResult, RunResult]:
        first = asyncio.create_task(
            ex.run(READ_ONLY, [step("sleep", "0.5")], output, asyncio.Event(), 30)
        )
        await asyncio.sleep(0.05)
        cancel = asyncio.Event()
        second = asyncio.create_task(ex.run(READ_ONLY, [step("true")], output, cancel, 30))
        await asyncio.sleep(0.05)
        assert (ex.running, ex.waiting) == (1, 1)
        with pytest.raises(ExecutorBusy):
            await ex.run(READ_ONLY, [step("true")], output, asyncio.Event(), 30)
        cancel.set()
        return await first, await second

    first, second = asyncio.run(main())
    assert first.status == "ok"
    assert second.status == "cancelled"
    assert second.steps[0].status == "skipped"
    assert ex.running == 0


# --- builtins -------------------------------------------------------------------------


def builtin(
    function: str, args: Mapping[str, str | int] | None = None, **options: object
) -> RenderedBuiltin:
    return RenderedBuiltin("b", function, args or {}, **options)  # type: ignore[arg-type]


def echo(deadline: float, /, *, text: str = "hello") -> bytes:
    return f"{text}\n".encode()


def hang(deadline: float, /) -> bytes:
    time.sleep(5)
    return b"late"


def broken(deadline: float, /) -> bytes:
    raise RuntimeError("disk on fire")


FUNCTIONS = {"echo": echo, "hang": hang, "broken": broken}


def test_builtin_output_is_streamed_and_redacted() -> None:
    ex = executor(builtins=FUNCTIONS)
    result, out = run([builtin("echo", {"text": "api_key=abc123"})], ex=ex)
    assert result.status == "ok"
    assert out.chunks == [OutputChunk("b", "builtin", b"api_key=[REDACTED]\n")]
    assert result.steps[0].redactions == 1


def test_unknown_builtin_and_bad_arguments_fail_clearly() -> None:
    ex = executor(builtins=FUNCTIONS)
    result, _ = run(
        [
            builtin("format_disk"),
            builtin("echo", {"colour": "red"}),
            builtin("echo", {"deadline": 1}),
        ],
        ex=ex,
    )
    unknown, bad, reserved = result.steps
    assert (unknown.status, unknown.error) == ("failed", "unknown builtin function: 'format_disk'")
    assert bad.status == "failed" and "invalid arguments for echo" in bad.error
    assert reserved.status == "failed" and "reserved" in reserved.error


def test_builtin_timeout_and_exception() -> None:
    ex = executor(builtins=FUNCTIONS)
    started = time.monotonic()
    result, _ = run([builtin("hang", timeout_seconds=0.2), builtin("broken")], ex=ex)
    assert time.monotonic() - started < 2
    hung, failed = result.steps
    assert hung.status == "timed_out"
    assert failed.status == "failed"
    assert failed.error == "broken failed: RuntimeError: disk on fire"


def test_builtin_output_is_capped() -> None:
    ex = executor(builtins={"big": lambda deadline: b"x" * 100_000})
    result, out = run([builtin("big", output_limit_bytes=10_000)], ex=ex)
    assert result.steps[0].truncated
    assert out.text().endswith(truncation_marker(10_000).decode())
    assert len(out.text()) == 10_000 + len(truncation_marker(10_000))


def test_default_builtins_are_loaded_when_none_are_given() -> None:
    ex = Executor(redactor=Redactor())
    result, out = run([builtin("pressure_stall")], ex=ex)
    assert result.status == "ok"
    assert out.text()


def test_a_process_that_escapes_the_group_cannot_hold_the_step_past_its_timeout() -> None:
    started = time.monotonic()
    result, out = run([step("sh", "-c", "setsid sleep 1000 & echo $!", timeout_seconds=1)])
    try:
        assert result.steps[0].status == "ok"
        assert time.monotonic() - started < 3
    finally:
        for pid in pids_in(out):
            os.kill(pid, 9)
