"""Playbook runs in the portal over real HTTPS against a real collector (the shipped
signed catalogue): an engineer starts a run from a host or a ticket, the run page
follows its output, the ticket lists its runs, a customer denies a run; and the
attacks: a customer starting a run, parameter injection, a missing CSRF token,
another customer's run or ticket by id."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.portal import approval_summary, i18n
from collector.portal.run_pages import MAX_FOLLOWS_PER_USER
from collector.rules import HostRef
from collector.runs.model import RunRecord
from collector.store import AgentRecord
from collector.tickets.service import ManualTicket
from proto import agent_pb2
from tests.collector.portal_support import (
    ENGINEER,
    Browser,
    PortalCollector,
    run_waiting_for_approval,
    stored_run,
)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[PortalCollector]:
    running = PortalCollector(tmp_path / "data")
    running.add_user("carol", "customer", "acme")
    running.add_user("mallory", "customer", "globex")
    running.add_user("erin", "engineer")
    try:
        yield running
    finally:
        running.stop()


def signed_in(collector: PortalCollector, name: str) -> Browser:
    b = Browser(collector.url, collector.ca_file)
    answer = b.sign_in(name)
    assert answer.status == 303, answer.text
    return b


def host_ticket(collector: PortalCollector, agent: AgentRecord, title: str) -> int:
    tickets = collector.server.tickets
    assert tickets is not None
    opened = ManualTicket(
        title, "", "3", agent.customer, agent.agent_id, agent.hostname, agent.customer
    )
    ticket_id: int = collector.call(tickets.create(ENGINEER, opened))
    return ticket_id


def runs(collector: PortalCollector) -> list[RunRecord]:
    found: list[RunRecord] = collector.db("list_runs")
    return found


def running_run(collector: PortalCollector, agent: AgentRecord, ticket_id: int | None) -> str:
    return stored_run(
        collector, agent, "run-00000000feed", "service-status", "read-only", "running", ticket_id
    )


def agent_says(collector: PortalCollector, agent: AgentRecord, **kind: object) -> None:
    """A message from the host's agent, as the agent stream hands it to the run service."""
    service = collector.server.runs
    assert service is not None
    host = HostRef(agent.agent_id, agent.customer, agent.hostname)
    collector.call(service.on_agent_message(host, agent_pb2.AgentMessage(**kind)))  # type: ignore[arg-type]


def test_an_engineer_picks_a_playbook_fills_its_parameters_and_starts_it(
    collector: PortalCollector,
) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    erin = signed_in(collector, "erin")
    assert f"/hosts/{agent.agent_id}/run" in erin.get("/fleet").text
    chooser = erin.get(f"/hosts/{agent.agent_id}/run")
    assert (
        chooser.status == 200 and "service-status" in chooser.text and "disk-usage" in chooser.text
    )
    form = erin.get(f"/hosts/{agent.agent_id}/run?playbook=service-status")
    assert 'name="param.unit"' in form.text and 'name="param.lines"' in form.text
    answer = erin.post(
        f"/hosts/{agent.agent_id}/run",
        {
            "csrf": erin.csrf("/"),
            "playbook": "service-status",
            "param.unit": "nginx.service",
            "param.lines": "50",
            "reason": "nginx restarts every night",
        },
    )
    assert answer.status == 303, answer.text
    (run,) = runs(collector)
    assert answer.headers["Location"] == f"/runs/{run.run_id}"
    assert (run.playbook, dict(run.params), run.requested_by) == (
        "service-status",
        {"unit": "nginx.service", "lines": "50"},
        "user:erin",
    )
    assert run.state == "undeliverable"  # no agent connected in this test: said, not hidden
    (audited,) = collector.audit("playbook.run_requested")
    assert audited.actor == "user:erin" and audited.target == run.run_id
    assert audited.details["reason"] == "nginx restarts every night"
    assert run.reason == "nginx restarts every night"
    page = erin.get(f"/runs/{run.run_id}")
    assert page.status == 200 and "not connected" in page.text and "unit=nginx.service" in page.text
    assert '<dd id="run-reason">nginx restarts every night</dd>' in page.text
    assert "data-live" not in page.text  # finished: nothing to follow, no reload


def test_a_reason_over_the_limit_is_refused_in_the_form_and_nothing_starts(
    collector: PortalCollector,
) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    erin = signed_in(collector, "erin")
    too_long = "磁盘" * 500  # 1,000 characters, 3,000 UTF-8 bytes: over the 2 KiB limit
    answer = erin.post(
        f"/hosts/{agent.agent_id}/run",
        {"csrf": erin.csrf("/"), "playbook": "disk-usage", "reason": too_long},
    )
    assert answer.status == 400 and "reason is 3000 bytes" in answer.text
    assert too_long in answer.text  # what was typed is shown again
    assert runs(collector) == [] and collector.audit("playbook.run_requested") == []


def test_a_run_started_from_a_ticket_is_listed_on_it_for_the_customer_too(
    collector: PortalCollector,
) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    ticket_id = host_ticket(collector, agent, "nginx keeps failing")
    erin = signed_in(collector, "erin")
    ticket_page = erin.get(f"/tickets/{ticket_id}")
    link = f"/hosts/{agent.agent_id}/run?ticket={ticket_id}"
    assert link in ticket_page.text.replace("&amp;", "&")
    assert (
        f'name="ticket" inputmode="numeric" value="{ticket_id}"'
        in erin.get(f"/hosts/{agent.agent_id}/run?playbook=disk-usage&ticket={ticket_id}").text
    )
    answer = erin.post(
        f"/hosts/{agent.agent_id}/run",
        {
            "csrf": erin.csrf("/"),
            "playbook": "disk-usage",
            "ticket": str(ticket_id),
            "reason": "<b>/var</b> fills up",
        },
    )
    assert answer.status == 303, answer.text
    (run,) = runs(collector)
    assert run.ticket_id == ticket_id
    for viewer in (erin, signed_in(collector, "carol")):
        listed = viewer.get(f"/tickets/{ticket_id}").text
        section = listed[listed.index('id="ticket-runs"') :]
        assert f'href="/runs/{run.run_id}"' in section and "disk-usage" in section
        assert "user:erin" in section
        assert '<td class="run-reason">&lt;b&gt;/var&lt;/b&gt; fills up</td>' in section
    assert signed_in(collector, "mallory").get(f"/tickets/{ticket_id}").status == 404


def test_a_ticket_of_another_customer_cannot_be_named(collector: PortalCollector) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    other = collector.add_host("ag-glob1", "globex", "gx1")
    foreign = host_ticket(collector, other, "globex's problem")
    erin = signed_in(collector, "erin")
    answer = erin.post(
        f"/hosts/{agent.agent_id}/run",
        {"csrf": erin.csrf("/"), "playbook": "disk-usage", "ticket": str(foreign)},
    )
    assert answer.status == 400 and "belongs to another customer" in answer.text
    assert runs(collector) == []


def test_a_customer_cannot_start_a_run(collector: PortalCollector) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    carol = signed_in(collector, "carol")
    assert carol.get(f"/hosts/{agent.agent_id}/run").status == 403
    answer = carol.post(
        f"/hosts/{agent.agent_id}/run", {"csrf": carol.csrf("/"), "playbook": "disk-usage"}
    )
    assert answer.status == 403
    assert runs(collector) == [] and collector.audit("playbook.run_requested") == []


@pytest.mark.parametrize(
    ("fields", "catalogue_says"),
    [
        ({"param.unit": "nginx.service; rm -rf /"}, "must match the pattern"),
        ({"param.unit": "x.service\nevil"}, "control"),
        ({"param.lines": "1; reboot"}, "whole number"),
        ({"param.command": "reboot"}, "unknown parameter"),
    ],
)
def test_parameter_injection_is_refused_with_the_catalogues_error(
    collector: PortalCollector, fields: dict[str, str], catalogue_says: str
) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    erin = signed_in(collector, "erin")
    answer = erin.post(
        f"/hosts/{agent.agent_id}/run",
        {"csrf": erin.csrf("/"), "playbook": "service-status", "reason": "kept", **fields},
    )
    assert answer.status == 400
    shown = re.search(r'id="run-error">(.*?)</p>', answer.text, re.S)
    assert shown and catalogue_says in shown.group(1).lower(), answer.text[:2000]
    assert 'value="kept"' in answer.text  # what was typed is not lost
    assert runs(collector) == []


def test_starting_a_run_without_the_csrf_token_is_refused(collector: PortalCollector) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    erin = signed_in(collector, "erin")
    fields = {"playbook": "disk-usage"}
    assert erin.post(f"/hosts/{agent.agent_id}/run", fields).status == 403
    assert erin.post(f"/hosts/{agent.agent_id}/run", {**fields, "csrf": "x" * 43}).status == 403
    assert runs(collector) == []


def test_unknown_hosts_and_playbooks_are_not_found(collector: PortalCollector) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    erin = signed_in(collector, "erin")
    assert erin.get("/hosts/ag-nowhere/run").status == 404
    answer = erin.post(
        f"/hosts/{agent.agent_id}/run", {"csrf": erin.csrf("/"), "playbook": "format-disks"}
    )
    assert answer.status == 404 and "no playbook" in answer.text
    unnamed = erin.post(f"/hosts/{agent.agent_id}/run", {"csrf": erin.csrf("/"), "playbook": ""})
    assert unnamed.status == 400 and "choose a playbook" in unnamed.text
    bad_ticket = erin.post(
        f"/hosts/{agent.agent_id}/run",
        {"csrf": erin.csrf("/"), "playbook": "disk-usage", "ticket": "7 OR 1=1"},
    )
    assert bad_ticket.status == 400 and "ticket must be a ticket number" in bad_ticket.text
    assert runs(collector) == []


def test_another_customers_run_is_not_found_by_id(collector: PortalCollector) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    run_id = run_waiting_for_approval(collector, agent)
    mallory = signed_in(collector, "mallory")
    assert mallory.get(f"/runs/{run_id}").status == 404
    assert mallory.get(f"/runs/{run_id}/live").status == 404
    assert mallory.get(f"/runs/{run_id}/to-sign?key=sha256:" + "cd" * 32).status == 404
    denied = mallory.post(f"/runs/{run_id}/deny", {"csrf": mallory.csrf("/"), "reason": "x"})
    assert denied.status == 404
    assert collector.db("get_run", run_id).state == "waiting_approval"


def test_a_customer_sees_what_a_run_does_and_denies_it_with_a_reason(
    collector: PortalCollector,
) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    run_id = run_waiting_for_approval(collector, agent)
    carol = signed_in(collector, "carol")
    page = carol.get(f"/runs/{run_id}").text
    assert "restart_service" in page and "1.0.0" in page and "unit=nginx.service" in page
    assert 'id="deny"' in page and 'id="approve"' in page
    empty = carol.post(f"/runs/{run_id}/deny", {"csrf": carol.csrf("/"), "reason": " "})
    assert empty.status == 400 and "reason must not be empty" in empty.text
    erin = signed_in(collector, "erin")
    assert 'id="deny"' not in erin.get(f"/runs/{run_id}").text
    assert erin.post(f"/runs/{run_id}/deny", {"csrf": erin.csrf("/"), "reason": "no"}).status == 403
    assert carol.post(f"/runs/{run_id}/deny", {"reason": "no csrf"}).status == 403
    assert collector.db("get_run", run_id).state == "waiting_approval"

    answer = carol.post(
        f"/runs/{run_id}/deny", {"csrf": carol.csrf("/"), "reason": "not during business hours"}
    )
    assert answer.status == 303
    run = collector.db("get_run", run_id)
    assert run.state == "refused"
    assert run.message == "denied by user:carol: not during business hours"
    (audited,) = collector.audit("playbook.run_denied")
    assert audited.actor == "user:carol" and audited.target == run_id
    assert audited.details["reason"] == "not during business hours"
    assert collector.audit("playbook.run_refused") == []  # not the agent's refusal
    again = carol.post(f"/runs/{run_id}/deny", {"csrf": carol.csrf("/"), "reason": "twice"})
    assert again.status == 409


def test_the_run_page_follows_the_output_live_then_shows_the_result(
    collector: PortalCollector,
) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    ticket_id = host_ticket(collector, agent, "nginx")
    run_id = running_run(collector, agent, ticket_id)
    agent_says(
        collector,
        agent,
        run_output=agent_pb2.RunOutput(run_id=run_id, step="units", data=b"first line\n"),
    )
    carol = signed_in(collector, "carol")
    page = carol.get(f"/runs/{run_id}").text
    assert "first line" in page and f'data-live="/runs/{run_id}/live?from=11"' in page
    assert '<meta http-equiv="refresh" content="3">' in page  # inside <noscript>
    assert '<script src="/static/run-follow.js"' in page

    stream = carol.stream(f"/runs/{run_id}/live?from=11")
    try:
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert "default-src 'none'" in stream.headers["Content-Security-Policy"]
        assert stream.readline() == b"event: state\n"  # the current state first
        assert json.loads(stream.readline().removeprefix(b"data: "))["state"] == "running"
        stream.readline()
        colour = b"\x1b[31mred\x1b[0m \xe4\xb8\xad"  # an escape sequence, then UTF-8 split below
        agent_says(
            collector,
            agent,
            run_output=agent_pb2.RunOutput(
                run_id=run_id, step="units", data=b"second " + colour[:-1]
            ),
        )
        agent_says(
            collector,
            agent,
            run_output=agent_pb2.RunOutput(run_id=run_id, step="units", data=colour[-1:] + b"\n"),
        )
        result = agent_pb2.RunResult(run_id=run_id, status="ok", duration_ms=1500)
        result.steps.add(name="units", status="ok", exit_code=0, has_exit_code=True)
        agent_says(collector, agent, run_result=result)
        events = stream.read().decode()
    finally:
        stream.close()
    output = "".join(
        json.loads(line.removeprefix("data: "))
        for block in events.split("\n\n")
        if block.startswith("event: output")
        for line in block.splitlines()[1:]
    )
    assert output == "second red 中\n"  # not "first line" again; escapes removed
    assert "event: done" in events and '"state": "ok"' in events

    finished = carol.get(f"/runs/{run_id}").text
    assert "first line" in finished and "second red" in finished
    assert "data-live" not in finished and 'id="run-steps"' in finished
    assert "1.5 s" in finished
    ticket_page = carol.get(f"/tickets/{ticket_id}").text
    assert f'href="/runs/{run_id}"' in ticket_page


def test_the_approval_summary_is_translated_and_read_from_the_signed_bytes() -> None:
    body = {
        "type": "approval",
        "customer": "acme",
        "agent_id": "ag-acme1",
        "approver": "carol",
        "subject": {
            "kind": "run",
            "run_id": "run-0123456789ab",
            "playbook": "restart_service",
            "version": "1.0.0",
            "digest": "sha256:" + "ab" * 32,
            "params": {"unit": "nginx.service"},
        },
        "issued_ms": 1_700_000_000_000,
        "expires_ms": 1_700_003_600_000,
        "nonce": "00" * 16,
    }
    english = dict(approval_summary.summary(body, i18n.translations("en").gettext, "db1"))
    assert english["Host"] == "db1 (ag-acme1)"
    assert english["You approve"] == "a playbook run"
    assert english["Parameters"] == "unit=nginx.service"
    assert english["The approval expires at"] == "2023-11-14 23:13:20 UTC"
    chinese = dict(approval_summary.summary(body, i18n.translations("zh-CN").gettext))
    assert set(chinese) & set(english) == set()  # every label translated
    assert "restart_service" in chinese.values() and "1.0.0" in chinese.values()
    session = {
        **body,
        "subject": {
            "kind": "session",
            "session_id": "ses-1",
            "engineer": "erin",
            "window_end_ms": 1_700_001_800_000,
        },
    }
    lines = dict(approval_summary.summary(session, i18n.translations("en").gettext))
    assert lines["You approve"] == "a remote session" and lines["Engineer"] == "erin"
    assert lines["Access until"] == "2023-11-14 22:43:20 UTC"


def test_the_run_pages_need_a_signed_in_browser(collector: PortalCollector) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    run_id = run_waiting_for_approval(collector, agent)
    stranger = Browser(collector.url, collector.ca_file)
    for path in (f"/hosts/{agent.agent_id}/run", f"/runs/{run_id}", f"/runs/{run_id}/live"):
        answer = stranger.get(path)
        assert (answer.status, answer.headers["Location"]) == (303, "/login"), path
    for path in (f"/hosts/{agent.agent_id}/run", f"/runs/{run_id}/deny"):
        assert stranger.post(path, {"playbook": "disk-usage", "reason": "x"}).status == 401
    assert runs(collector) == [collector.db("get_run", run_id)]  # nothing started or denied


def test_live_views_are_limited_per_user(collector: PortalCollector) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    run_id = running_run(collector, agent, None)
    carol = signed_in(collector, "carol")
    streams = [carol.stream(f"/runs/{run_id}/live") for _ in range(MAX_FOLLOWS_PER_USER)]
    try:
        refused = carol.get(f"/runs/{run_id}/live")
        assert refused.status == 429 and "close one" in refused.text
        other = signed_in(collector, "erin").stream(f"/runs/{run_id}/live")
        assert other.status == 200  # the limit is per user
        other.close()
        assert carol.get(f"/runs/{run_id}/live?from=x").status == 400
    finally:
        for stream in streams:
            stream.close()
