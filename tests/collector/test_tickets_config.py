"""Tickets configuration: defaults, the shipped example, and errors naming the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from collector.errors import ConfigError
from collector.tickets.config import (
    DEFAULT_LEVEL_MAP,
    AlertmanagerConfig,
    SmtpConfig,
    TicketsConfig,
    load_tickets_config,
)
from collector.tickets.errors import TicketConfigError
from collector.tickets.escalation import EscalationPolicy, Recipient, Trigger
from collector.tickets.sla import DAY_MS, DEFAULT_TARGETS, HOUR_MS, MINUTE_MS, LevelTargets

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "tickets.example.yaml"
DOCS = REPO / "docs" / "tickets.md"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tickets.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error(tmp_path: Path, text: str) -> TicketConfigError:
    path = write(tmp_path, text)
    with pytest.raises(TicketConfigError) as caught:
        load_tickets_config(path)
    assert isinstance(caught.value, ConfigError)
    assert str(caught.value).startswith(f"{path}: ")
    return caught.value


# -- defaults and the example ------------------------------------------------------------


def test_no_file_gives_the_defaults() -> None:
    config = load_tickets_config(None)
    assert config == TicketsConfig()
    assert config.reopen_window_ms == 7 * DAY_MS
    assert config.auto_confirm_ms == 7 * DAY_MS
    assert config.sla.warning_fraction == 0.75
    assert dict(config.sla.levels) == dict(DEFAULT_TARGETS)
    assert config.escalation == EscalationPolicy()
    assert not config.smtp.enabled
    assert config.alertmanager == AlertmanagerConfig()
    assert dict(config.alertmanager.level_map) == dict(DEFAULT_LEVEL_MAP)


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load_tickets_config(write(tmp_path, "# nothing\n")) == TicketsConfig()


def test_the_example_file_loads_and_uses_every_section() -> None:
    config = load_tickets_config(EXAMPLE)
    assert config.reopen_window_ms == 7 * DAY_MS
    assert dict(config.sla.levels) == dict(DEFAULT_TARGETS)  # the example spells out defaults
    bank = config.sla.targets("bank-of-example", "1")
    assert bank == LevelTargets(15 * MINUTE_MS, 2 * HOUR_MS, 30 * MINUTE_MS)
    assert config.sla.targets("bank-of-example", "2").resolution_ms == 8 * HOUR_MS
    assert config.sla.targets("bank-of-example", "3") == DEFAULT_TARGETS["3"]
    steps = config.escalation.steps
    assert [str(s.trigger) for s in steps] == ["warning", "breach", "breach+30m", "breach+2h"]
    assert steps[0].clocks == {"response"}
    assert steps[2].clocks == {"response", "resolution"}  # the default
    assert steps[3].min_level == "2"
    assert steps[1].recipients == (
        Recipient("webhook", "https://chat.vendor.example/hooks/aftercare"),
        Recipient("email", "oncall@vendor.example"),
    )
    assert config.smtp == SmtpConfig(
        host="smtp.vendor.example",
        port=587,
        sender="aftercare@vendor.example",
        starttls=True,
        username="aftercare",
        password_file=Path("/etc/aftercare/smtp-password"),
        timeout_s=10.0,
    )
    assert config.alertmanager.level_for({"severity": "CRITICAL"}) == "1"
    assert config.customer_notices.remind_before_ms == DAY_MS
    assert config.report_vendor == "Example Systems Ltd"
    assert config.timezone_of("bank-of-example") == "Asia/Hong_Kong"
    assert config.timezone_of("acme") == "Asia/Shanghai"
    assert config.customer_notices.contacts == {
        "bank-of-example": (
            Recipient("email", "it-duty@bank.example"),
            Recipient("webhook", "https://portal.bank.example/hooks/aftercare"),
        )
    }


def key_paths(value: object, path: str = "") -> list[str]:
    """Dotted key paths of the leaves, with placeholders as docs/tickets.md writes them."""
    leaves = (
        "recipients",
        "level_map",
        "clocks",
        "notices.customers.CUSTOMER",
        "weekend",
        "holidays",
        "extra_working_days",
        "TEAM.customers",
        "TEAM.on_call",
    )
    if path.endswith(leaves) or not isinstance(value, dict | list):
        return [path]
    if isinstance(value, list):
        return [p for item in value for p in key_paths(item, f"{path}[i]")]
    paths = []
    for key, item in value.items():
        if path in ("sla.levels", "sla.customers.CUSTOMER"):
            key = "LEVEL"
        elif path in ("sla.customers", "customer_notices.customers", "report.timezones"):
            key = "CUSTOMER"
        elif path == "teams.engineers":
            key = "ENGINEER"
        elif path == "teams.teams":
            key = "TEAM"
        paths += key_paths(item, f"{path}.{key}" if path else str(key))
    return paths


def test_every_key_of_the_example_is_documented() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    paths = set(key_paths(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))))
    assert len(paths) > 20
    undocumented = {
        path
        for path in paths
        if f"`{path}`" not in docs and f"`{path.rpartition('.')[0]}.{{" not in docs
    }
    assert not undocumented
    for recipient in ("`webhook: URL`", "`email: ADDRESS`"):
        assert recipient in docs


def test_durations_and_levels_in_any_spelling(tmp_path: Path) -> None:
    config = load_tickets_config(
        write(
            tmp_path,
            "reopen_window: 3600\nauto_confirm: 1d12h\n"
            "sla:\n  levels:\n    '1': {response: 20m}\n    consult: {remote_response: 1h}\n",
        )
    )
    assert config.reopen_window_ms == HOUR_MS
    assert config.auto_confirm_ms == 36 * HOUR_MS
    assert config.sla.levels["1"] == LevelTargets(20 * MINUTE_MS, 4 * HOUR_MS, 30 * MINUTE_MS)
    assert config.sla.levels["consult"].remote_response_ms == HOUR_MS


def test_alertmanager_levels() -> None:
    am = AlertmanagerConfig(default_level="4", level_label="prio", level_map={"P1": "1"})
    assert am.level_for({"prio": "p1"}) == "1"
    assert am.level_for({"prio": "consult"}) == "consult"
    assert am.level_for({"prio": "whatever"}) == "4"
    assert am.level_for({}) == "4"


def test_smtp_settings_for_the_notifier(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n", encoding="utf-8")
    smtp = SmtpConfig(host="mail.example", sender="a@vendor.example", username="a",
                      password_file=secret, timeout_s=3.0)  # fmt: skip
    settings = smtp.settings()
    assert (settings.host, settings.port, settings.starttls) == ("mail.example", 587, True)
    assert (settings.username, settings.password, settings.timeout) == ("a", "s3cret", 3.0)
    with pytest.raises(TicketConfigError, match="e-mail needs host and from"):
        SmtpConfig().settings()


def test_smtp_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n", encoding="utf-8")
    assert SmtpConfig(host="h", password_file=secret).read_password() == "s3cret"
    assert SmtpConfig(host="h").read_password() is None
    with pytest.raises(TicketConfigError, match=r"escalation\.smtp\.password_file: cannot read"):
        SmtpConfig(host="h", password_file=tmp_path / "missing").read_password()


# -- errors name the key path ----------------------------------------------------------

SMTP = "  smtp: {host: mail.example, from: a@vendor.example}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("reopen_windows: 7d\n", "reopen_windows: unknown key; expected one of: alertmanager,"),
        ("reopen_window: soon\n", "reopen_window: invalid duration 'soon'"),
        ("auto_confirm: 0\n", "auto_confirm: must be longer than 0"),
        ("sla: [1, 2]\n", "sla: must be a mapping, not list"),
        ("sla: {warning_fraction: 1.5}\n", "sla.warning_fraction: must be a number between 0"),
        ("sla: {levels: {5: {response: 1h}}}\n", "sla.levels.5: unknown fault level 5"),
        ("sla: {levels: {1: {respond: 1h}}}\n", "sla.levels.1.respond: unknown key"),
        ("sla: {levels: {2: {resolution: -1h}}}\n", "sla.levels.2.resolution: invalid duration"),
        (
            "sla: {customers: {acme: {3: {response: 0s}}}}\n",
            "sla.customers.acme.3.response: must be longer than 0",
        ),
        ("escalation: {steps: {trigger: breach}}\n", "escalation.steps: must be a list"),
        (
            "escalation:\n  steps:\n    - {trigger: warning, recipients: [{webhook: 'http://h/'}]}\n"
            "    - {trigger: breech, recipients: [{webhook: 'http://h/'}]}\n",
            "escalation.steps[1].trigger: invalid trigger 'breech'",
        ),
        (
            "escalation: {steps: [{recipients: [{webhook: 'http://h/'}]}]}\n",
            "escalation.steps[0].trigger: required",
        ),
        (
            "escalation: {steps: [{trigger: breach}]}\n",
            "escalation.steps[0].recipients: required",
        ),
        (
            "escalation: {steps: [{trigger: breach, clocks: [respons], "
            "recipients: [{webhook: 'http://h/'}]}]}\n",
            "escalation.steps[0].clocks[0]: unknown clock 'respons'",
        ),
        (
            "escalation: {steps: [{trigger: breach, min_level: 9, "
            "recipients: [{webhook: 'http://h/'}]}]}\n",
            "escalation.steps[0].min_level: unknown fault level 9",
        ),
        (
            "escalation: {steps: [{trigger: breach, recipients: [{webhook: 'ftp://h/'}]}]}\n",
            "escalation.steps[0].recipients[0].webhook: not a usable webhook URL: scheme must",
        ),
        (
            "escalation: {steps: [{trigger: breach, recipients: [{webhook: 'http://h/', "
            "email: a@b.example}]}]}\n",
            "escalation.steps[0].recipients[0]: give exactly one of",
        ),
        (
            "escalation: {steps: [{trigger: breach, recipients: [{email: a@b.example}]}]}\n",
            "escalation.steps[0].recipients[0].email: e-mail recipients need escalation.smtp.host",
        ),
        (
            "escalation:\n"
            + SMTP
            + "  steps: [{trigger: breach, recipients: [{email: nobody}]}]\n",
            "escalation.steps[0].recipients[0].email: 'nobody' is not an e-mail address",
        ),
        ("escalation: {smtp: {port: 99999}}\n", "escalation.smtp.port: must be a port number"),
        ("escalation: {smtp: {starttls: maybe}}\n", "escalation.smtp.starttls: must be true"),
        ("escalation: {smtp: {from: me}}\n", "escalation.smtp.from: 'me' is not an e-mail"),
        ("escalation: {smtp: {user: x}}\n", "escalation.smtp.user: unknown key"),
        (
            "escalation: {steps: [{trigger: breach, recipients: "
            "[{webhook: 'https://u:pw@h.example/'}]}]}\n",
            "recipients[0].webhook: not a usable webhook URL: credentials in the URL",
        ),
        ("escalation: {smtp: {username: u}}\n", "escalation.smtp.password_file: required"),
        ("escalation: {smtp: {password_file: /p}}\n", "escalation.smtp.username: required"),
        (
            "escalation: {smtp: {username: u, password_file: /p, starttls: false}}\n",
            "escalation.smtp.starttls: must be true with a username",
        ),
        ("escalation: {smtp: {timeout: 0}}\n", "escalation.smtp.timeout: must be longer than 0"),
        ("alertmanager: {default_level: urgent}\n", "alertmanager.default_level: unknown fault"),
        ("alertmanager: {level_label: ''}\n", "alertmanager.level_label: must be a non-empty"),
        ("alertmanager: {level_map: {page: 0}}\n", "alertmanager.level_map.page: unknown fault"),
        ("customer_notices: {remind: 1d}\n", "customer_notices.remind: unknown key"),
        ("report: {vendor: ''}\n", "report.vendor: must be a non-empty string"),
        ("report: {timezone: Mars/Olympus}\n", "report.timezone: unknown time zone 'Mars/Olympus'"),
        ("report: {timezones: {acme: CEST}}\n", "report.timezones.acme: unknown time zone 'CEST'"),
        ("report: {language: en}\n", "report.language: unknown key"),
        (
            "customer_notices: {remind_before: 0s}\n",
            "customer_notices.remind_before: must be longer than 0",
        ),
        (
            "customer_notices: {customers: {acme: [{email: ops@acme.example}]}}\n",
            "customer_notices.customers.acme[0].email: e-mail recipients need escalation.smtp",
        ),
        (
            "customer_notices: {customers: {acme: [{webhook: 'ftp://h/'}]}}\n",
            "customer_notices.customers.acme[0].webhook: not a usable webhook URL",
        ),
        (
            "customer_notices: {customers: {acme: []}}\n",
            "customer_notices.customers.acme: required: a non-empty list",
        ),
    ],
)
def test_bad_keys_and_values_name_the_key_path(tmp_path: Path, text: str, message: str) -> None:
    err = error(tmp_path, text)
    assert message in str(err), str(err)
    assert err.key_path and str(err).startswith(f"{err.source}: {err.key_path}: ")


def test_every_problem_of_a_file_is_reported_not_only_the_first(tmp_path: Path) -> None:
    text = (
        "reopen_windw: 1d\n"
        "auto_confirm: 0s\n"
        "escalation:\n"
        "  steps:\n"
        "    - {trigger: sometimes, recipients: [{webhook: 'http://h/x'}]}\n"
        "    - {trigger: breach, recipients: [{email: not-an-address}]}\n"
        "alertmanager: {default_level: urgent}\n"
    )
    err = error(tmp_path, text)
    message = str(err)
    assert message.startswith(f"{err.source}: 5 problems:"), message
    for key_path in (
        "reopen_windw: unknown key",
        "auto_confirm:",
        "escalation.steps[0].trigger:",
        "escalation.steps[1].recipients[0]",
        "alertmanager.default_level: unknown fault",
    ):
        assert f"\n  {key_path}" in message, message
    assert [p.key_path.split(".")[0] for p in err.problems] == [
        "reopen_windw",
        "auto_confirm",
        "escalation",
        "escalation",
        "alertmanager",
    ]


def test_not_yaml_names_the_line(tmp_path: Path) -> None:
    err = error(tmp_path, "sla:\n  levels: [unclosed\n")
    assert "not valid YAML: line" in str(err)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TicketConfigError, match="cannot read"):
        load_tickets_config(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "must be a mapping" in str(error(tmp_path, "- a\n- b\n"))


def test_trigger_round_trips_through_config(tmp_path: Path) -> None:
    config = load_tickets_config(
        write(
            tmp_path,
            "escalation:\n  steps:\n    - trigger: breach + 0.5h\n"
            "      recipients: [{webhook: 'https://h.example/x'}]\n",
        )
    )
    assert config.escalation.steps[0].trigger == Trigger("breach", 30 * MINUTE_MS)
