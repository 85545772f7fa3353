"""Inspections end to end: a real collector, real agents, a real webhook receiver and the
CLI: plan -> application notified -> consent -> run -> report -> sign, and the attacks."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pypdf
import pytest

from playbooks.shipped import dev_public_key_path
from tests.e2e.test_tickets import _Receiver
from tests.support import Agent, Collector, wait_for


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    hook = _Receiver()
    yield hook
    hook.close()


@pytest.fixture
def collector(tmp_path: Path, receiver: _Receiver) -> Iterator[Collector]:
    config = tmp_path / "inspections.yaml"
    config.write_text(
        f"""
calendar: {{timezone: Asia/Shanghai, holidays: ["2027-01-01"]}}
run_timeout: 2m
announce:
  acme: [{{webhook: "{receiver.url}"}}]
"""
    )
    # a site rule that finds a fault on every filesystem: a real finding, a real ticket
    catalogue = tmp_path / "site-catalogue.yaml"
    catalogue.write_text(
        """
entries:
  - id: filesystem.in_use
    check: filesystem_usage
    item: filesystem
    state: fault
    level: "4"
    params: {above: 0.0}
    title: {en: "{subject} in use ({percent})", zh-CN: "{subject} 已使用 {percent}"}
    recommendation: {en: "Watch {subject}.", zh-CN: "关注 {subject}。"}
"""
    )
    args = [
        "--evaluation-interval",
        "500ms",
        "--inspections-config",
        str(config),
        "--inspection-catalogue",
        str(catalogue),
    ]
    server = Collector(tmp_path / "collector", extra_args=args).start()
    yield server
    server.stop()
    print("--- collector log ---\n" + server.log_text()[-5000:])


def _host(
    collector: Collector, make_agent: Callable[..., Agent], tmp_path: Path, name: str
) -> Agent:
    policy = tmp_path / f"policy-{name}.toml"
    policy.write_text("")
    policy.chmod(0o600)
    agent = make_agent(
        name,
        playbooks={"trusted_keys": [str(dev_public_key_path())], "policy": str(policy)},
    )
    assert agent.enroll(collector.join_command("acme")).returncode == 0
    return agent


def _show(collector: Collector, token: str, inspection_id: int) -> dict[str, Any]:
    return dict(collector.client_json(token, "inspection", "show", str(inspection_id)))


def _refused(collector: Collector, token: str, *args: str) -> str:
    result = collector.client(token, *args)
    assert result.returncode != 0, f"{args} was allowed: {result.stdout}"
    return result.stderr


def test_plan_announce_consent_run_report_and_sign(
    tmp_path: Path,
    collector: Collector,
    receiver: _Receiver,
    make_agent: Callable[..., Agent],
) -> None:
    web = _host(collector, make_agent, tmp_path, "web-1")
    _host(collector, make_agent, tmp_path, "db-1")  # enrolled, never started: offline
    web.start()
    admin = collector.admin_token
    wait_for(
        lambda: any(a["connected"] for a in collector.client_json(admin, "agents")),
        20,
        "web-1 connected",
    )
    erin = collector.add_user("erin", "engineer")
    alice = collector.add_user("alice", "customer", customer="acme")
    mallory = collector.add_user("mallory", "customer", customer="globex")

    # plan: the date 25 s ahead, announced at once (notice 1h)
    first = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=25)).isoformat(timespec="seconds")
    _refused(collector, alice, "inspection", "plan", "--customer", "acme", "--first", first)
    plan = collector.client_json(
        erin, "inspection", "plan", "--customer", "acme", "--first", first, "--notice", "1h"
    )
    assert plan["every"] == "quarter" and plan["state"] == "active"
    assert [p["id"] for p in collector.client_json(alice, "inspection", "plans")] == [plan["id"]]
    assert collector.client_json(mallory, "inspection", "plans") == []

    body = wait_for(lambda: receiver.bodies, 20, "inspection application webhook")[0]
    application = body["inspection"]
    assert body["event"] == "inspection_application"
    assert application["hosts"] == ["db-1", "web-1"] and application["engineer"] == "erin"
    assert "filesystems" in application["checklist"]
    inspection_id = application["id"]

    # the attacks: another customer, the wrong role, the wrong order
    assert "not found" in _refused(collector, mallory, "inspection", "show", str(inspection_id))
    assert "not found" in _refused(collector, mallory, "inspection", "consent", str(inspection_id))
    assert "not consented" in _refused(collector, erin, "inspection", "run", str(inspection_id))
    assert "customer" in _refused(collector, erin, "inspection", "consent", str(inspection_id))
    assert collector.client_json(mallory, "inspections") == []

    consent = collector.client(alice, "inspection", "consent", str(inspection_id))
    assert consent.returncode == 0, consent.stderr
    assert "already" in _refused(collector, alice, "inspection", "consent", str(inspection_id))

    # at the date the tick runs the inspection playbook on both hosts
    shown = wait_for(
        lambda: (
            (s := _show(collector, erin, inspection_id))["inspection"]["state"] == "awaiting_report"
            and s
        ),
        120,
        "the run and its analysis",
    )
    outcomes = {h["hostname"]: h["outcome"] for h in shown["hosts"]}
    assert outcomes == {"web-1": "collected", "db-1": "offline"}
    assert shown["inspection"]["report_due"]
    # the fault findings opened tickets, linked both ways
    ticket_ids = shown["inspection"]["ticket_ids"]
    assert ticket_ids
    tickets = [
        collector.client_json(alice, "ticket", "show", str(number))["ticket"]
        for number in ticket_ids
    ]
    assert all(t["source"] == "inspection" for t in tickets)
    assert all(t["labels"]["inspection"] == str(inspection_id) for t in tickets)
    site = [t for t in tickets if "in use" in t["title"]]
    assert site and all(t["level"] == "4" and t["hostname"] == "web-1" for t in site)
    assert "not published" in _refused(
        collector, alice, "inspection", "sign", str(inspection_id), "--name", "张三", "--title", "x"
    )

    published = collector.client_json(
        erin, "inspection", "publish", str(inspection_id), "--summary", "巡检正常 / all fine"
    )
    sha256 = published["inspection"]["report_sha256"]
    report = collector.client(
        alice, "inspection", "report", str(inspection_id), "--format", "json", "--lang", "en"
    )
    assert report.returncode == 0, report.stderr
    assert f"report sha256 {sha256}" in report.stderr
    document = json.loads(report.stdout)
    assert document["summary"] == "巡检正常 / all fine"
    assert document["schema"] == "aftercare.inspection-report/1"
    web_host = next(h for h in document["hosts"] if h["hostname"] == "web-1")
    db_host = next(h for h in document["hosts"] if h["hostname"] == "db-1")
    assert web_host["outcome"] == "collected" and db_host["outcome"] == "offline"
    # the real analysis read the facts step: every checklist item has a finding
    assert {f["item"] for f in web_host["findings"]} >= {"filesystem", "memory"}
    html = tmp_path / "report.html"
    written = collector.client(
        alice, "inspection", "report", str(inspection_id), "--format", "html", "-o", str(html)
    )
    assert written.returncode == 0, written.stderr
    page = html.read_text()
    assert "巡检报告" in page and "web-1" in page  # the customer's default language: zh-CN
    assert "巡检正常 / all fine" in page
    pdf = tmp_path / "report.pdf"
    written = collector.client(
        alice, "inspection", "report", str(inspection_id), "--format", "pdf", "--lang", "en",
        "-o", str(pdf),
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    text = "".join(p.extract_text() for p in pypdf.PdfReader(pdf).pages)
    assert "Inspection report" in text and "web-1" in text
    assert "not found" in _refused(
        collector, mallory, "inspection", "report", str(inspection_id), "--format", "json"
    )

    stale = _refused(
        collector,
        alice,
        "inspection",
        "sign",
        str(inspection_id),
        "--name",
        "张三",
        "--title",
        "运维主管",
        "--sha256",
        "0" * 64,
    )
    assert "not the published one" in stale
    assert "not found" in _refused(
        collector,
        mallory,
        "inspection",
        "sign",
        str(inspection_id),
        "--name",
        "M",
        "--title",
        "x",
        "--sha256",
        sha256,
    )
    signed = collector.client_json(
        alice,
        "inspection",
        "sign",
        str(inspection_id),
        "--name",
        "张三",
        "--title",
        "运维主管",
        "--sha256",
        sha256,
    )
    assert signed["inspection"]["status"] == "signed"
    listed = collector.client_json(alice, "inspections", "--state", "signed")
    assert [i["id"] for i in listed] == [inspection_id]
    table = collector.client(alice, "inspections")
    assert table.returncode == 0 and f"{inspection_id:>5} signed" in table.stdout
    shown_text = collector.client(erin, "inspection", "show", str(inspection_id)).stdout
    assert "db-1" in shown_text and "offline" in shown_text and sha256 in shown_text
    final = collector.client(alice, "inspection", "report", str(inspection_id), "--format", "json")
    assert json.loads(final.stdout)["signoff"]["name"] == "张三"
    assert f"report sha256 {sha256}" in final.stderr  # unchanged by the signature

    def signed_metric() -> str:
        text = collector.metrics()
        return text if 'aftercare_inspections{customer="acme",state="signed"} 1.0' in text else ""

    metrics = wait_for(signed_metric, 10, "inspection metrics")
    assert 'aftercare_inspections_overdue{customer="acme"} 0.0' in metrics
    audit = json.loads(collector.admin("audit", "list", "--json").stdout)
    actions = {e["action"] for e in audit}
    assert {"inspection.plan_created", "inspection.published", "inspection.signed"} <= actions

    # the host's archive shows the inspection: its run, publication and sign-off
    archive = collector.client_json(alice, "archive", "web-1", "--json")
    inspection_entries = [
        e["summary"] for e in archive["entries"] if e["ref"] == f"inspection {inspection_id}"
    ]
    assert any("host collected" in s for s in inspection_entries), archive
    assert any("published by erin" in s for s in inspection_entries)
    assert any("signed by 张三" in s for s in inspection_entries)


def _run_now(collector: Collector, erin: str, alice: str, first: str, config: Path) -> int:
    """A new plan's first inspection, consented and run at once; its id when analysed."""
    plan = collector.client_json(
        erin, "inspection", "plan", "--customer", "acme", "--first", first,
        "--config-file", str(config),
    )  # fmt: skip
    planned = wait_for(
        lambda: [
            i["id"]
            for i in collector.client_json(erin, "inspections", "--json")
            if i["plan_id"] == plan["id"]
        ],
        20,
        "the plan's first inspection",
    )
    inspection_id = int(planned[0])
    consent = collector.client(alice, "inspection", "consent", str(inspection_id))
    assert consent.returncode == 0, consent.stderr
    started = collector.client(erin, "inspection", "run", str(inspection_id))
    assert started.returncode == 0, started.stderr
    wait_for(
        lambda: _show(collector, erin, inspection_id)["inspection"]["state"] == "awaiting_report",
        120,
        f"inspection {inspection_id} run and analysed",
    )
    return inspection_id


def test_a_config_change_between_two_inspections_is_drift_and_an_archived_change(
    tmp_path: Path, collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    web = _host(collector, make_agent, tmp_path, "web-1")
    web.start()
    wait_for(
        lambda: any(a["connected"] for a in collector.client_json(collector.admin_token, "agents")),
        20,
        "web-1 connected",
    )
    erin = collector.add_user("erin", "engineer")
    alice = collector.add_user("alice", "customer", customer="acme")
    config = tmp_path / "app.conf"
    config.write_text("listen = 8080\n")
    config.chmod(0o644)  # the facts step hashes world-readable files only
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)

    first_id = _run_now(collector, erin, alice, later.isoformat(timespec="seconds"), config)
    config.write_text("listen = 9090\n")  # the change made between the two inspections
    second_at = (later + dt.timedelta(days=1)).isoformat(timespec="seconds")
    second_id = _run_now(collector, erin, alice, second_at, config)

    published = collector.client_json(erin, "inspection", "publish", str(second_id))
    sha256 = published["inspection"]["report_sha256"]
    report = collector.client(alice, "inspection", "report", str(second_id), "--format", "json")
    assert report.returncode == 0, report.stderr
    [host] = json.loads(report.stdout)["hosts"]
    assert host["drift_state"] == "compared" and host["previous_inspection_id"] == str(first_id)
    [change] = [c for c in host["drift"] if c["kind"].startswith("config")]
    assert change["kind"] == "config.changed" and change["item"] == str(config)
    assert change["before"] != change["after"]

    # the published PDF in the customer's language was rendered ahead; asking gets those bytes
    kept = collector.data_dir / "reports" / f"{sha256}.unsigned.zh-CN.pdf"
    wait_for(kept.exists, 60, "the PDF rendered at publication")
    made = kept.stat()
    pdf = tmp_path / "second.pdf"
    for _ in range(2):
        written = collector.client(
            alice, "inspection", "report", str(second_id), "--format", "pdf", "-o", str(pdf)
        )
        assert written.returncode == 0, written.stderr
        assert f"report sha256 {sha256}" in written.stderr
        assert pdf.read_bytes() == kept.read_bytes()
    again = kept.stat()  # not laid out again: the same file, never rewritten
    assert (again.st_ino, again.st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    text = "".join(p.extract_text() for p in pypdf.PdfReader(pdf).pages)
    assert "app.conf" in text  # the drift is in the report people read

    archive = collector.client_json(alice, "archive", "web-1", "--json")
    changes = [e for e in archive["entries"] if e["kind"] == "change"]
    assert any(
        str(config) in e["summary"] and e["ref"] == f"inspection {second_id}" for e in changes
    ), changes
    assert not any(e["ref"] == f"inspection {first_id}" for e in changes)  # nothing to compare
