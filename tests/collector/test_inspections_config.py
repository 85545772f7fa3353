"""The inspections configuration: every key read, every mistake named."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from collector.inspections.config import (
    InspectionsConfig,
    inspections_config_from_mapping,
    load_inspections_config,
)
from collector.inspections.errors import InspectionConfigError
from collector.tickets.escalation import Recipient

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "inspections.example.yaml"


def test_defaults_without_a_file() -> None:
    config = load_inspections_config(None)
    assert config == InspectionsConfig()
    assert config.calendar.timezone == "Asia/Shanghai" and config.run_timeout_ms == 15 * 60_000
    assert config.announce_to("acme") == ()


def test_the_shipped_example_uses_every_key() -> None:
    config = load_inspections_config(EXAMPLE)
    assert dt.date(2027, 10, 1) in config.calendar.holidays
    assert config.calendar.extra_working_days
    assert config.announce_to("acme") and config.late_report
    assert config.playbook == "quarterly-inspection" and config.run_timeout_ms == 20 * 60_000


def test_recipients_are_parsed() -> None:
    config = inspections_config_from_mapping(
        {
            "announce": {"acme": [{"webhook": "https://h.example/x"}, {"email": "ops@acme.cn"}]},
            "late_report": {"recipients": [{"email": "lead@vendor.example"}]},
        }
    )
    assert config.announce_to("acme") == (
        Recipient("webhook", "https://h.example/x"),
        Recipient("email", "ops@acme.cn"),
    )


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"holidays": []}, "unknown key 'holidays'"),
        ({"calendar": {"holidays": ["2027-13-01"]}}, "calendar"),
        ({"calendar": {"timezone": "Mars/Olympus"}}, "calendar"),
        ({"run_timeout": "1s"}, "run_timeout"),
        ({"announce": {"acme": [{"webhook": "ftp://x"}]}}, "announce.acme[0].webhook"),
        ({"announce": {"acme": [{"email": "nobody"}]}}, "announce.acme[0].email"),
        ({"late_report": {"recipients": "lead"}}, "late_report.recipients"),
        ({"playbook": ""}, "playbook"),
    ],
)
def test_mistakes_name_the_key(data: object, where: str) -> None:
    with pytest.raises(InspectionConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
        inspections_config_from_mapping(data)


def test_a_bad_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "inspections.yaml"
    path.write_text("run_timeout: [\n")
    with pytest.raises(InspectionConfigError, match=r"inspections\.yaml"):
        load_inspections_config(path)
    with pytest.raises(InspectionConfigError, match="cannot read"):
        load_inspections_config(tmp_path / "missing.yaml")
