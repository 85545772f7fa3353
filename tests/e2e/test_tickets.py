"""Tickets end to end: real agents, a real collector, the CLI, Alertmanager and notifications."""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from collector.store import open_store
from collector.tickets import lifecycle
from collector.tickets.model import NewTicket
from tests.support import (
    Agent,
    Collector,
    alertmanager_ready,
    free_port,
    post_alerts,
    wait_for,
)

MEMORY_RULE = """
groups:
  - name: test
    rules:
      - name: memory_present
        condition: {metric: memory_total_bytes, op: ">", threshold: 0}
        for: 1s
        level: 2
        annotations:
          summary: "{{ host }} has memory ({{ value | bytes }})"
"""

HEARTBEAT_RULE = """
groups:
  - name: test
    rules:
      - name: host_unreachable
        heartbeat: {grace: 3s}
        level: 1
        annotations:
          summary: "{{ host }} has not reported for {{ value | duration }}"
"""


def _collector(
    tmp_path: Path, name: str, rules: str = "", extra: list[str] | None = None
) -> Collector:
    args = ["--evaluation-interval", "500ms", "--recovery-delay", "1s", *(extra or [])]
    if rules:
        path = tmp_path / f"{name}-rules.yaml"
        path.write_text(rules)
        args += ["--rules", str(path)]
    return Collector(tmp_path / name, extra_args=args)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Callable[..., Collector]]:
    started: list[Collector] = []

    def start(
        name: str = "collector", rules: str = "", extra: list[str] | None = None
    ) -> Collector:
        server = _collector(tmp_path, name, rules, extra).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        print(f"--- {server.data_dir.name} log ---\n" + server.log_text()[-5000:])


def _tickets(collector: Collector, token: str, *args: str) -> list[dict[str, Any]]:
    return list(collector.client_json(token, "tickets", *args))


def _enrolled(
    collector: Collector, make_agent: Callable[..., Agent], host: str, customer: str
) -> Agent:
    agent = make_agent(host)
    assert agent.enroll(collector.join_command(customer)).returncode == 0
    return agent


def test_fault_opens_one_ticket_and_the_loop_closes_only_on_confirmation(
    running: Callable[..., Collector], make_agent: Callable[..., Agent]
) -> None:
    collector = running(rules=MEMORY_RULE)
    agent = _enrolled(collector, make_agent, "web-1", "acme")
    engineer = collector.add_user("erin", "engineer")
    customer = collector.add_user("alice", "customer", customer="acme")
    outsider = collector.add_user("mallory", "customer", customer="globex")
    started = time.monotonic()
    agent.start()
    [ticket] = wait_for(lambda: _tickets(collector, engineer), 20, "ticket opened")
    opened_after = time.monotonic() - started
    assert opened_after < 1 + 1 + 10, "one interval plus `for`, plus start-up"
    assert (ticket["level"], ticket["state"], ticket["hostname"]) == ("2", "open", "web-1")
    assert ticket["title"].startswith("web-1 has memory")
    number = str(ticket["id"])

    time.sleep(2)  # the fault keeps firing: still one ticket, no re-fire events
    assert len(_tickets(collector, engineer)) == 1
    events = collector.client_json(engineer, "ticket", "show", number)["events"]
    assert [e["kind"] for e in events] == ["opened"]

    # customers: their own ticket only, and no engineer actions
    assert [t["id"] for t in _tickets(collector, customer)] == [ticket["id"]]
    assert _tickets(collector, outsider) == []
    hidden = collector.client(outsider, "ticket", "show", number)
    assert hidden.returncode == 1 and "no ticket" in hidden.stderr
    refused = collector.client(customer, "ticket", "ack", number)
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr
    assert collector.client(outsider, "ticket", "confirm", number).returncode == 1

    assert collector.client(engineer, "ticket", "ack", number).returncode == 0
    acked = collector.client_json(engineer, "ticket", "show", number)["ticket"]
    assert {c["name"]: c["state"] for c in acked["sla"]}["response"] != "met", "ack is internal"
    contact = ("ticket", "contact", number, "--via", "phone", "--note", "called Alice")
    refused = collector.client(customer, *contact)
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr
    fax = collector.client(engineer, "ticket", "contact", number, "--via", "fax", "--note", "x")
    assert fax.returncode == 2 and "invalid choice" in fax.stderr
    assert collector.client(engineer, *contact).returncode == 0
    contacted = collector.client_json(engineer, "ticket", "show", number)["ticket"]
    assert {c["name"]: c["state"] for c in contacted["sla"]}["response"] == "met"
    early = collector.client(customer, "ticket", "confirm", number)
    assert early.returncode == 1, "nothing to confirm before it is resolved"
    assert "FAILED_PRECONDITION" in early.stderr, early.stderr
    resolved = collector.client(
        engineer,
        "ticket",
        "resolve",
        number,
        "--cause",
        "test rule",
        "--actions",
        "none",
        "--prevention",
        "raise the threshold",
    )
    assert resolved.returncode == 0, resolved.stderr
    assert collector.client(customer, "ticket", "confirm", number).returncode == 0
    detail = collector.client_json(engineer, "ticket", "show", number)
    kinds = [e["kind"] for e in detail["events"]]
    assert kinds[:1] == ["opened"] and "acknowledged" in kinds and "closed" in kinds
    actors = {e["kind"]: e["actor"] for e in detail["events"]}
    assert actors["acknowledged"] == "user:erin" and actors["confirmed"] == "user:alice"

    # the fault still fires after the close: the ticket re-opens, it does not go silent
    def reopened() -> dict[str, Any] | None:
        shown: dict[str, Any] = collector.client_json(engineer, "ticket", "show", number)
        return shown if shown["ticket"]["state"] == "reopened" else None

    again = wait_for(reopened, 15, "the closed ticket of a still-firing fault re-opened")
    assert again["ticket"]["reopen_count"] == 1
    assert [e["kind"] for e in again["events"]][-2:] == ["refired", "reopened"]
    assert [t["id"] for t in _tickets(collector, engineer)] == [ticket["id"]]

    # every act is also in the hash-chained audit log, and the chain verifies
    audit = json.loads(collector.admin("audit", "list", "--json").stdout)
    acts = {(e["action"], e["actor"]) for e in audit if e["target"] == f"ticket:{number}"}
    assert {("ticket.acknowledged", "user:erin"), ("ticket.confirmed", "user:alice")} <= acts
    assert ("ticket.contacted", "user:erin") in acts
    assert ("ticket.reopened", "rule") in {(a, r.split(":")[0]) for a, r in acts}
    verified = collector.admin("audit", "verify")
    assert verified.returncode == 0 and "intact" in verified.stdout, verified.stdout

    report = collector.client(engineer, "ticket", "report", number, "--format", "md")
    assert report.returncode == 0
    for text in ("故障分析报告", "test rule", "raise the threshold", "web-1"):
        assert text in report.stdout
    html = collector.client(engineer, "ticket", "report", number, "--format", "html").stdout
    assert html.lstrip().lower().startswith("<!doctype html")


def test_sla_clocks_survive_a_collector_restart(
    running: Callable[..., Collector], make_agent: Callable[..., Agent]
) -> None:
    collector = running(rules=MEMORY_RULE)
    _enrolled(collector, make_agent, "web-1", "acme").start()
    token = collector.admin_token
    [ticket] = wait_for(lambda: _tickets(collector, token), 20, "ticket opened")
    before = {c["name"]: c for c in ticket["sla"]}
    assert before["response"]["state"] == "running"
    collector.stop()
    collector.start()
    [after] = wait_for(lambda: _tickets(collector, token), 20, "ticket listed")
    assert after["id"] == ticket["id"]
    clocks = {c["name"]: c for c in after["sla"]}
    for name in ("response", "resolution"):
        assert clocks[name]["due"] == before[name]["due"]
        assert clocks[name]["started"] == before[name]["started"]
    time.sleep(2)
    assert len(_tickets(collector, token)) == 1, "no duplicate ticket after the restart"
    show = collector.client_json(token, "ticket", "show", str(ticket["id"]))
    assert [e["kind"] for e in show["events"]] == ["opened"]


def test_heartbeat_loss_opens_a_level_1_ticket_and_return_recovers_it(
    running: Callable[..., Collector], make_agent: Callable[..., Agent]
) -> None:
    collector = running(rules=HEARTBEAT_RULE)
    agent = _enrolled(collector, make_agent, "db-1", "acme").start()
    token = collector.admin_token
    wait_for(lambda: collector.client_json(token, "agents")[0]["connected"], 20, "connected")
    time.sleep(4)
    assert _tickets(collector, token) == [], "a reporting host raises no heartbeat ticket"
    agent.stop()
    [ticket] = wait_for(lambda: _tickets(collector, token), 20, "host unreachable ticket")
    assert (ticket["level"], ticket["source"], ticket["state"]) == ("1", "heartbeat", "open")
    agent.start()
    wait_for(lambda: _tickets(collector, token)[0]["state"] == "recovered", 20, "recovered ticket")


class _Receiver:
    """A local webhook receiver recording every JSON body (and its headers)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        bodies, headers = self.bodies, self.headers

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                headers.append(dict(self.headers.items()))
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_sla_warning_and_breach_notify_webhook_and_email(
    tmp_path: Path, running: Callable[..., Collector]
) -> None:
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    mails: list[Any] = []

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mails.append(envelope)
            return "250 OK"

    smtp_port = free_port()
    smtp = aiosmtpd.Controller(Sink(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    receiver = _Receiver()
    try:
        config = tmp_path / "tickets.yaml"
        config.write_text(
            f"""
sla:
  warning_fraction: 0.5
  levels:
    other: {{response: 3s, resolution: 1h}}
escalation:
  steps:
    - trigger: warning
      clocks: [response]
      recipients: [{{webhook: "{receiver.url}"}}]
    - trigger: breach
      clocks: [response]
      recipients: [{{email: oncall@vendor.example}}]
  smtp: {{host: 127.0.0.1, port: {smtp_port}, from: aftercare@vendor.example, starttls: false}}
"""
        )
        collector = running(extra=["--tickets-config", str(config)])
        token = collector.admin_token
        created = collector.client(
            token, "ticket", "create", "printer on fire", "--customer", "acme", "--level", "other"
        )
        assert created.returncode == 0, created.stderr
        wait_for(lambda: receiver.bodies, 20, "warning webhook")
        wait_for(lambda: mails, 20, "breach e-mail")
        time.sleep(2)
        assert len(receiver.bodies) == 1 and len(mails) == 1, "each notification once"
        assert receiver.bodies[0]["ticket"]["title"] == "printer on fire"
        assert mails[0].rcpt_tos == ["oncall@vendor.example"]
        assert b"printer on fire" in mails[0].content
        [ticket] = _tickets(collector, token)
        assert {c["name"]: c["state"] for c in ticket["sla"]}["response"] == "breached"
        show = collector.client_json(token, "ticket", "show", str(ticket["id"]))
        notes = [e for e in show["events"] if e["kind"] == "notification"]
        assert {n["details"]["channel"] for n in notes} == {"webhook", "email"}
        assert all(n["details"]["delivered"] for n in notes)
        assert any(e["kind"] == "escalation" for e in show["events"])
        metrics = collector.metrics()
        assert 'aftercare_sla_breaches_total{clock="response",level="other"} 1.0' in metrics
    finally:
        receiver.close()
        smtp.stop()


def test_customers_are_told_by_webhook_and_email_and_escalations_stay_internal(
    tmp_path: Path, running: Callable[..., Collector]
) -> None:
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    mails: list[Any] = []

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mails.append(envelope)
            return "250 OK"

    smtp_port = free_port()
    smtp = aiosmtpd.Controller(Sink(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    internal, customer = _Receiver(), _Receiver()
    try:
        config = tmp_path / "tickets.yaml"
        config.write_text(
            f"""
auto_confirm: 8s
sla:
  warning_fraction: 0.5
  levels:
    other: {{response: 2s, resolution: 1h}}
escalation:
  steps:
    - trigger: warning
      clocks: [response]
      recipients: [{{webhook: "{internal.url}"}}, {{email: oncall@vendor.example}}]
  smtp: {{host: 127.0.0.1, port: {smtp_port}, from: aftercare@vendor.example, starttls: false}}
customer_notices:
  remind_before: 4s
  customers:
    acme: [{{webhook: "{customer.url}"}}, {{email: ops@acme.example}}]
"""
        )
        public = ["--public-url", "https://support.vendor.example"]
        collector = running(extra=["--tickets-config", str(config), *public])
        token = collector.admin_token
        created = collector.client(
            token, "ticket", "create", "printer on fire", "--customer", "acme", "--level", "other"
        )
        assert created.returncode == 0, created.stderr
        [ticket] = _tickets(collector, token)
        number = str(ticket["id"])

        def events() -> list[str]:
            return [body["event"] for body in customer.bodies]

        wait_for(lambda: "customer_opened" in events(), 20, "opened notice")
        wait_for(lambda: internal.bodies, 20, "internal escalation")
        opened = customer.bodies[0]
        assert opened["link"] == f"https://support.vendor.example/tickets/{number}"
        assert opened["ticket"]["title"] == "printer on fire"
        resolved = collector.client(
            token, "ticket", "resolve", number, "--cause", "toner", "--actions", "replaced"
        )
        assert resolved.returncode == 0, resolved.stderr
        wait_for(lambda: "customer_auto_confirm_soon" in events(), 20, "reminder")

        def closed() -> bool:
            shown = collector.client_json(token, "ticket", "show", number)
            return bool(shown["ticket"]["state"] == "closed")

        wait_for(closed, 20, "auto-confirmed")
        assert events() == [
            "customer_opened",
            "customer_awaiting_confirmation",
            "customer_auto_confirm_soon",
        ], "each notice once"
        assert all(body["event"].startswith("sla_") for body in internal.bodies)
        for body in customer.bodies:
            text = json.dumps(body)
            assert internal.url not in text and "oncall@" not in text
        to_customer = [m for m in mails if m.rcpt_tos == ["ops@acme.example"]]
        to_oncall = [m for m in mails if m.rcpt_tos == ["oncall@vendor.example"]]
        assert len(to_customer) == 3 and len(to_oncall) == 1
        bodies = [_mail_text(m.content) for m in to_customer]
        assert all("oncall@" not in body and internal.url not in body for body in bodies)
        assert all(f"support.vendor.example/tickets/{number}" in body for body in bodies)
        assert "工单" in bodies[0] and "was opened for you" in bodies[0]
        assert "SLA warning" in _mail_text(to_oncall[0].content)
    finally:
        internal.close()
        customer.close()
        smtp.stop()


def _mail_text(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    return str(message["Subject"]) + "\n" + str(body.get_content())


def _post(url: str, body: bytes, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _alert_payload(status: str, fingerprint: str = "f00d", customer: str = "acme") -> bytes:
    alert = {
        "status": status,
        "labels": {
            "alertname": "DiskFull",
            "customer": customer,
            "instance": "nas-1:9100",
            "severity": "critical",
        },
        "annotations": {"summary": "disk full on nas-1"},
        "startsAt": "2026-11-22T01:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-22T01:05:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint,
    }
    return json.dumps(
        {
            "version": "4",
            "groupKey": "{}:{}",
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "aftercare",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://am",
            "alerts": [alert],
        }
    ).encode()


def test_alertmanager_webhook_opens_deduplicates_and_recovers(
    tmp_path: Path, running: Callable[..., Collector]
) -> None:
    (tmp_path / "am-token").write_text("am-secret\n")
    collector = running(extra=["--alertmanager-token-file", str(tmp_path / "am-token")])
    url = f"http://127.0.0.1:{collector.metrics_port}/alertmanager"
    token = collector.admin_token

    assert _post(url, _alert_payload("firing"), "wrong")[0] == 401
    assert _post(url, _alert_payload("firing"), None)[0] == 401
    status, reply = _post(url, b"{not json", "am-secret")
    assert status == 400 and "error" in reply
    status, reply = _post(url, _alert_payload("firing", customer=""), "am-secret")
    assert status == 400 and "customer" in json.dumps(reply)
    assert _tickets(collector, token) == [], "refused payloads open nothing"

    assert _post(url, _alert_payload("firing"), "am-secret")[0] == 200
    assert _post(url, _alert_payload("firing"), "am-secret")[0] == 200
    [ticket] = _tickets(collector, token)
    assert (ticket["level"], ticket["source"], ticket["hostname"]) == ("1", "alertmanager", "nas-1")
    assert _post(url, _alert_payload("resolved"), "am-secret")[0] == 200
    [ticket] = _tickets(collector, token)
    assert ticket["state"] == "recovered"
    assert _post(url, _alert_payload("firing"), "am-secret")[0] == 200
    [ticket] = _tickets(collector, token)
    assert ticket["state"] == "open"
    kinds = [e["kind"] for e in collector.client_json(token, "ticket", "show", "1")["events"]]
    assert kinds == ["opened", "recovered", "refired"]


def test_bad_rule_file_is_refused_at_start_and_kept_out_on_reload(
    tmp_path: Path, running: Callable[..., Collector]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - name: r\n        level: 9\n")
    broken = Collector(tmp_path / "broken", extra_args=["--rules", str(bad)])
    with pytest.raises(AssertionError, match="collector exited"):
        broken.start()
    assert f"{bad}:5" in broken.log_text()

    collector = running(rules=MEMORY_RULE)
    rules_file = tmp_path / "collector-rules.yaml"
    rules_file.write_text("groups: [oops")
    assert collector.process is not None
    collector.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "rules NOT reloaded" in collector.log_text(), 10, "reload refused")
    assert collector.process.poll() is None, "a bad reload never stops the collector"


ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="Alertmanager not installed (Debian prometheus-alertmanager; .ci/run installs it)",
)
def test_real_alertmanager_drives_tickets(
    tmp_path: Path, running: Callable[..., Collector]
) -> None:
    (tmp_path / "am-token").write_text("am-secret\n")
    collector = running(extra=["--alertmanager-token-file", str(tmp_path / "am-token")])
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        f"""
route:
  receiver: aftercare
  group_by: [alertname, customer]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: aftercare
    webhook_configs:
      - url: http://127.0.0.1:{collector.metrics_port}/alertmanager
        send_resolved: true
        http_config:
          authorization:
            credentials_file: {tmp_path / "am-token"}
"""
    )
    port = free_port()
    assert ALERTMANAGER is not None
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "am.log").open("wb"),
    )
    try:
        wait_for(lambda: alertmanager_ready(port), 20, "Alertmanager ready")
        alert = {
            "labels": {
                "alertname": "NodeDown",
                "customer": "acme",
                "instance": "web-9:9100",
                "severity": "major",
            },
            "annotations": {"summary": "web-9 is down"},
        }
        post_alerts(port, [alert])
        token = collector.admin_token
        [ticket] = wait_for(lambda: _tickets(collector, token), 20, "ticket from Alertmanager")
        assert (ticket["level"], ticket["title"], ticket["hostname"]) == (
            "2",
            "web-9 is down",
            "web-9",
        )
        ended = {**alert, "endsAt": "2000-01-01T00:00:00Z"}
        post_alerts(port, [ended])
        wait_for(lambda: _tickets(collector, token)[0]["state"] == "recovered", 20, "recovered")
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_ticket_list_pages_past_500_and_limit_says_what_it_left_out(
    running: Callable[..., Collector],
) -> None:
    collector = running()
    engineer = collector.add_user("erin", "engineer")
    store = open_store(collector.data_dir)
    try:
        for number in range(600):
            new = NewTicket("acme", f"question {number}", "3", "engineer")
            store.create_ticket(new, lifecycle.create_event(new, "user:erin", 1_000 + number))
    finally:
        store.close()
    listed = _tickets(collector, engineer)
    assert len(listed) == 600, "every page fetched"
    assert len({t["id"] for t in listed}) == 600, "no ticket twice"
    table = collector.client(engineer, "tickets")
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 601, "header + 600 rows"

    limited = collector.client(engineer, "tickets", "--limit", "550", "--json")
    assert limited.returncode == 0 and len(json.loads(limited.stdout)) == 550
    assert "more were left out" in limited.stderr
    whole = collector.client(engineer, "tickets", "--limit", "600", "--json")
    assert len(json.loads(whole.stdout)) == 600 and "left out" not in whole.stderr
