"""The portal over real HTTPS against a real collector: sign-in, lockout, CSRF,
tenancy, and the customer's decisions going through the services (and the audit log)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from collector.portal import totp
from collector.portal.signin import LOCK_AFTER
from collector.store.base import RecordingRecord
from collector.tickets.service import ManualTicket
from common.clock import wall_ms
from tests.collector.portal_support import (
    ENGINEER,
    PASSWORD,
    Browser,
    PortalCollector,
    inspection_awaiting_report,
    planned_inspection,
    published_inspection,
    run_waiting_for_approval,
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


def browser(collector: PortalCollector, language: str = "en") -> Browser:
    return Browser(collector.url, collector.ca_file, language)


def signed_in(collector: PortalCollector, name: str = "carol") -> Browser:
    b = browser(collector)
    answer = b.sign_in(name)
    assert answer.status == 303, answer.text
    return b


def test_sign_in_sets_a_secure_httponly_strict_cookie(collector: PortalCollector) -> None:
    b = browser(collector)
    answer = b.sign_in("carol")
    assert answer.status == 303 and answer.headers["Location"] == "/"
    cookie_line = next(
        v for k, v in answer.headers.items() if k == "Set-Cookie" and "__Host-aftercare=" in v
    )
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie_line
    page = b.get("/")
    assert page.status == 200 and "Overview" in page.text
    assert collector.audit("portal.signed_in")[-1].actor == "user:carol"


def test_wrong_password_is_refused_and_counted(collector: PortalCollector) -> None:
    b = browser(collector)
    answer = b.sign_in("carol", "not the password")
    assert answer.status == 401
    assert "Wrong user name, password or code." in answer.text
    assert b.cookie("__Host-aftercare") is None
    assert b.get("/").status == 303  # still sent to the sign-in page
    unknown = b.sign_in("nobody", "whatever-it-is")
    assert unknown.status == 401 and "Wrong user name, password or code." in unknown.text
    failed = collector.audit("auth.failed")
    assert failed and failed[0].target == "portal"


def test_repeated_failures_lock_the_account_even_for_the_right_password(
    collector: PortalCollector,
) -> None:
    b = browser(collector)
    for _ in range(LOCK_AFTER):
        assert b.sign_in("carol", "guess-guess-guess").status == 401
    locked = b.sign_in("carol", PASSWORD)
    assert locked.status == 429
    assert "Too many failed sign-ins" in locked.text
    assert b.cookie("__Host-aftercare") is None
    assert collector.audit("portal.locked")[0].target == "carol"
    # another account is not locked by carol's failures
    assert browser(collector).sign_in("mallory").status == 303


def test_sign_in_form_without_its_csrf_token_is_refused(collector: PortalCollector) -> None:
    b = browser(collector)
    b.get("/login")
    answer = b.post("/login", {"name": "carol", "password": PASSWORD})
    assert answer.status == 403
    assert b.cookie("__Host-aftercare") is None


def test_approve_a_pending_session_with_a_shorter_window(collector: PortalCollector) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    session = collector.request_session(agent)
    b = signed_in(collector)
    overview = b.get("/")
    assert session.session_id in overview.text and "db1" in overview.text
    page = b.get(f"/sessions/{session.session_id}")
    assert page.status == 200 and "disk check" in page.text
    token = b.csrf(f"/sessions/{session.session_id}")
    answer = b.post(f"/sessions/{session.session_id}/approve", {"csrf": token, "minutes": "30"})
    assert answer.status == 303
    approved = collector.session(session.session_id)
    assert approved.state == "approved" and approved.approved_by == "carol"
    assert approved.window_end_ms is not None and approved.approved_ms is not None
    assert approved.window_end_ms - approved.approved_ms <= 30 * 60_000 + 1000
    entry = collector.audit("session.approved")[-1]
    assert entry.actor == "user:carol" and entry.target == session.session_id


def test_deny_with_a_reason_and_terminate(collector: PortalCollector) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    first = collector.request_session(agent)
    second = collector.request_session(agent, "kernel update")
    b = signed_in(collector)
    token = b.csrf("/")
    deny = b.post(f"/sessions/{first.session_id}/deny", {"csrf": token, "reason": "not today"})
    assert deny.status == 303
    denied = collector.session(first.session_id)
    assert denied.state == "denied" and denied.deny_reason == "not today"
    b.post(f"/sessions/{second.session_id}/approve", {"csrf": token})
    assert b.post(f"/sessions/{second.session_id}/terminate", {"csrf": token}).status == 303
    assert collector.session(second.session_id).state == "terminated"


def test_a_decision_without_the_csrf_token_changes_nothing(collector: PortalCollector) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    session = collector.request_session(agent)
    b = signed_in(collector)
    for fields in ({}, {"csrf": "forged-token"}):
        answer = b.post(f"/sessions/{session.session_id}/approve", fields)
        assert answer.status == 403
        assert "did not come from this portal" in answer.text
    assert collector.session(session.session_id).state == "pending"


def test_a_post_without_signing_in_is_refused(collector: PortalCollector) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    session = collector.request_session(agent)
    answer = browser(collector).post(f"/sessions/{session.session_id}/approve", {"csrf": "x"})
    assert answer.status == 401
    assert collector.session(session.session_id).state == "pending"


def test_another_customers_objects_by_id_are_not_found(collector: PortalCollector) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    session = collector.request_session(agent)
    ticket_id = collector.resolved_ticket("acme", "disk full on db1")
    attacker = signed_in(collector, "mallory")
    overview = attacker.get("/")
    assert "db1" not in overview.text and session.session_id not in overview.text
    assert attacker.get(f"/sessions/{session.session_id}").status == 404
    assert attacker.get(f"/tickets/{ticket_id}").status == 404
    token = attacker.csrf("/")
    approve = attacker.post(f"/sessions/{session.session_id}/approve", {"csrf": token})
    assert approve.status == 404
    confirm = attacker.post(f"/tickets/{ticket_id}/confirm", {"csrf": token})
    assert confirm.status == 404
    assert collector.session(session.session_id).state == "pending"
    assert collector.db("get_ticket", ticket_id).state == "resolved"
    refused = collector.audit("session.refused")
    assert refused and refused[-1].actor == "user:mallory"


def test_confirm_a_resolved_ticket(collector: PortalCollector) -> None:
    ticket_id = collector.resolved_ticket("acme", "disk full on db1")
    b = signed_in(collector)
    assert f"/tickets/{ticket_id}" in b.get("/").text  # waiting for carol
    page = b.get(f"/tickets/{ticket_id}")
    assert "rotated logs" in page.text
    report = b.get(f"/tickets/{ticket_id}/report")
    assert report.status == 200 and "rotated logs" in report.text
    assert signed_in(collector, "mallory").get(f"/tickets/{ticket_id}/report").status == 404
    answer = b.post(f"/tickets/{ticket_id}/confirm", {"csrf": b.csrf(f"/tickets/{ticket_id}")})
    assert answer.status == 303
    ticket = collector.db("get_ticket", ticket_id)
    assert ticket.state == "closed" and ticket.close_reason == "confirmed"
    confirmed = [e for e in collector.db("ticket_events", ticket_id) if e.kind == "confirmed"]
    assert confirmed and confirmed[0].actor == "user:carol"


def test_ticket_report_in_the_page_language(collector: PortalCollector) -> None:
    ticket_id = collector.resolved_ticket("acme", "disk full on db1")
    b = Browser(collector.url, collector.ca_file, "zh-CN,zh;q=0.9,en;q=0.5")
    b.sign_in("carol")
    chinese = b.get(f"/tickets/{ticket_id}/report")
    assert chinese.status == 200 and "处理过程" in chinese.text and "rotated logs" in chinese.text
    assert "Timeline" not in chinese.text and "Sign-off" not in chinese.text
    b.post("/language", {"csrf": b.csrf("/"), "language": "en", "back": "/"})
    english = b.get(f"/tickets/{ticket_id}/report")
    assert "Timeline / 处理过程" in english.text  # the setting beats Accept-Language
    attacker = Browser(collector.url, collector.ca_file, "zh-CN")
    attacker.sign_in("mallory")
    assert attacker.get(f"/tickets/{ticket_id}/report").status == 404


def test_reject_the_fix_reopens_the_ticket(collector: PortalCollector) -> None:
    ticket_id = collector.resolved_ticket("acme", "disk full on db1")
    b = signed_in(collector)
    token = b.csrf(f"/tickets/{ticket_id}")
    b.post(f"/tickets/{ticket_id}/reject", {"csrf": token, "text": "still full"})
    assert collector.db("get_ticket", ticket_id).state == "reopened"


def test_a_host_pinning_an_approval_root_asks_for_a_signed_approval(
    collector: PortalCollector,
) -> None:
    agent = collector.add_host("ag-acme2", "acme", "db2", root="sha256:" + "ab" * 32)
    session = collector.request_session(agent)
    b = signed_in(collector)
    page = b.get(f"/sessions/{session.session_id}")
    assert 'id="browser-sign"' in page.text and 'name="signature"' in page.text
    assert '<script src="/static/browser-sign.js"></script>' in page.text
    answer = b.post(f"/sessions/{session.session_id}/approve", {"csrf": b.csrf("/")})
    assert answer.status == 409  # the service refuses an unsigned approval
    assert collector.session(session.session_id).state == "pending"


def test_a_browser_key_without_a_certificate_gets_no_bytes_to_sign(
    collector: PortalCollector,
) -> None:
    agent = collector.add_host("ag-acme3", "acme", "db3", root="sha256:" + "ab" * 32)
    session = collector.request_session(agent)
    b = signed_in(collector)
    answer = b.get(f"/sessions/{session.session_id}/to-sign?key=sha256:" + "cd" * 32)
    assert answer.status == 403 and "no current certificate" in answer.text
    forged = {
        "csrf": b.csrf("/"),
        "key": "sha256:" + "cd" * 32,
        "body": "e30=",
        "signature": "AA==",
    }
    answer = b.post(f"/sessions/{session.session_id}/approve", forged)
    assert answer.status == 403
    assert collector.session(session.session_id).state == "pending"


def test_pages_carry_safe_headers(collector: PortalCollector) -> None:
    b = signed_in(collector)
    answer = b.get("/")
    csp = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    # our own script files only; WebAssembly for the player's emulator; no eval, no inline
    assert "script-src 'self' 'wasm-unsafe-eval';" in csp and "unsafe-inline" not in csp
    assert "'unsafe-eval'" not in csp and "style-src 'self';" in csp
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_sign_out_ends_the_session(collector: PortalCollector) -> None:
    b = signed_in(collector)
    cookie = b.cookie("__Host-aftercare")
    assert cookie is not None
    assert b.post("/logout", {"csrf": b.csrf("/")}).status == 303
    again = Browser(collector.url, collector.ca_file)
    again.cookies.set_cookie(cookie)  # the old cookie replayed
    assert again.get("/").status == 303
    assert collector.audit("portal.signed_out")


def test_language_from_the_browser_then_the_users_setting(collector: PortalCollector) -> None:
    b = Browser(collector.url, collector.ca_file, "zh-CN,zh;q=0.9,en;q=0.5")
    assert "登录" in b.get("/login").text
    b.sign_in("carol")
    assert "待您处理" in b.get("/").text
    b.post("/language", {"csrf": b.csrf("/"), "language": "en", "back": "/"})
    assert "Waiting for you" in b.get("/").text  # the setting beats Accept-Language


def test_consent_to_a_planned_inspection(collector: PortalCollector) -> None:
    inspection_id = planned_inspection(collector, "acme")
    b = signed_in(collector)
    assert f"/inspections/{inspection_id}" in b.get("/").text  # waiting for consent
    assert browser_sees_button(b, f"/inspections/{inspection_id}", "consent")
    token = b.csrf(f"/inspections/{inspection_id}")
    answer = b.post(f"/inspections/{inspection_id}/consent", {"csrf": token})
    assert answer.status == 303
    consented = collector.db("get_inspection", inspection_id)
    assert consented.state == "consented" and consented.consented_by == "user:carol"
    again = b.post(f"/inspections/{inspection_id}/consent", {"csrf": token})
    assert again.status == 409  # not possible twice: the lifecycle refuses


def test_read_and_sign_a_published_report(collector: PortalCollector) -> None:
    inspection_id = published_inspection(collector, "acme")
    b = signed_in(collector)
    page = b.get(f"/inspections/{inspection_id}")
    sha256 = collector.db("get_inspection", inspection_id).report_sha256
    assert sha256 in page.text
    report = b.get(f"/inspections/{inspection_id}/report")
    assert report.status == 200 and report.headers["X-Report-SHA256"] == sha256
    assert "All hosts healthy." in report.text
    assert "default-src 'none'" in report.headers["Content-Security-Policy"]
    token = b.csrf(f"/inspections/{inspection_id}")
    fields = {"csrf": token, "name": "Carol Chen", "title": "IT lead", "sha256": sha256}
    wrong = b.post(f"/inspections/{inspection_id}/sign", {**fields, "sha256": "0" * 64})
    assert wrong.status in (400, 409)  # a signature must bind the report that was shown
    assert collector.db("get_inspection", inspection_id).state == "awaiting_signoff"
    assert b.post(f"/inspections/{inspection_id}/sign", fields).status == 303
    signed = collector.db("get_inspection", inspection_id)
    assert signed.state == "signed" and signed.signoff["name"] == "Carol Chen"
    assert collector.audit("inspection.signed")[-1].actor == "user:carol"


def test_another_customers_inspection_is_not_found(collector: PortalCollector) -> None:
    inspection_id = published_inspection(collector, "acme")
    attacker = signed_in(collector, "mallory")
    assert attacker.get(f"/inspections/{inspection_id}").status == 404
    assert attacker.get(f"/inspections/{inspection_id}/report").status == 404
    token = attacker.csrf("/")
    sha256 = collector.db("get_inspection", inspection_id).report_sha256
    fields = {"csrf": token, "name": "M", "sha256": sha256}
    assert attacker.post(f"/inspections/{inspection_id}/sign", fields).status == 404
    assert collector.db("get_inspection", inspection_id).state == "awaiting_signoff"


def browser_sees_button(b: Browser, path: str, button_id: str) -> bool:
    return f'id="{button_id}"' in b.get(path).text


def test_a_second_factor_is_required_once_set_and_a_code_works_once(
    collector: PortalCollector,
) -> None:
    secret = totp.new_secret()
    collector.db("set_portal_totp", "carol", secret)
    b = browser(collector)
    assert b.sign_in("carol").status == 401  # the password alone is not enough
    token = b.csrf("/login")
    wrong = {"csrf": token, "name": "carol", "password": PASSWORD, "code": "000000"}
    if pyotp.TOTP(secret).now() != "000000":
        assert b.post("/login", wrong).status == 401
    code = pyotp.TOTP(secret).now()
    fields = {"csrf": token, "name": "carol", "password": PASSWORD, "code": code}
    assert b.post("/login", fields).status == 303
    replay = browser(collector)
    fields["csrf"] = replay.csrf("/login")
    assert replay.post("/login", fields).status == 401  # the same code again


def test_engineers_queue_is_filtered_and_closed_to_customers(collector: PortalCollector) -> None:
    first = collector.resolved_ticket("acme", "resolved: waits for the customer")
    tickets = collector.server.tickets
    assert tickets is not None

    urgent = collector.call(tickets.create(ENGINEER, ManualTicket("db down", "", "1", "acme")))
    minor = collector.call(tickets.create(ENGINEER, ManualTicket("slow", "", "4", "globex")))
    engineer = signed_in(collector, "erin")
    page = engineer.get("/queue")
    assert page.status == 200
    assert page.text.index(f'"/tickets/{urgent}"') < page.text.index(f'"/tickets/{minor}"')
    assert f'"/tickets/{first}"' not in page.text  # resolved: the customer's turn
    filtered = engineer.get("/queue?level=4&customer=globex")
    assert f'"/tickets/{minor}"' in filtered.text and f'"/tickets/{urgent}"' not in filtered.text
    assert engineer.get("/queue?level=nonsense").status == 400
    assert signed_in(collector, "carol").get("/queue").status == 403


def test_a_run_waiting_for_approval_shows_what_it_does_and_goes_to_the_service(
    collector: PortalCollector,
) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    run_id = run_waiting_for_approval(collector, agent)
    b = signed_in(collector)
    assert f"/runs/{run_id}" in b.get("/").text
    page = b.get(f"/runs/{run_id}")
    assert "restart_service" in page.text and "unit=nginx.service" in page.text
    assert "mutating" in page.text and 'id="approve"' in page.text
    answer = b.post(f"/runs/{run_id}/approve", {"csrf": b.csrf("/")})
    assert answer.status == 409 and "not connected" in answer.text  # the service's answer
    attacker = signed_in(collector, "mallory")
    assert attacker.get(f"/runs/{run_id}").status == 404
    assert attacker.post(f"/runs/{run_id}/approve", {"csrf": attacker.csrf("/")}).status == 404
    assert collector.db("get_run", run_id).state == "waiting_approval"


def test_the_terminal_page_shows_the_recording_as_text_and_reloads_while_live(
    collector: PortalCollector,
) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    session = collector.request_session(agent)
    b = signed_in(collector)
    b.post(f"/sessions/{session.session_id}/approve", {"csrf": b.csrf("/")})
    data_dir = collector.server.data_dir.root
    relative = f"recordings/{session.session_id}/part1.cast"
    (data_dir / relative).parent.mkdir(parents=True)
    events = [
        [0.1, "o", "\x1b[1;32mroot@db1\x1b[0m:~# "],
        [0.5, "o", "df -h\r\n/dev/vda1  <script>alert(1)</script>  91%\r\n"],
    ]
    header = {"version": 2, "width": 80, "height": 24}
    lines = [json.dumps(header), *(json.dumps(e) for e in events)]
    (data_dir / relative).write_text("\n".join(lines) + "\n")
    record = RecordingRecord(session.session_id, 1, "shell", "", relative, wall_ms())
    collector.db("add_recording", record)
    page = b.get(f"/sessions/{session.session_id}/terminal")
    assert page.status == 200
    assert "root@db1:~# df -h\n/dev/vda1  &lt;script&gt;" in page.text  # escaped, no colours
    assert "\x1b" not in page.text
    assert 'http-equiv="refresh"' in page.text  # live: reloads itself
    assert (
        signed_in(collector, "mallory").get(f"/sessions/{session.session_id}/terminal").status
        == 404
    )
    b.post(f"/sessions/{session.session_id}/terminate", {"csrf": b.csrf("/")})
    ended = b.get(f"/sessions/{session.session_id}/terminal")
    assert "/dev/vda1" in ended.text and 'http-equiv="refresh"' not in ended.text


def test_an_engineer_acknowledges_comments_regrades_and_resolves_a_ticket(
    collector: PortalCollector,
) -> None:
    tickets = collector.server.tickets
    assert tickets is not None
    ticket_id = collector.call(tickets.create(ENGINEER, ManualTicket("db down", "", "2", "acme")))
    erin = signed_in(collector, "erin")
    page = erin.get(f"/tickets/{ticket_id}")
    assert 'id="acknowledge"' in page.text and 'for="cause"' in page.text
    token = erin.csrf(f"/tickets/{ticket_id}")
    base = f"/tickets/{ticket_id}"
    assert erin.post(f"{base}/acknowledge", {"csrf": token}).status == 303
    assert erin.post(f"{base}/comment", {"csrf": token, "text": "checking the disk"}).status == 303
    regraded = erin.post(f"{base}/regrade", {"csrf": token, "level": "1", "reason": "outage"})
    assert regraded.status == 303
    resolved = erin.post(
        f"{base}/resolve",
        {"csrf": token, "cause": "full /var", "actions": "rotated logs", "prevention": "alert"},
    )
    assert resolved.status == 303, resolved.text
    ticket = collector.db("get_ticket", ticket_id)
    assert ticket.state == "resolved" and ticket.level == "1"
    kinds = [(e.kind, e.actor) for e in collector.db("ticket_events", ticket_id)]
    for kind in ("acknowledged", "comment", "regraded", "resolved"):
        assert (kind, "user:erin") in kinds, kinds
    assert "checking the disk" in erin.get(base).text  # on the timeline


def test_a_resolve_without_its_cause_is_a_clear_error_and_changes_nothing(
    collector: PortalCollector,
) -> None:
    tickets = collector.server.tickets
    assert tickets is not None
    ticket_id = collector.call(tickets.create(ENGINEER, ManualTicket("db down", "", "2", "acme")))
    erin = signed_in(collector, "erin")
    token = erin.csrf(f"/tickets/{ticket_id}")
    answer = erin.post(f"/tickets/{ticket_id}/resolve", {"csrf": token, "cause": ""})
    assert answer.status == 400
    same_level = erin.post(
        f"/tickets/{ticket_id}/regrade", {"csrf": token, "level": "2", "reason": "x"}
    )
    assert same_level.status in (400, 409)
    ticket = collector.db("get_ticket", ticket_id)
    assert ticket.state == "open" and ticket.level == "2"


def test_engineer_actions_are_refused_without_csrf_and_to_customers(
    collector: PortalCollector,
) -> None:
    tickets = collector.server.tickets
    assert tickets is not None
    ticket_id = collector.call(tickets.create(ENGINEER, ManualTicket("db down", "", "2", "acme")))
    base = f"/tickets/{ticket_id}"
    erin = signed_in(collector, "erin")
    for fields in ({}, {"csrf": "forged-token"}):
        assert erin.post(f"{base}/acknowledge", fields).status == 403
        assert erin.post(f"{base}/regrade", {**fields, "level": "1", "reason": "x"}).status == 403
    carol = signed_in(collector, "carol")  # acme's own customer user
    assert 'id="acknowledge"' not in carol.get(base).text
    token = carol.csrf(base)
    assert carol.post(f"{base}/acknowledge", {"csrf": token}).status == 403
    assert carol.post(f"{base}/regrade", {"csrf": token, "level": "1", "reason": "x"}).status == 403
    mallory = signed_in(collector, "mallory")  # another customer's user
    token = mallory.csrf("/")
    assert mallory.post(f"{base}/comment", {"csrf": token, "text": "hi"}).status == 404
    ticket = collector.db("get_ticket", ticket_id)
    assert ticket.state == "open" and ticket.level == "2"
    kinds = [e.kind for e in collector.db("ticket_events", ticket_id)]
    assert "comment" not in kinds and "acknowledged" not in kinds


def test_an_engineer_reviews_and_publishes_an_inspection_report(
    collector: PortalCollector,
) -> None:
    inspection_id = inspection_awaiting_report(collector, "acme")
    other = inspection_awaiting_report(collector, "globex")
    erin = signed_in(collector, "erin")
    queue = erin.get("/queue?customer=acme")
    assert f'"/inspections/{inspection_id}"' in queue.text
    assert f'"/inspections/{other}"' not in queue.text
    page = erin.get(f"/inspections/{inspection_id}")
    assert "/var fills" in page.text and 'id="publish"' in page.text
    token = erin.csrf(f"/inspections/{inspection_id}")
    for fields in ({"summary": "x"}, {"csrf": "forged", "summary": "x"}):
        assert erin.post(f"/inspections/{inspection_id}/publish", fields).status == 403
    assert collector.db("get_inspection", inspection_id).state == "awaiting_report"
    answer = erin.post(
        f"/inspections/{inspection_id}/publish", {"csrf": token, "summary": "巡检正常"}
    )
    assert answer.status == 303, answer.text
    published = collector.db("get_inspection", inspection_id)
    assert published.state == "awaiting_signoff" and published.summary == "巡检正常"
    assert collector.audit("inspection.published")[-1].actor == "user:erin"
    again = erin.post(f"/inspections/{inspection_id}/publish", {"csrf": token, "summary": "y"})
    assert again.status in (400, 409)


def test_customers_cannot_publish_inspection_reports(collector: PortalCollector) -> None:
    inspection_id = inspection_awaiting_report(collector, "acme")
    carol = signed_in(collector, "carol")
    page = carol.get(f"/inspections/{inspection_id}")
    assert 'id="publish"' not in page.text
    token = carol.csrf("/")
    own = carol.post(f"/inspections/{inspection_id}/publish", {"csrf": token, "summary": "x"})
    assert own.status == 403
    mallory = signed_in(collector, "mallory")
    token = mallory.csrf("/")
    foreign = mallory.post(f"/inspections/{inspection_id}/publish", {"csrf": token, "summary": "x"})
    # refused by role before the lookup (as through the API): nothing about acme shows
    assert foreign.status == 403 and "acme" not in foreign.text
    assert collector.db("get_inspection", inspection_id).state == "awaiting_report"


def test_error_details_are_shown_in_the_page_language(collector: PortalCollector) -> None:
    tickets = collector.server.tickets
    assert tickets is not None
    ticket_id = collector.call(tickets.create(ENGINEER, ManualTicket("db down", "", "2", "acme")))
    base = f"/tickets/{ticket_id}"
    chinese = browser(collector, "zh-CN")
    assert chinese.sign_in("erin").status == 303
    token = chinese.csrf(base)
    empty = chinese.post(f"{base}/resolve", {"csrf": token, "cause": "", "actions": "x"})
    assert empty.status == 400 and "必填项为空" in empty.text
    same = chinese.post(f"{base}/regrade", {"csrf": token, "level": "2", "reason": "x"})
    assert f"工单 {ticket_id} 已是 2 级" in same.text
    erin = signed_in(collector, "erin")
    token = erin.csrf(base)
    resolve = {"csrf": token, "cause": "c", "actions": "a", "prevention": "p"}
    assert erin.post(f"{base}/resolve", resolve).status == 303
    closed = erin.post(f"{base}/acknowledge", {"csrf": token})
    assert closed.status == 409
    assert f"Ticket {ticket_id} is resolved: “acknowledge” does not apply now" in closed.text
    carol = browser(collector, "zh-CN")
    assert carol.sign_in("carol").status == 303
    refused = carol.post(f"{base}/acknowledge", {"csrf": carol.csrf(base)})
    assert refused.status == 403 and "不能对工单执行“acknowledge”" in refused.text


def test_the_fleet_shows_every_customers_hosts_to_engineers_with_filters(
    collector: PortalCollector,
) -> None:
    collector.add_host("ag-acme1", "acme", "acme-db1")
    collector.add_host("ag-gx1", "globex", "globex-web1")
    erin = signed_in(collector, "erin")
    every = erin.get("/fleet")
    assert every.status == 200 and "acme-db1" in every.text and "globex-web1" in every.text
    acme = erin.get("/fleet?customer=acme")
    assert "acme-db1" in acme.text and "globex-web1" not in acme.text
    online = erin.get("/fleet?connection=connected")
    assert "acme-db1" not in online.text  # no agent is connected in this test
    assert "acme-db1" in erin.get("/fleet?connection=disconnected").text
    assert erin.get("/fleet?connection=sideways").status == 400
    carol = signed_in(collector, "carol")
    refused = carol.get("/fleet?customer=globex")
    assert refused.status == 403 and "globex-web1" not in refused.text
    assert 'id="fleet-link"' not in carol.get("/").text


def test_an_engineer_requests_a_session_for_a_host_the_customer_then_sees_it(
    collector: PortalCollector,
) -> None:
    agent = collector.add_host("ag-acme1", "acme", "db1")
    tickets = collector.server.tickets
    assert tickets is not None
    ticket_id = collector.call(tickets.create(ENGINEER, ManualTicket("db down", "", "2", "acme")))
    erin = signed_in(collector, "erin")
    assert '"/hosts/ag-acme1/session"' in erin.get("/fleet").text
    form = erin.get("/hosts/ag-acme1/session")
    assert form.status == 200 and 'for="reason"' in form.text
    token = erin.csrf("/hosts/ag-acme1/session")
    fields = {"csrf": token, "reason": "check RAID", "minutes": "30", "ticket": str(ticket_id)}
    answer = erin.post("/hosts/ag-acme1/session", fields)
    assert answer.status == 303, answer.text
    session_id = answer.headers["Location"].rsplit("/", 1)[-1]
    session = collector.session(session_id)
    assert session.state == "pending" and session.agent_id == agent.agent_id
    assert session.ticket_id == ticket_id and session.engineer == "erin"
    assert session.requested_duration_ms == 30 * 60_000
    assert "check RAID" in signed_in(collector, "carol").get("/").text  # waits for carol


def test_session_requests_refuse_bad_input_customers_and_forged_forms(
    collector: PortalCollector,
) -> None:
    collector.add_host("ag-acme1", "acme", "db1")
    erin = signed_in(collector, "erin")
    token = erin.csrf("/fleet")
    path = "/hosts/ag-acme1/session"
    tickets = collector.server.tickets
    assert tickets is not None
    foreign = collector.call(tickets.create(ENGINEER, ManualTicket("x", "", "4", "globex")))
    for bad in (
        {"reason": "", "minutes": "30"},
        {"reason": "x", "minutes": "0"},
        {"reason": "x", "minutes": "30", "ticket": "abc"},
        {"reason": "x", "minutes": "30", "ticket": str(foreign)},  # another customer's
    ):
        assert erin.post(path, {"csrf": token, **bad}).status == 400, bad
    forged = erin.post(path, {"csrf": "forged", "reason": "x", "minutes": "30"})
    assert forged.status == 403
    assert erin.get("/hosts/ag-nope/session").status == 404
    carol = signed_in(collector, "carol")
    assert carol.get(path).status == 403
    own = carol.post(path, {"csrf": carol.csrf("/"), "reason": "x", "minutes": "30"})
    assert own.status == 403
    mallory = signed_in(collector, "mallory")
    other = mallory.post(path, {"csrf": mallory.csrf("/"), "reason": "x", "minutes": "30"})
    assert other.status == 404
    assert collector.db("list_sessions") == []
