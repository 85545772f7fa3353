"""Approval notices from a real collector to a real webhook receiver and SMTP sink.

Two customers with their own contacts; acme reads English, globex Chinese; a customer
without a setting gets both. Each pending session and each run waiting for approval
reaches exactly its own customer's contacts once, with the portal link to its own
page and the outbox's delivery id, also across a restart of the collector; a failing
receiver is retried by the outbox with backoff; a notice for something decided
before it left is cancelled, not sent.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.auth import Principal
from collector.inspections.notify import make_deliverer
from collector.notices.service import FAILED_ACTION, NOTICE_KIND, SENT_ACTION, ApprovalNotices
from collector.outbox import DELIVERY_HEADER, Outbox
from collector.sessions.model import RemoteSession
from collector.tickets.escalation import Recipient
from common.clock import wall_ms
from tests.collector.portal_support import PortalCollector
from tests.collector.test_notify import Receiver, SmtpSink, receiver, smtp
from tests.collector.test_store_runs import new_run

__all__ = ["receiver", "smtp"]  # fixtures used here

PUBLIC = "https://support.vendor.example"


def tickets_config(tmp_path: Path, hooks: Receiver, mail: SmtpSink) -> Path:
    path = tmp_path / "tickets.yaml"
    path.write_text(
        f"""
escalation:
  smtp: {{host: 127.0.0.1, port: {mail.port}, from: aftercare@vendor.example, starttls: false}}
customer_notices:
  customers:
    acme: [{{webhook: "{hooks.url("/acme")}"}}, {{email: ops@acme.example}}]
    globex: [{{webhook: "{hooks.url("/globex")}"}}]
"""
    )
    return path


def start(tmp_path: Path, config: Path) -> PortalCollector:
    return PortalCollector(
        tmp_path / "data",
        tickets_config=config,
        evaluation_interval=dt.timedelta(seconds=0.2),
        public_url=PUBLIC,
    )


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def bodies(hooks: Receiver, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in hooks.requests if r.path == path]


def waiting_run(collector: PortalCollector, agent_id: str, customer: str, run_id: str) -> None:
    run = new_run(
        run_id,
        customer=customer,
        agent_id=agent_id,
        requested_ms=wall_ms(),
        state="waiting_approval",
    )
    collector.db("create_run", run)


def test_each_customer_is_told_once_in_its_language_with_its_own_links(
    tmp_path: Path, receiver: Receiver, smtp: SmtpSink
) -> None:
    config = tickets_config(tmp_path, receiver, smtp)
    collector = start(tmp_path, config)
    try:
        acme_host = collector.add_host("ag-acme", "acme", "acme-db1")
        globex_host = collector.add_host("ag-globex", "globex", "globex-db1")
        collector.db("set_customer_language", "acme", "en", "admin", wall_ms())
        collector.db("set_customer_language", "globex", "zh-CN", "admin", wall_ms())
        acme_session = collector.request_session(acme_host)
        globex_session = collector.request_session(globex_host, "globex check")
        waiting_run(collector, "ag-acme", "acme", "run-00000000acme")
        wait_for(lambda: len(bodies(receiver, "/acme")) >= 2, "acme's two webhooks")
        wait_for(lambda: len(bodies(receiver, "/globex")) >= 1, "globex's webhook")
        wait_for(lambda: len(smtp.sink.messages) >= 2, "acme's two e-mails")
        time.sleep(1)  # five more cycles: nothing is sent again
        acme = bodies(receiver, "/acme")
        globex = bodies(receiver, "/globex")
        assert sorted(b["event"] for b in acme) == [
            "customer_run_awaiting_approval",
            "customer_session_awaiting_approval",
        ]
        links = {b["event"]: b["link"] for b in acme}
        assert links["customer_session_awaiting_approval"] == (
            f"{PUBLIC}/sessions/{acme_session.session_id}"
        )
        assert links["customer_run_awaiting_approval"] == f"{PUBLIC}/runs/run-00000000acme"
        assert all(b["language"] == "en" and b["customer"] == "acme" for b in acme)
        [told] = globex
        assert told["link"] == f"{PUBLIC}/sessions/{globex_session.session_id}"
        assert told["language"] == "zh-CN" and "远程会话待您审批" in told["subject"]
        assert "Remote session" not in told["subject"] + told["text"]
        mails = [message for _, _, message in smtp.sink.messages]
        assert len(mails) == 2 and all(m["To"] == "ops@acme.example" for m in mails)
        texts = [str(m.get_content()) for m in mails]
        assert any(f"{PUBLIC}/sessions/{acme_session.session_id}" in t for t in texts)
        assert all("Approve or deny it here" in t for t in texts)
        sent = collector.audit(SENT_ACTION)
        assert len(sent) == 5 and len({e.target for e in sent}) == 5
        # each went through the outbox: its delivery id in the header, the audit, the row
        stored = collector.db("list_outbox", ["sent"], 100)
        ids = {e.notice.dedup: e.delivery_id for e in stored if e.notice.kind == NOTICE_KIND}
        assert {e.target: e.details["delivery_id"] for e in sent} == ids
        headers = [r.headers.get(DELIVERY_HEADER) for r in receiver.requests]
        assert sorted(headers) == sorted(ids[b["key"]] for b in acme + globex)
        assert all(m["Message-ID"].startswith(f"<{ids[k]}@") for m, k in mail_keys(sent, mails))
        # the attack side: nothing of one customer reaches the other's contacts
        assert_only_own(acme, texts, globex_session, "globex")
        assert_only_own(globex, [], acme_session, "acme")
        assert "run-00000000acme" not in json.dumps(globex)
    finally:
        collector.stop()


def mail_keys(sent: list[Any], mails: list[Any]) -> list[tuple[Any, str]]:
    """Each e-mail with the key of its notice (by the subject's session or run)."""
    keys = [e.target for e in sent if e.details["channel"] == "email"]
    return [
        (m, next(k for k in keys if k.split("/")[0].split(":")[2] in str(m.get_content())))
        for m in mails
    ]


def assert_only_own(
    payloads: list[dict[str, Any]], texts: list[str], other: RemoteSession, name: str
) -> None:
    seen = json.dumps(payloads, ensure_ascii=False) + "".join(texts)
    assert other.session_id not in seen and other.hostname not in seen
    assert f'"customer": "{name}"' not in seen


def test_a_restart_sends_nothing_twice_and_new_requests_once(
    tmp_path: Path, receiver: Receiver, smtp: SmtpSink
) -> None:
    config = tickets_config(tmp_path, receiver, smtp)
    collector = start(tmp_path, config)
    try:
        host = collector.add_host("ag-acme", "acme", "acme-db1")
        first = collector.request_session(host)
        wait_for(lambda: len(bodies(receiver, "/acme")) == 1, "the first webhook")
        wait_for(lambda: len(smtp.sink.messages) == 1, "the first e-mail")
        # stopped after both were recorded (dying in between would send them again)
        wait_for(lambda: len(collector.audit(SENT_ACTION)) == 2, "the two records")
    finally:
        collector.stop()
    collector = start(tmp_path, config)  # same data directory: a restart
    try:
        time.sleep(1.5)  # several cycles of the new process
        assert len(bodies(receiver, "/acme")) == 1 and len(smtp.sink.messages) == 1
        second = collector.request_session(host, "second look")
        wait_for(lambda: len(bodies(receiver, "/acme")) == 2, "the second webhook")
        wait_for(lambda: len(smtp.sink.messages) == 2, "the second e-mail")
        time.sleep(1)
        told = [b["session"]["id"] for b in bodies(receiver, "/acme")]
        assert told == [first.session_id, second.session_id]
        assert len(smtp.sink.messages) == 2
    finally:
        collector.stop()


def test_a_failed_delivery_is_audited_once_retried_with_backoff_and_shown_failing(
    tmp_path: Path, receiver: Receiver, smtp: SmtpSink
) -> None:
    config = tickets_config(tmp_path, receiver, smtp)
    receiver.status = 500
    collector = start(tmp_path, config)
    try:
        host = collector.add_host("ag-acme", "acme", "acme-db1")
        collector.request_session(host)
        wait_for(lambda: len(smtp.sink.messages) == 1, "the e-mail")
        wait_for(lambda: collector.audit(FAILED_ACTION), "the audited failure")
        time.sleep(1)  # retried only after a minute: one attempt, one failure entry
        assert len(bodies(receiver, "/acme")) == 1
        [failure] = collector.audit(FAILED_ACTION)
        assert failure.details["channel"] == "webhook" and "500" in failure.details["error"]
        assert [e.details["channel"] for e in collector.audit(SENT_ACTION)] == ["email"]
        [failing] = collector.db("list_outbox", ["pending"], 10, True)
        assert failing.notice.dedup == failure.target and failing.attempts == 1
        assert failing.next_attempt_ms - failure.at_ms == 60_000  # the first backoff
        command = [sys.executable, "-m", "collector.cli", "outbox", "--data-dir"]
        listed = subprocess.run(
            [*command, str(tmp_path / "data"), "--failing", "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        [shown] = json.loads(listed.stdout)["notices"]
        assert shown["kind"] == NOTICE_KIND and shown["dedup"] == failure.target
        assert "500" in shown["last_error"] and receiver.url("/acme") not in listed.stdout
        # the backoff over, the receiver back: the outbox delivers it, once
        receiver.status = 204
        # skip the minute's wait: due now (this counts as an attempt, sends nothing)
        collector.db("notice_failed", failing.id, "skip the wait", wall_ms(), ())
        wait_for(lambda: len(collector.audit(SENT_ACTION)) == 2, "the retried webhook")
        assert [r.headers[DELIVERY_HEADER] for r in receiver.requests] == (
            [failing.delivery_id] * 2
        )
        assert len(collector.audit(FAILED_ACTION)) == 1  # a retry's failure: not audited
    finally:
        collector.stop()


def test_a_decided_request_is_not_told(tmp_path: Path, receiver: Receiver) -> None:
    # no contacts, and no cycle for 5 min after the first: the test drives both itself
    collector = PortalCollector(tmp_path / "data", evaluation_interval=dt.timedelta(minutes=5))
    try:
        db, sessions, metrics = (
            collector.server._db,
            collector.server.sessions,
            collector.server._metrics,
        )
        assert db is not None and sessions is not None and metrics is not None
        contacts = {"acme": (Recipient("webhook", receiver.url("/acme")),)}
        outbox = Outbox(db, "test")
        notices = ApprovalNotices(db, contacts, outbox, make_deliverer(None), metrics)
        host = collector.add_host("ag-acme", "acme", "acme-db1")
        collector.add_user("carol", "customer", "acme")
        denied = collector.request_session(host)
        carol = Principal("carol", "customer", "acme")
        collector.call(sessions.deny(carol, denied.session_id, "not now"))
        pending = collector.request_session(host, "still pending")
        moot = collector.request_session(host, "decided before the notice left")
        collector.call(notices.tick(wall_ms()))  # stores the two pending ones' notices
        collector.call(sessions.deny(carol, moot.session_id, "changed my mind"))
        collector.call(outbox.send_due(wall_ms()))
        collector.call(notices.tick(wall_ms()))
        collector.call(outbox.send_due(wall_ms()))
        told = [b["session"]["id"] for b in bodies(receiver, "/acme")]
        assert told == [pending.session_id]
        [cancelled] = collector.db("list_outbox", ["cancelled"], 10)
        assert cancelled.notice.meta["id"] == moot.session_id
        assert "no longer waits for approval (denied)" in cancelled.last_error
        assert [e.details["id"] for e in collector.audit(SENT_ACTION)] == [pending.session_id]
        # a contact removed from the config before its notice left is not told
        later = collector.request_session(host, "after the contact was removed")
        collector.call(notices.tick(wall_ms()))
        other = Outbox(db, "restarted")
        ApprovalNotices(db, {"acme": ()}, other, make_deliverer(None), metrics)
        collector.call(other.send_due(wall_ms()))
        assert [b["session"]["id"] for b in bodies(receiver, "/acme")] == [pending.session_id]
        removed = [e for e in collector.db("list_outbox", ["cancelled"], 10) if e != cancelled]
        assert [e.notice.meta["id"] for e in removed] == [later.session_id]
        assert "no longer a contact" in removed[0].last_error
        # no portal address (port 0, no --public-url): the notice names the command
        assert bodies(receiver, "/acme")[0]["link"] == (
            f"aftercare session approve {pending.session_id}"
        )
    finally:
        collector.stop()
