"""Alertmanager webhook payloads: parsing, validation, levels, ticket fields, tokens —
and, where the binary is installed, a real Alertmanager posting to a local receiver."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from collector.alertmanager import (
    DEFAULT_LEVELS,
    Alert,
    check_bearer,
    level_for,
    parse_payload,
    parse_time_ms,
    ticket_fields,
)
from collector.errors import CollectorError, InvalidRequest, Unauthenticated
from tests.support import alertmanager_ready, free_port, post_alerts, wait_for

STARTS = "2024-05-01T08:30:15.123456789Z"
STARTS_MS = 1_714_552_215_123

# What Alertmanager 0.25+ posts for one firing alert (labels as our conventions want).
FIRING: dict[str, Any] = {
    "receiver": "aftercare",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "NodeFilesystemAlmostFull",
                "customer": "acme",
                "instance": "web1.acme.example:9100",
                "job": "node",
                "mountpoint": "/data",
                "severity": "critical",
            },
            "annotations": {
                "summary": "磁盘空间不足: /data on web1 is 97% full",
                "description": "Filesystem /data has 3% space left.\nClean up or grow it.",
            },
            "startsAt": STARTS,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.acme.example:9090/graph?g0.expr=x",
            "fingerprint": "1a30ba71cca2921f",
        }
    ],
    "groupLabels": {"alertname": "NodeFilesystemAlmostFull"},
    "commonLabels": {"alertname": "NodeFilesystemAlmostFull", "customer": "acme"},
    "commonAnnotations": {"summary": "磁盘空间不足: /data on web1 is 97% full"},
    "externalURL": "http://alertmanager.vendor.example:9093",
    "version": "4",
    "groupKey": '{}:{alertname="NodeFilesystemAlmostFull"}',
    "truncatedAlerts": 0,
}


def payload(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(FIRING)
    document.update(changes)
    return document


def alert_doc(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(FIRING["alerts"][0])
    document.update(changes)
    return document


def body(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def make_alert(**labels: str) -> Alert:
    return Alert(
        status="firing",
        labels=labels,
        annotations={},
        starts_ms=STARTS_MS,
        ends_ms=None,
        generator_url="",
        fingerprint="f00d",
    )


# -- parsing real payloads ------------------------------------------------------------


def test_parse_firing_payload() -> None:
    parsed = parse_payload(body(FIRING))
    assert (parsed.version, parsed.receiver, parsed.status) == ("4", "aftercare", "firing")
    assert parsed.group_labels == {"alertname": "NodeFilesystemAlmostFull"}
    assert parsed.common_labels["customer"] == "acme"
    assert parsed.common_annotations["summary"].startswith("磁盘空间不足")
    assert parsed.external_url == "http://alertmanager.vendor.example:9093"
    assert parsed.group_key == '{}:{alertname="NodeFilesystemAlmostFull"}'
    assert parsed.truncated_alerts == 0
    [alert] = parsed.alerts
    assert alert.status == "firing" and alert.name == "NodeFilesystemAlmostFull"
    assert alert.starts_ms == STARTS_MS  # nanoseconds truncated to the millisecond
    assert alert.ends_ms is None  # Go's zero time: unset
    assert alert.fingerprint == "1a30ba71cca2921f"
    assert alert.annotations["description"].endswith("grow it.")
    assert alert.generator_url.startswith("http://prometheus.acme.example")


def test_parse_resolved_payload() -> None:
    resolved = alert_doc(status="resolved", endsAt="2024-05-01T10:30:15.5+02:00")
    parsed = parse_payload(body(payload(status="resolved", alerts=[resolved])))
    assert parsed.status == "resolved"
    [alert] = parsed.alerts
    assert alert.status == "resolved"
    assert alert.ends_ms == STARTS_MS - 123 + 500  # 08:30:15.5 UTC


def test_parse_grouped_payload_with_mixed_states() -> None:
    # A group notification lists every alert of the group: firing and resolved ones.
    alerts = [
        alert_doc(),
        alert_doc(
            status="resolved",
            fingerprint="2b41cb82ddb3a3a0",
            labels={**FIRING["alerts"][0]["labels"], "instance": "web2.acme.example:9100"},
            endsAt="2024-05-01T08:45:00Z",
        ),
        alert_doc(
            fingerprint="3c52dc93eec4b4b1",
            labels={"alertname": "HostDown", "customer": "zeta", "host": "db1"},
            annotations={},
            generatorURL="",
        ),
    ]
    parsed = parse_payload(body(payload(alerts=alerts, truncatedAlerts=2)))
    assert [a.status for a in parsed.alerts] == ["firing", "resolved", "firing"]
    assert [a.fingerprint for a in parsed.alerts] == [
        "1a30ba71cca2921f",
        "2b41cb82ddb3a3a0",
        "3c52dc93eec4b4b1",
    ]
    assert parsed.truncated_alerts == 2
    assert [ticket_fields(a, "3").customer for a in parsed.alerts] == ["acme", "acme", "zeta"]


def test_optional_and_unknown_fields() -> None:
    older = payload()
    for key in ("groupKey", "truncatedAlerts", "commonAnnotations"):
        del older[key]
    parsed = parse_payload(body(older))
    assert (parsed.group_key, parsed.truncated_alerts, parsed.common_annotations) == ("", 0, {})
    # Grafana's extra fields are ignored.
    extra = payload(orgId=1, alerts=[alert_doc(silenceURL="http://g/s", values={"B": 44.2})])
    assert parse_payload(body(extra)).alerts[0].fingerprint == "1a30ba71cca2921f"
    assert parse_payload(body(payload(alerts=[]))).alerts == ()


# -- strict validation ----------------------------------------------------------------


def without(key: str) -> dict[str, Any]:
    document = payload()
    del document[key]
    return document


def alert_without(key: str) -> dict[str, Any]:
    broken = alert_doc()
    del broken[key]
    return payload(alerts=[alert_doc(), broken])


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([FIRING], "payload: expected a JSON object, got an array"),
        (payload(version="3"), 'version: expected "4"'),
        (payload(version=4), "version: expected a string, got a number"),
        (without("version"), "version: missing"),
        (without("receiver"), "receiver: missing"),
        (without("alerts"), "alerts: missing"),
        (without("groupLabels"), "groupLabels: missing"),
        (without("commonLabels"), "commonLabels: missing"),
        (without("externalURL"), "externalURL: missing"),
        (payload(status="pending"), 'status: expected "firing" or "resolved"'),
        (payload(alerts={"0": alert_doc()}), "alerts: expected an array, got an object"),
        (payload(alerts=[alert_doc(), "x"]), "alerts[1]: expected an object, got a string"),
        (alert_without("labels"), "alerts[1].labels: missing"),
        (alert_without("annotations"), "alerts[1].annotations: missing"),
        (alert_without("startsAt"), "alerts[1].startsAt: missing"),
        (alert_without("endsAt"), "alerts[1].endsAt: missing"),
        (alert_without("generatorURL"), "alerts[1].generatorURL: missing"),
        (alert_without("fingerprint"), "alerts[1].fingerprint: missing"),
        (alert_without("status"), "alerts[1].status: missing"),
        (
            payload(alerts=[alert_doc(), alert_doc(), alert_doc(labels=["a"])]),
            "alerts[2].labels: expected an object, got an array",
        ),
        (
            payload(alerts=[alert_doc(labels={"customer": "acme", "n": 1})]),
            "alerts[0].labels.n: expected a string, got a number",
        ),
        (
            payload(alerts=[alert_doc(annotations={"summary": None})]),
            "alerts[0].annotations.summary: expected a string, got null",
        ),
        (payload(alerts=[alert_doc(status="firin")]), "alerts[0].status: expected"),
        (payload(alerts=[alert_doc(startsAt="yesterday")]), "alerts[0].startsAt: expected an RFC"),
        (
            payload(alerts=[alert_doc(startsAt="0001-01-01T00:00:00Z")]),
            "alerts[0].startsAt: must be set",
        ),
        (
            payload(alerts=[alert_doc(endsAt="2024-02-30T00:00:00Z")]),
            "alerts[0].endsAt: '2024-02-30T00:00:00Z' is not a valid time",
        ),
        (payload(alerts=[alert_doc(endsAt=17)]), "alerts[0].endsAt: expected a string"),
        (payload(alerts=[alert_doc(fingerprint=" ")]), "alerts[0].fingerprint: must not be empty"),
        (payload(groupLabels="alertname"), "groupLabels: expected an object, got a string"),
        (payload(truncatedAlerts=-1), "truncatedAlerts: expected a count"),
        (payload(truncatedAlerts=True), "truncatedAlerts: expected a count"),
    ],
)
def test_malformed_payloads_name_the_field(document: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_payload(body(document))
    assert message in str(caught.value)
    assert isinstance(caught.value, CollectorError)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b'{"version": NaN}', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_bodies_that_are_not_json(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_payload(raw, max_bytes=1 << 20)


def test_oversized_payload_refused_before_parsing() -> None:
    raw = body(FIRING)
    assert parse_payload(raw, max_bytes=len(raw)).alerts
    with pytest.raises(InvalidRequest, match=f"payload is {len(raw)} bytes; the limit is 100"):
        parse_payload(raw, max_bytes=100)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.001Z", 1),
        ("1970-01-01T00:00:00.0009Z", 0),  # truncated, never rounded up
        ("1970-01-01T08:00:00+08:00", 0),
        ("1969-12-31T19:00:00.25-05:00", 250),
        ("2024-05-01t08:30:15.123456789z", STARTS_MS),
        ("0001-01-01T00:00:00Z", None),
        ("0001-01-01T00:00:00.000000000Z", None),
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
    ],
)
def test_parse_time_ms(text: str, expected: int | None) -> None:
    assert parse_time_ms(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T08:30:15",  # no offset
        "2024-05-01 08:30",
        "2024-05-01T08:30:15.1234567890Z",  # ten digits
        "2024-05-01T08:30:15+0200",
        "2024-05-01T08:30:15+24:00",
        "2024-05-01T25:00:00Z",
        "",
    ],
)
def test_parse_time_ms_refuses(text: str) -> None:
    with pytest.raises(InvalidRequest, match="endsAt"):
        parse_time_ms(text, "endsAt")


# -- levels ---------------------------------------------------------------------------


def test_level_from_severity_label() -> None:
    assert level_for(make_alert(severity="critical")) == "1"
    assert level_for(make_alert(severity="Warning ")) == "3"  # case and blanks forgiven
    assert level_for(make_alert(severity="2")) == "2"
    assert level_for(make_alert(severity="info")) == "4"
    assert level_for(make_alert(severity="whatever")) == "3"  # default
    assert level_for(make_alert()) == "3"
    assert level_for(make_alert(), default="4") == "4"


def test_level_label_and_mapping_configurable() -> None:
    alert = make_alert(priority="P1", severity="info")
    assert level_for(alert, "priority", {"P1": "1", "P2": "2"}) == "1"
    assert level_for(alert, "priority", {"p1": "2"}) == "2"  # lower-cased fallback
    assert level_for(alert, "priority", {}, default="consult") == "consult"
    assert DEFAULT_LEVELS["critical"] == "1"


# -- ticket fields --------------------------------------------------------------------


def test_ticket_fields_from_a_firing_alert() -> None:
    [alert] = parse_payload(body(FIRING)).alerts
    new = ticket_fields(alert, level_for(alert))
    assert new.customer == "acme"
    assert new.title == "磁盘空间不足: /data on web1 is 97% full"
    assert new.level == "1" and new.source == "alertmanager"
    assert new.hostname == "web1.acme.example"  # instance without its port
    assert new.rule == "NodeFilesystemAlmostFull"
    assert new.dedup_key == "am:1a30ba71cca2921f"
    assert new.labels == alert.labels
    assert new.description.startswith("Filesystem /data has 3% space left.")
    assert new.description.endswith("Source: http://prometheus.acme.example:9090/graph?g0.expr=x")
    assert new.agent_id is None


def test_ticket_fields_fallbacks() -> None:
    bare = make_alert(alertname="HostDown", customer="acme", instance="10.0.0.7:9100")
    new = ticket_fields(bare, "2")
    assert (new.title, new.hostname, new.description) == ("HostDown on 10.0.0.7", "10.0.0.7", "")
    named = make_alert(alertname="X", customer="acme", host="db1", instance="10.0.0.8:9100")
    assert ticket_fields(named, "2").hostname == "db1"  # host wins over instance
    assert ticket_fields(make_alert(customer="acme", instance="[::1]:9100"), "2").hostname == "::1"
    blackbox = make_alert(customer="acme", instance="https://shop.acme.example")
    assert ticket_fields(blackbox, "2").hostname == "https://shop.acme.example"
    assert ticket_fields(make_alert(customer="acme"), "4").title == "Alertmanager alert"
    long = Alert("firing", {"customer": "acme"}, {"summary": "x" * 500}, 0, None, "", "f")
    assert len(ticket_fields(long, "3").title) == 200


def test_alert_without_customer_refused() -> None:
    with pytest.raises(InvalidRequest, match="no 'customer' label"):
        ticket_fields(make_alert(alertname="HostDown", host="db1"), "1")
    with pytest.raises(InvalidRequest, match="HostDown"):
        ticket_fields(make_alert(alertname="HostDown", customer="  "), "1")


# -- bearer token ---------------------------------------------------------------------


def test_bearer_token_accepted() -> None:
    check_bearer("Bearer s3cret-token", ["old-token", "s3cret-token"])
    check_bearer("bearer  s3cret-token ", {"s3cret-token"})


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing Authorization"),
        ("", "missing Authorization"),
        ("Bearer wrong", "unknown bearer token"),
        ("Bearer s3cret-token-but-longer", "unknown bearer token"),
        ("Bearer ", "Bearer TOKEN"),
        ("Basic czNjcmV0LXRva2Vu", "Bearer TOKEN"),
        ("s3cret-token", "Bearer TOKEN"),
    ],
)
def test_wrong_token_refused(header: str | None, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message):
        check_bearer(header, ["s3cret-token"])


def test_no_configured_tokens_means_closed() -> None:
    with pytest.raises(Unauthenticated, match="no tokens configured"):
        check_bearer("Bearer anything", [])


# -- a real Alertmanager --------------------------------------------------------------

ALERTMANAGER = shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[int, list[tuple[str | None, bytes]]]]:
    """A local HTTP server recording (Authorization header, body) of every POST."""
    got: list[tuple[str | None, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            got.append((self.headers.get("Authorization"), self.rfile.read(length)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], got
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(ALERTMANAGER is None, reason="Alertmanager is not installed")
def test_real_alertmanager_firing_then_resolved(
    tmp_path: Path, webhook_receiver: tuple[int, list[tuple[str | None, bytes]]]
) -> None:
    receiver_port, got = webhook_receiver
    token = "am-token-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "alertmanager.yml").write_text(
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
      - url: http://127.0.0.1:{receiver_port}/alertmanager
        send_resolved: true
        http_config:
          authorization:
            credentials_file: {tmp_path / "token"}
"""
    )
    am_port = free_port()
    assert ALERTMANAGER is not None
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "alertmanager.log").open("wb"),
    )
    try:
        wait_for(lambda: alertmanager_ready(am_port), what="Alertmanager ready")
        now = datetime.now(UTC)
        alert = {
            "labels": {
                "alertname": "NodeMemoryPressure",
                "customer": "acme",
                "instance": "web1.acme.example:9100",
                "severity": "critical",
            },
            "annotations": {"summary": "内存不足 on web1"},
            "startsAt": now.isoformat(),
            "generatorURL": "http://prometheus.acme.example/graph",
        }
        post_alerts(am_port, [alert])
        wait_for(lambda: len(got) >= 1, what="firing notification")
        header, raw = got[0]
        check_bearer(header, [token])
        firing = parse_payload(raw)
        assert firing.status == "firing" and firing.receiver == "aftercare"
        [fired] = firing.alerts
        new = ticket_fields(fired, level_for(fired))
        assert (new.customer, new.hostname, new.level) == ("acme", "web1.acme.example", "1")
        assert new.title == "内存不足 on web1"
        assert abs(fired.starts_ms - int(now.timestamp() * 1000)) < 1000

        post_alerts(am_port, [{**alert, "endsAt": (now + timedelta(seconds=1)).isoformat()}])
        wait_for(lambda: any(b'"resolved"' in b for _, b in got[1:]), what="resolved")
        resolved = parse_payload(next(b for _, b in got[1:] if b'"resolved"' in b))
        [cleared] = resolved.alerts
        assert cleared.status == "resolved" and cleared.fingerprint == fired.fingerprint
        assert cleared.ends_ms is not None and cleared.ends_ms > fired.starts_ms
    finally:
        process.terminate()
        process.wait(timeout=10)
