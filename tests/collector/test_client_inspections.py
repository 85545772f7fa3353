"""The inspection client commands against a fake API: the requests sent and the output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proto import api_pb2
from tests.collector.test_client_commands import FakeApi, run

SHA = "ab" * 32
INFO = api_pb2.InspectionInfo(
    id=7,
    plan_id=1,
    customer="acme",
    scheduled_unix_ms=1_800_000_000_000,
    state="awaiting_signoff",
    status="awaiting_signoff",
    engineer="erin",
    report_sha256=SHA,
    ticket_ids=[12],
)
DETAIL = api_pb2.InspectionDetail(
    inspection=INFO,
    hosts=[api_pb2.InspectionHost(agent_id="a1", hostname="db-1", outcome="offline", detail="x")],
    events=[api_pb2.InspectionEvent(id=1, at_unix_ms=1, actor="system", kind="planned")],
    detail_json="{}",
)
PLAN = api_pb2.InspectionPlan(
    id=1, customer="acme", every="quarter", first_unix_ms=1_800_000_000_000, state="active"
)


def test_the_list_and_show_print_status_hosts_and_tickets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = FakeApi(
        ListInspections=api_pb2.ListInspectionsResponse(inspections=[INFO]),
        GetInspection=DETAIL,
    )
    assert run(api, "inspections", "--state", "overdue", "--customer", "acme") == 0
    assert "    7 awaiting_signoff  acme" in capsys.readouterr().out
    [(_, request)] = api.calls
    assert list(request.states) == ["overdue"] and request.customer == "acme"
    assert run(api, "inspection", "show", "7") == 0
    shown = capsys.readouterr().out
    assert "db-1" in shown and "offline" in shown and "#12" in shown and SHA in shown
    assert run(api, "inspection", "show", "7", "--json") == 0
    as_json = json.loads(capsys.readouterr().out)
    assert (
        as_json["inspection"]["ticket_ids"] == [12] and as_json["hosts"][0]["outcome"] == "offline"
    )


def test_sign_binds_the_sha256_given_or_the_published_one_shown_first(
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = FakeApi(GetInspection=DETAIL, ActOnInspection=DETAIL)
    assert run(api, "inspection", "sign", "7", "--name", "张三", "--title", "运维主管") == 0
    assert f"signing the published report sha256 {SHA}" in capsys.readouterr().err
    assert [method for method, _ in api.calls] == ["GetInspection", "ActOnInspection"]
    signed = api.calls[1][1]
    assert (signed.action, signed.name, signed.report_sha256) == ("sign", "张三", SHA)
    api.calls.clear()
    run(api, "inspection", "sign", "7", "--name", "A", "--title", "B", "--sha256", "cd" * 32)
    [(method, request)] = api.calls
    assert method == "ActOnInspection" and request.report_sha256 == "cd" * 32


def test_decline_reschedule_and_publish_send_their_arguments() -> None:
    api = FakeApi(ActOnInspection=DETAIL)
    run(api, "inspection", "decline", "7", "--reason", "busy", "--propose", "2027-01-20T09:00")
    run(api, "inspection", "reschedule", "7", "--at", "2027-01-22T09:00")
    run(api, "inspection", "publish", "7", "--summary", "ok")
    sent = [(r.action, r.reason, r.at, r.summary) for _, r in api.calls]
    assert sent == [
        ("decline", "busy", "2027-01-20T09:00", ""),
        ("reschedule", "", "2027-01-22T09:00", ""),
        ("publish", "", "", "ok"),
    ]


def test_plans_are_created_changed_and_cancelled(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(
        CreateInspectionPlan=PLAN,
        ChangeInspectionPlan=PLAN,
        ListInspectionPlans=api_pb2.ListInspectionPlansResponse(plans=[PLAN]),
    )
    argv = ["inspection", "plan", "--customer", "acme", "--first", "2027-01-15T09:00"]
    run(api, *argv, "--config-file", "/etc/a", "--config-file", "/etc/b")
    assert "plan 1 planned: acme every quarter" in capsys.readouterr().out
    run(api, "inspection", "plans")
    assert "active" in capsys.readouterr().out
    run(api, "inspection", "plan-modify", "1", "--engineer", "frank")
    run(api, "inspection", "plan-modify", "1", "--hosts", "")
    run(api, "inspection", "plan-cancel", "1", "--reason", "ended")
    created, _, unchanged_hosts, all_hosts, cancelled = (r for _, r in api.calls)
    assert list(created.config_files) == ["/etc/a", "/etc/b"] and created.every == "quarter"
    assert not unchanged_hosts.HasField("hosts") and not unchanged_hosts.set_config_files
    assert all_hosts.HasField("hosts") and all_hosts.hosts == ""
    assert cancelled.cancel and cancelled.reason == "ended"


def test_the_report_is_written_to_a_file_and_a_pdf_never_to_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    report = api_pb2.InspectionReport(content=b"%PDF-1.7 ...", report_sha256=SHA, format="pdf")
    api = FakeApi(GetInspectionReport=report)
    target = tmp_path / "r.pdf"
    assert run(api, "inspection", "report", "7", "--format", "pdf", "-o", str(target)) == 0
    assert target.read_bytes() == b"%PDF-1.7 ..."
    assert f"report sha256 {SHA}" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert run(api, "inspection", "report", "7", "--format", "pdf") == 1
    assert "-o FILE" in capsys.readouterr().err
