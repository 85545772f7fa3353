"""Notifiers against real local servers: an HTTP receiver and an SMTP sink (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from collector.errors import CollectorError, ConfigError
from collector.notify import DeliveryError, SmtpSettings, build_message, send_email, send_webhook
from collector.notify.webhook import USER_AGENT, url_problem
from collector.pki import CertificateAuthority
from tests.support import free_port

PAYLOAD: dict[str, Any] = {
    "ticket": 42,
    "level": "1",
    "title": "磁盘空间不足 on web1",
    "customer": "acme",
    "due_ms": 1_700_000_000_000,
    "escalation": {"step": 2, "to": ["oncall"]},
}
SUBJECT = "[aftercare] 一级故障 #42: 磁盘空间不足 — web1"
BODY = "您好!\n\n工单 #42 的响应时限即将到期。\nTicket 42 breaches its response SLA in 10 min.\n"


# -- an HTTP receiver -----------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 recording every request it gets."""

    port: int
    requests: list[Received] = field(default_factory=list)
    status: int = 204
    answer: bytes = b""
    extra_headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    def url(self, path: str = "/hooks/aftercare") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.requests.append(Received(self.path, dict(self.headers.items()), body))
            time.sleep(state.delay_s)
            self.send_response(state.status)
            for name, value in state.extra_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(state.answer)))
            self.end_headers()
            self.wfile.write(state.answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- webhook --------------------------------------------------------------------------


def test_webhook_posts_json_with_headers(receiver: Receiver) -> None:
    send_webhook(
        receiver.url("/hooks/aftercare?tenant=acme"),
        PAYLOAD,
        headers={"Authorization": "Bearer s3cret", "X-Aftercare-Event": "escalation"},
    )
    [request] = receiver.requests
    assert request.path == "/hooks/aftercare?tenant=acme"
    assert json.loads(request.body.decode("utf-8")) == PAYLOAD
    assert "磁盘空间不足".encode() in request.body  # UTF-8 on the wire, not \u escapes
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert request.headers["X-Aftercare-Event"] == "escalation"


def test_webhook_headers_may_override_defaults(receiver: Receiver) -> None:
    receiver.status = 200
    receiver.answer = b'{"ok": true}'
    send_webhook(receiver.url(), PAYLOAD, headers={"Content-Type": "application/vnd.x+json"})
    assert receiver.requests[0].headers["Content-Type"] == "application/vnd.x+json"


def test_webhook_server_error_is_retryable(receiver: Receiver) -> None:
    receiver.status = 500
    receiver.answer = b"database\n  unavailable"
    with pytest.raises(DeliveryError) as caught:
        send_webhook(receiver.url("/hooks/SECRET-PATH?token=SECRET"), PAYLOAD)
    error = caught.value
    assert isinstance(error, CollectorError)
    assert (error.channel, error.status, error.retryable) == ("webhook", 500, True)
    assert "500" in str(error) and "database unavailable" in str(error)
    assert "SECRET" not in str(error) and error.target == f"http://127.0.0.1:{receiver.port}"
    assert len(receiver.requests) == 1


def test_webhook_client_error_is_not_retryable(receiver: Receiver) -> None:
    receiver.status = 401
    with pytest.raises(DeliveryError, match="401") as caught:
        send_webhook(receiver.url(), PAYLOAD)
    assert caught.value.retryable is False
    receiver.status = 429
    with pytest.raises(DeliveryError) as caught:
        send_webhook(receiver.url(), PAYLOAD)
    assert caught.value.retryable is True


def test_webhook_non_2xx_success_range_is_an_error(receiver: Receiver) -> None:
    receiver.status = 302
    receiver.extra_headers = {"Location": receiver.url("/elsewhere")}
    with pytest.raises(DeliveryError, match="redirects are not followed"):
        send_webhook(receiver.url(), PAYLOAD)
    assert [r.path for r in receiver.requests] == ["/hooks/aftercare"]  # not followed


def test_webhook_connection_refused() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(DeliveryError, match="unreachable") as caught:
        send_webhook(f"http://127.0.0.1:{port}/hook", PAYLOAD, timeout=5)
    assert caught.value.retryable is True and caught.value.status is None


def test_webhook_timeout(receiver: Receiver) -> None:
    receiver.delay_s = 1.0
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="timed out") as caught:
        send_webhook(receiver.url(), PAYLOAD, timeout=0.2)
    assert time.monotonic() - started < 1.0
    assert caught.value.retryable is True


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/hook", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("example.com/hook", "scheme"),
        ("http:///hook", "no host"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("http://example.com:99999/hook", "valid"),
    ],
)
def test_webhook_refuses_unusable_urls(url: str, problem: str) -> None:
    assert problem in (url_problem(url) or "")
    with pytest.raises(DeliveryError, match=problem) as caught:
        send_webhook(url, PAYLOAD)
    assert caught.value.retryable is False
    assert "pw" not in str(caught.value) and "passwd" not in str(caught.value)


def test_url_problem_accepts_http_and_https() -> None:
    for url in ("http://127.0.0.1:8080/x", "https://hooks.example.com/a?b=c", "http://[::1]/"):
        assert url_problem(url) is None


def test_webhook_refuses_payload_that_is_not_json(receiver: Receiver) -> None:
    for payload in ({"x": float("nan")}, {"x": object()}):
        with pytest.raises(DeliveryError, match="not plain JSON"):
            send_webhook(receiver.url(), payload)
    with pytest.raises(DeliveryError, match="invalid request"):
        send_webhook(receiver.url(), PAYLOAD, headers={"X-Evil": "a\r\nInjected: yes"})
    assert receiver.requests == []


# -- an SMTP sink ---------------------------------------------------------------------


class Sink:
    """aiosmtpd handler: refuses @refused.example (550) and @busy.example (450),
    keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.endswith("@refused.example"):
            return "550 5.1.1 No such user here"
        if address.endswith("@busy.example"):
            return "450 4.2.1 Mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, _class=EmailMessage, policy=email.policy.default)
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


@dataclass
class SmtpSink:
    sink: Sink
    port: int


def start_sink(**smtp_options: Any) -> tuple[Controller, SmtpSink]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, **smtp_options)
    controller.start()
    return controller, SmtpSink(sink, port)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    controller, sink = start_sink()
    try:
        yield sink
    finally:
        controller.stop()


def settings(port: int, **changes: Any) -> SmtpSettings:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "sender": "Aftercare <aftercare@vendor.example>",
    }
    return SmtpSettings(**(options | changes))


def test_email_delivers_utf8_subject_and_body(smtp: SmtpSink) -> None:
    to = ["ops@acme.example", "王工 <wang@acme.example>"]
    send_email(settings(smtp.port), to, SUBJECT, BODY)
    [(mail_from, rcpt_tos, message)] = smtp.sink.messages
    assert mail_from == "aftercare@vendor.example"
    assert rcpt_tos == ["ops@acme.example", "wang@acme.example"]
    assert message["Subject"] == SUBJECT
    assert message["From"] == "Aftercare <aftercare@vendor.example>"
    assert "王工" in message["To"]
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content().replace("\r\n", "\n") == BODY  # CRLF on the wire
    assert message["Message-ID"].endswith("@vendor.example>") and message["Date"]


def test_email_recipient_refused(smtp: SmtpSink) -> None:
    with pytest.raises(DeliveryError, match="nobody got the message") as caught:
        send_email(settings(smtp.port), ["ghost@refused.example"], SUBJECT, BODY)
    error = caught.value
    assert (error.channel, error.status, error.retryable) == ("email", 550, False)
    assert error.refused == {"ghost@refused.example": (550, "5.1.1 No such user here")}
    assert smtp.sink.messages == []


def test_email_partly_refused_says_who_got_it(smtp: SmtpSink) -> None:
    to = ["ops@acme.example", "ghost@refused.example"]
    with pytest.raises(DeliveryError, match="other recipients got the message") as caught:
        send_email(settings(smtp.port), to, SUBJECT, BODY)
    assert list(caught.value.refused) == ["ghost@refused.example"]
    [(_, rcpt_tos, _)] = smtp.sink.messages
    assert rcpt_tos == ["ops@acme.example"]


def test_email_temporary_refusal_is_retryable(smtp: SmtpSink) -> None:
    with pytest.raises(DeliveryError) as caught:
        send_email(settings(smtp.port), ["ops@busy.example"], SUBJECT, BODY)
    assert (caught.value.status, caught.value.retryable) == (450, True)


def test_email_connection_refused() -> None:
    with pytest.raises(DeliveryError, match="unreachable") as caught:
        send_email(settings(free_port(), timeout=5), ["ops@acme.example"], SUBJECT, BODY)
    assert caught.value.retryable is True


def test_email_needs_valid_recipients(smtp: SmtpSink) -> None:
    with pytest.raises(DeliveryError, match="no recipients"):
        send_email(settings(smtp.port), [], SUBJECT, BODY)
    for bad in ("not-an-address", "ops@acme.example\r\nBcc: all@acme.example"):
        with pytest.raises(DeliveryError, match="recipient"):
            send_email(settings(smtp.port), [bad], SUBJECT, BODY)
    assert smtp.sink.messages == []


def test_subject_line_breaks_become_spaces() -> None:
    message = build_message("a@vendor.example", ["b@acme.example"], "one\r\nBcc: x@y\n two", "hi")
    assert message["Subject"] == "one Bcc: x@y two"
    assert message["Bcc"] is None


def test_smtp_settings_checked_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="starttls"):
        settings(25, username="u", password="p")
    with pytest.raises(ConfigError, match="both or neither"):
        settings(25, username="u", starttls=True)
    with pytest.raises(ConfigError, match="port"):
        settings(0)
    with pytest.raises(ConfigError, match="sender"):
        settings(25, sender="aftercare")
    with pytest.raises(ConfigError, match="host"):
        settings(25, host="")
    with pytest.raises(ConfigError, match="timeout"):
        settings(25, timeout=0)
    with pytest.raises(ConfigError, match="ca_file"):
        settings(25, starttls=True, ca_file=str(tmp_path / "missing.pem"))
    assert "p4ss" not in repr(settings(25, username="u", password="p4ss", starttls=True))


# -- STARTTLS and login ---------------------------------------------------------------


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[SmtpSink, str]]:
    """A sink that requires STARTTLS (certificate for 127.0.0.1 from a private CA)
    and AUTH as erin / right-password; yields it and the CA file."""
    ca = CertificateAuthority.create("test mail CA")
    cert_pem, key_pem = ca.issue_server_certificate(["127.0.0.1"], dt.timedelta(days=1))
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"erin",
            b"right-password",
        )
        return AuthResult(success=ok, handled=False)  # False: the server answers 535

    controller, sink = start_sink(
        tls_context=context, require_starttls=True, authenticator=authenticate
    )
    try:
        yield sink, str(tmp_path / "ca.pem")
    finally:
        controller.stop()


def test_email_starttls_and_login(tls_smtp: tuple[SmtpSink, str]) -> None:
    sink, ca_file = tls_smtp
    config = settings(
        sink.port, starttls=True, username="erin", password="right-password", ca_file=ca_file
    )
    send_email(config, ["ops@acme.example"], SUBJECT, BODY)
    [(_, _, message)] = sink.sink.messages
    assert message["Subject"] == SUBJECT


def test_email_wrong_password(tls_smtp: tuple[SmtpSink, str]) -> None:
    sink, ca_file = tls_smtp
    config = settings(sink.port, starttls=True, username="erin", password="wrong", ca_file=ca_file)
    with pytest.raises(DeliveryError, match="535") as caught:
        send_email(config, ["ops@acme.example"], SUBJECT, BODY)
    assert caught.value.status == 535 and "wrong" not in str(caught.value)
    assert sink.sink.messages == []


def test_email_untrusted_certificate(tls_smtp: tuple[SmtpSink, str]) -> None:
    sink, _ = tls_smtp
    with pytest.raises(DeliveryError, match="TLS failed") as caught:
        send_email(settings(sink.port, starttls=True), ["ops@acme.example"], SUBJECT, BODY)
    assert caught.value.retryable is False


def test_email_without_starttls_refused_by_a_server_requiring_it(
    tls_smtp: tuple[SmtpSink, str],
) -> None:
    sink, _ = tls_smtp
    with pytest.raises(DeliveryError, match="530"):
        send_email(settings(sink.port), ["ops@acme.example"], SUBJECT, BODY)
