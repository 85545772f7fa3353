"""Approval notices (pure): what is due, the link, the language and the catalogue."""

from __future__ import annotations

import json
import re
from dataclasses import replace

from collector import notice_texts as messages
from collector.notice_texts import language_of, translations
from collector.notices.approvals import run_link, run_notices, session_link, session_notices
from collector.po_catalogue import read_messages
from collector.sessions.model import RemoteSession
from collector.tickets.escalation import Recipient
from tests.collector.test_store_runs import new_run

T0 = 1_700_000_000_000
LINK = "https://support.vendor.example"
HOOK = Recipient("webhook", "https://hooks.acme.example/aftercare?token=s3cret")
MAIL = Recipient("email", "ops@acme.example")
SESSION = RemoteSession(
    session_id="ses-0123456789ab",
    agent_id="a1",
    customer="acme",
    hostname="db1",
    engineer="erin",
    reason="disk check",
    requested_duration_ms=30 * 60_000,
    requested_ms=T0,
    pending_expires_ms=T0 + 3_600_000,
    ticket_id=42,
)
WAITING_RUN = new_run(state="waiting_approval")


def test_every_notice_string_has_a_chinese_translation() -> None:
    catalogue = read_messages(
        "collector.notice_texts", "locales/zh_CN/LC_MESSAGES/notices.po", "zh_CN"
    )
    missing = sorted(set(messages.MESSAGES) - catalogue.keys())
    assert not missing, (
        f"add these to collector/notice_texts/locales/zh_CN/LC_MESSAGES/notices.po: {missing}"
    )
    for msgid in messages.MESSAGES:
        names = sorted(re.findall(r"%\((\w+)\)s", msgid))
        assert sorted(re.findall(r"%\((\w+)\)s", catalogue[msgid])) == names, msgid


def test_a_pending_session_is_told_to_each_contact_with_its_portal_page() -> None:
    due = session_notices(SESSION, [HOOK, MAIL], "en", LINK, set(), T0)
    assert [n.recipient for n in due] == [HOOK, MAIL]
    hook = due[0]
    assert hook.payload["link"] == f"{LINK}/sessions/ses-0123456789ab"
    assert hook.payload["event"] == "customer_session_awaiting_approval"
    assert hook.payload["session"]["id"] == "ses-0123456789ab"
    assert hook.payload["customer"] == "acme" and hook.payload["language"] == "en"
    assert hook.key.startswith("notice:session:ses-0123456789ab/webhook:https://hooks.acme.example")
    assert "s3cret" not in hook.key  # the webhook's secret path stays out of the record
    assert "Engineer erin asks to log in to your host db1 for 30 minutes." in hook.text
    assert "Ticket: #42" in hook.text and f"{LINK}/sessions/ses-0123456789ab" in hook.text
    assert hook.subject == "[aftercare] Remote session waiting for your approval: db1"
    json.dumps(hook.payload)  # plain JSON


def test_a_notice_is_due_once_per_recipient() -> None:
    sent = {n.key for n in session_notices(SESSION, [HOOK], "en", LINK, set(), T0)}
    again = session_notices(SESSION, [HOOK, MAIL], "en", LINK, sent, T0 + 5000)
    assert [n.recipient for n in again] == [MAIL]


def test_decided_or_lapsed_sessions_are_not_told() -> None:
    approved = replace(SESSION, state="approved")
    assert session_notices(approved, [HOOK], "en", LINK, set(), T0) == []
    assert session_notices(SESSION, [HOOK], "en", LINK, set(), SESSION.pending_expires_ms) == []


def test_chinese_notice_for_a_customer_that_reads_chinese() -> None:
    [notice] = session_notices(SESSION, [MAIL], "zh-CN", LINK, set(), T0)
    assert notice.subject == "[aftercare] 远程会话待您审批: db1"
    assert "工程师 erin 申请远程登录您的主机 db1, 时长 30 分钟。" in notice.text
    assert "请在此批准或拒绝: https://support.vendor.example/sessions/" in notice.text
    assert "Engineer" not in notice.text


def test_a_host_that_takes_only_local_approval_says_so() -> None:
    local = replace(SESSION, local_approval_required=True)
    [notice] = session_notices(local, [MAIL], "en", LINK, set(), T0)
    assert "only an approval given on the host" in notice.text
    assert notice.payload["session"]["approval"] == "host"


def test_a_run_waiting_for_approval_shows_the_playbook_and_parameters() -> None:
    [notice] = run_notices(WAITING_RUN, [HOOK], "en", LINK, set(), T0)
    assert notice.payload["link"] == f"{LINK}/runs/{WAITING_RUN.run_id}"
    assert notice.payload["run"]["playbook"] == "restart_service"
    assert notice.payload["run"]["params"] == {"service": "nginx", "password": "***"}
    assert "restart_service 1.2.0 (mutating)" in notice.text
    assert "password=***, service=nginx" in notice.text
    [chinese] = run_notices(WAITING_RUN, [HOOK], "zh-CN", LINK, set(), T0)
    assert "(变更)" in chinese.text and "参数" in chinese.text


def test_runs_not_waiting_or_already_approved_are_not_told() -> None:
    assert run_notices(replace(WAITING_RUN, state="running"), [HOOK], "en", LINK, set(), T0) == []
    approved = replace(WAITING_RUN, approved_by="user:carol")
    assert run_notices(approved, [HOOK], "en", LINK, set(), T0) == []


def test_without_a_portal_the_notice_names_the_command() -> None:
    assert session_link("ses-0123456789ab", "") == "aftercare session approve ses-0123456789ab"
    assert run_link("run-1", "") == "aftercare run approve run-1"
    assert session_link("ses-0123456789ab", LINK + "/") == f"{LINK}/sessions/ses-0123456789ab"


def test_without_a_language_setting_the_notice_has_both_chinese_first() -> None:
    assert language_of("en") == "en" and language_of("zh-CN") == "zh-CN"
    assert language_of(None) == language_of("") == language_of("fr") == ""
    [notice] = session_notices(SESSION, [MAIL], "", LINK, set(), T0)
    assert notice.subject == (
        "[aftercare] 远程会话待您审批: db1 / Remote session waiting for your approval: db1"
    )
    chinese_at = notice.text.index("工程师 erin 申请远程登录")
    assert chinese_at < notice.text.index("Engineer erin asks to log in")
    assert notice.text.count(f"{LINK}/sessions/ses-0123456789ab") == 2
    assert notice.payload["language"] == "zh-CN,en"
    [run] = run_notices(WAITING_RUN, [MAIL], "", LINK, set(), T0)
    assert "(变更)" in run.text and "(mutating)" in run.text
    assert translations("en").gettext(messages.NO_PARAMS) == "none"
    assert translations("zh-CN").gettext(messages.NO_PARAMS) == "无"
