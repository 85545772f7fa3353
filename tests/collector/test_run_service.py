"""The collector's RunService with a real store: dispatch, agent reports, audit, expiry."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from collector.auth import Principal
from collector.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from collector.rules import HostRef
from collector.runs.catalogue import load_catalogue
from collector.runs.model import OutputPiece, RunRecord
from collector.runs.service import STALE_RUN_MS, RunService
from collector.store import AgentRecord, open_store
from collector.store.writer import StoreThread
from collector.tickets.lifecycle import create_event
from collector.tickets.model import NewTicket
from playbooks.shipped import catalogue_dir
from proto import agent_pb2

T = TypeVar("T")
AGENT = AgentRecord("ag-1", "acme", "web-1", 0, "01", 10**13)
HOST = HostRef("ag-1", "acme", "web-1")
ERIN = Principal("erin", "engineer")
ALICE = Principal("alice", "customer", "acme")
MALLORY = Principal("mallory", "customer", "globex")


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.now = 1_000_000
        self.sent: list[tuple[str, agent_pb2.CollectorMessage]] = []
        self.connected = True
        self.db = StoreThread(open_store(tmp_path / "data"))
        self.db.store.add_agent(AGENT)
        self.service = RunService(
            self.db,
            load_catalogue(catalogue_dir()),
            self.send,
            tmp_path / "runs",
            lambda: self.now,
        )

    def send(self, agent_id: str, message: agent_pb2.CollectorMessage) -> bool:
        if self.connected:
            self.sent.append((agent_id, message))
        return self.connected

    def run(self, coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return asyncio.run(coro())


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_a_run_is_sent_with_the_signed_bytes_and_masks_nothing_it_should_not(world: World) -> None:
    run = world.run(
        lambda: world.service.start("user:erin", AGENT, "disk-usage", {"path": "/var"}, None)
    )
    assert run.state == "sent" and run.params == {"path": "/var"}
    [(agent_id, message)] = world.sent
    request = message.run_request
    assert agent_id == "ag-1" and request.run_id == run.run_id
    assert request.manifest == (catalogue_dir() / "MANIFEST.json").read_bytes()
    assert request.playbook_yaml == (catalogue_dir() / "disk-usage.yaml").read_bytes()
    audit = [e.action for e in world.db.store.audit_entries()]
    assert audit == ["playbook.run_requested"]


def test_bad_parameters_and_unknown_playbooks_are_refused_early(world: World) -> None:
    with pytest.raises(InvalidRequest, match="path"):
        world.run(
            lambda: world.service.start(
                "user:erin", AGENT, "disk-usage", {"path": "/; rm -rf /"}, None
            )
        )
    with pytest.raises(NotFound):
        world.run(lambda: world.service.start("user:erin", AGENT, "rm-everything", {}, None))
    assert world.sent == []


def test_an_unreachable_host_makes_the_run_undeliverable(world: World) -> None:
    world.connected = False
    run = world.run(lambda: world.service.start("user:erin", AGENT, "time-sync", {}, None))
    assert run.state == "undeliverable" and run.finished_ms == world.now


def test_agent_reports_are_recorded_and_attached_to_the_ticket(world: World) -> None:
    new = NewTicket(customer="acme", title="slow", level="3", source="engineer")
    ticket = world.db.store.create_ticket(new, create_event(new, "user:erin", world.now))
    run = world.run(lambda: world.service.start("user:erin", AGENT, "time-sync", {}, ticket.id))

    async def report() -> None:
        for message in (
            agent_pb2.AgentMessage(
                run_update=agent_pb2.RunUpdate(run_id=run.run_id, state="running")
            ),
            agent_pb2.AgentMessage(
                run_output=agent_pb2.RunOutput(
                    run_id=run.run_id, step="s", stream="stdout", data=b"synchronized: no\n"
                )
            ),
            agent_pb2.AgentMessage(
                run_result=agent_pb2.RunResult(
                    run_id=run.run_id,
                    status="ok",
                    duration_ms=12,
                    redactions=1,
                    steps=[
                        agent_pb2.StepResult(name="s", status="ok", exit_code=0, has_exit_code=True)
                    ],
                )
            ),
        ):
            await world.service.on_agent_message(HOST, message)

    world.run(report)
    done = world.run(lambda: world.service.get(ERIN, run.run_id))
    assert done.state == "ok" and done.result["redactions"] == 1
    assert done.output_sha256 == hashlib.sha256(b"synchronized: no\n").hexdigest()
    assert world.service.output(run.run_id) == (b"synchronized: no\n", False)
    [event] = [e for e in world.db.store.ticket_events(ticket.id) if e.kind == "diagnostics"]
    assert event.details["playbook"] == "time-sync" and "synchronized" in event.details["output"]


def test_another_agents_reports_are_ignored(world: World) -> None:
    run = world.run(lambda: world.service.start("user:erin", AGENT, "time-sync", {}, None))
    intruder = HostRef("ag-2", "globex", "evil")
    forged = agent_pb2.AgentMessage(run_result=agent_pb2.RunResult(run_id=run.run_id, status="ok"))
    world.run(lambda: world.service.on_agent_message(intruder, forged))
    assert world.run(lambda: world.service.get(ERIN, run.run_id)).state == "sent"


def test_a_refusal_is_audited_with_its_reason(world: World) -> None:
    run = world.run(lambda: world.service.start("user:erin", AGENT, "time-sync", {}, None))
    refusal = agent_pb2.AgentMessage(
        run_update=agent_pb2.RunUpdate(
            run_id=run.run_id, state="refused", message="not signed by a trusted vendor key"
        )
    )
    world.run(lambda: world.service.on_agent_message(HOST, refusal))
    entry = world.db.store.audit_entries()[-1]
    assert entry.action == "playbook.run_refused" and entry.target == run.run_id
    assert entry.details["reason"] == "not signed by a trusted vendor key"


def test_only_a_customer_of_that_customer_approves_a_waiting_run(world: World) -> None:
    run = world.run(lambda: world.service.start("user:erin", AGENT, "time-sync", {}, None))
    waiting = agent_pb2.AgentMessage(
        run_update=agent_pb2.RunUpdate(run_id=run.run_id, state="waiting_approval")
    )
    world.run(lambda: world.service.on_agent_message(HOST, waiting))
    with pytest.raises(PermissionDenied):
        world.run(lambda: world.service.approve(ERIN, run.run_id))
    with pytest.raises(NotFound):
        world.run(lambda: world.service.approve(MALLORY, run.run_id))
    approved = world.run(lambda: world.service.approve(ALICE, run.run_id))
    assert approved.approved_by == "user:alice"
    assert world.sent[-1][1].run_approval.run_id == run.run_id


def test_a_customer_denies_a_waiting_run_and_the_host_is_told(world: World) -> None:
    run = world.run(
        lambda: world.service.start(
            "user:erin", AGENT, "time-sync", {}, None, reason="clock drift on web-1"
        )
    )
    requested = world.db.store.audit_entries()[-1]
    assert requested.details["reason"] == "clock drift on web-1"
    assert run.reason == "clock drift on web-1"
    assert world.db.store.get_run(run.run_id).reason == "clock drift on web-1"  # type: ignore[union-attr]
    waiting = agent_pb2.AgentMessage(
        run_update=agent_pb2.RunUpdate(run_id=run.run_id, state="waiting_approval")
    )
    world.run(lambda: world.service.on_agent_message(HOST, waiting))
    with pytest.raises(PermissionDenied):
        world.run(lambda: world.service.deny(ERIN, run.run_id, "no"))
    with pytest.raises(NotFound):
        world.run(lambda: world.service.deny(MALLORY, run.run_id, "no"))
    with pytest.raises(InvalidRequest, match="reason"):
        world.run(lambda: world.service.deny(ALICE, run.run_id, "  "))
    denied = world.run(lambda: world.service.deny(ALICE, run.run_id, " not today "))
    assert denied.state == "refused" and denied.message == "denied by user:alice: not today"
    cancel = world.sent[-1][1].run_cancel
    assert cancel.run_id == run.run_id and "not today" in cancel.reason
    entry = world.db.store.audit_entries()[-1]
    assert (entry.action, entry.actor, entry.details["reason"]) == (
        "playbook.run_denied",
        "user:alice",
        "not today",
    )
    with pytest.raises(Conflict):
        world.run(lambda: world.service.deny(ALICE, run.run_id, "again"))
    late = agent_pb2.AgentMessage(
        run_update=agent_pb2.RunUpdate(run_id=run.run_id, state="running")
    )
    world.run(lambda: world.service.on_agent_message(HOST, late))
    assert world.db.store.get_run(run.run_id).state == "refused"  # a denial is final


def test_output_from_reads_what_was_added_since(world: World) -> None:
    run = world.run(lambda: world.service.start("user:erin", AGENT, "time-sync", {}, None))
    assert world.service.output_from(run.run_id, 0, 100) == b""
    for data in (b"abc", b"defg"):
        chunk = agent_pb2.RunOutput(run_id=run.run_id, step="s", data=data)
        world.run(
            lambda chunk=chunk: world.service.on_agent_message(
                HOST, agent_pb2.AgentMessage(run_output=chunk)
            )
        )
    assert world.service.output_from(run.run_id, 0, 100) == b"abcdefg"
    assert world.service.output_from(run.run_id, 3, 2) == b"de"
    assert world.service.output_from(run.run_id, 7, 100) == b""


def test_runs_without_an_answer_expire(world: World) -> None:
    run = world.run(lambda: world.service.start("user:erin", AGENT, "time-sync", {}, None))
    assert world.run(lambda: world.service.expire_stale(world.now + STALE_RUN_MS)) == 0
    assert world.run(lambda: world.service.expire_stale(world.now + STALE_RUN_MS + 1)) == 1
    expired = world.run(lambda: world.service.get(ERIN, run.run_id))
    assert expired.state == "failed" and "no result" in expired.message


def _output(run_id: str, step: str, data: bytes) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(
        run_output=agent_pb2.RunOutput(run_id=run_id, step=step, stream="stdout", data=data)
    )


def test_step_outputs_split_the_output_by_step_even_across_a_restart(
    world: World, tmp_path: Path
) -> None:
    run = world.run(lambda: world.service.start("user:erin", AGENT, "time-sync", {}, None))
    assert world.service.step_outputs(run.run_id) == {}

    async def first_half() -> None:
        await world.service.on_agent_message(HOST, _output(run.run_id, "summary", b"os: x\n"))
        await world.service.on_agent_message(HOST, _output(run.run_id, "summary", b"cpu: 2\n"))
        await world.service.on_agent_message(HOST, _output(run.run_id, "disks", b"/ 10%\n"))

    world.run(first_half)
    # a collector restarted mid-run: a new service over the same files
    restarted = RunService(
        world.db, world.service.catalogue, world.send, tmp_path / "runs", lambda: world.now
    )

    async def second_half() -> None:
        await restarted.on_agent_message(HOST, _output(run.run_id, "disks", b"/var 20%\n"))
        await restarted.on_agent_message(HOST, _output(run.run_id, "units", b"none\n"))

    world.run(second_half)
    assert restarted.step_outputs(run.run_id) == {
        "summary": b"os: x\ncpu: 2\n",
        "disks": b"/ 10%\n/var 20%\n",
        "units": b"none\n",
    }
    sidecar = (tmp_path / "runs" / f"{run.run_id}.steps").read_text().splitlines()
    assert len(sidecar) == 3  # written only when the step changes


def test_following_a_run_that_already_finished_gives_its_state_then_its_output(
    world: World,
) -> None:
    """`aftercare run --follow` may begin after a quick run has finished: it still gets
    the output, each step's part once."""
    run = world.run(lambda: world.service.start("user:erin", AGENT, "time-sync", {}, None))

    async def finish_then_follow() -> list[object]:
        await world.service.on_agent_message(HOST, _output(run.run_id, "summary", b"os: x\n"))
        await world.service.on_agent_message(HOST, _output(run.run_id, "disks", b"/ 10%\n"))
        result = agent_pb2.RunResult(run_id=run.run_id, status="ok", duration_ms=5)
        await world.service.on_agent_message(HOST, agent_pb2.AgentMessage(run_result=result))
        return [item async for item in world.service.follow(ERIN, run.run_id)]

    first, *pieces = world.run(finish_then_follow)
    assert isinstance(first, RunRecord) and first.state == "ok"
    assert [(p.step, p.offset, p.data) for p in pieces if isinstance(p, OutputPiece)] == [
        ("summary", 0, b"os: x\n"),
        ("disks", 6, b"/ 10%\n"),
    ]
    assert len(pieces) == 2
