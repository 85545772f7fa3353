"""analyse(): findings of every catalogue rule (firing and quiet), facts read defensively,
ticket statistics, recurrence, determinism."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from collector.inspections.analysis import CHECKLIST, analyse
from collector.inspections.catalogue import (
    CHECKS,
    CatalogueError,
    load_catalogue,
    shipped_catalogue,
)
from collector.inspections.inputs import GapSummary, HostInput
from collector.inspections.render import canonical_bytes
from tests.collector.inspection_fixtures import (
    DAY_MS,
    END_MS,
    START_MS,
    facts_document,
    host,
    inspection,
    linear,
    series,
    ticket,
)

POINTS = 90 * 288  # 90 days of 5-minute buckets


def report_of(*hosts: HostInput, **kwargs: Any) -> dict[str, Any]:
    return analyse(inspection(hosts, **kwargs))


def findings(one: HostInput) -> dict[str, dict[str, Any]]:
    return {f["key"]: f for f in report_of(one)["hosts"][0]["findings"]}


def not_ok(one: HostInput) -> dict[str, dict[str, Any]]:
    return {key: f for key, f in findings(one).items() if f["state"] != "ok"}


def fs_history(first: float, last: float) -> dict[str, list[Any]]:
    values = linear(first, last, POINTS)
    return {
        "filesystem_used_ratio": [
            series("filesystem_used_ratio", values, labels={"mountpoint": "/var"})
        ]
    }


def mount(mountpoint: str, used: float, inodes_used: float = 0.05) -> dict[str, Any]:
    return {
        "mountpoint": mountpoint,
        "device": "/dev/vdb1",
        "fstype": "xfs",
        "size_bytes": 1000,
        "used_bytes": int(used * 1000),
        "inodes": 1000,
        "inodes_used": int(inodes_used * 1000),
    }


def kernel_log(oom: int = 0, io: int = 0) -> dict[str, Any]:
    return {"readable": True, "since_s": 1.0, "oom_kills": oom, "io_errors": io, "detail": ""}


def test_a_healthy_host_has_one_ok_finding_per_checklist_item() -> None:
    report = report_of(host())
    entry = report["hosts"][0]
    assert [f["item"] for f in entry["findings"]] == list(CHECKLIST)
    assert {f["state"] for f in entry["findings"]} == {"ok"}
    assert all(f["recommendation"] is None for f in entry["findings"])
    assert report["schema"] == "aftercare.inspection-report/1"
    assert report["overview"]["findings"] == {"ok": len(CHECKLIST), "warning": 0, "fault": 0}
    assert report["period"] == {"start_ms": START_MS, "end_ms": END_MS}
    assert (report["customer"], report["engineer"]) == ("acme", "erin")


# Each rule: a host where it fires (key, state, level) and one where it stays quiet.
RULES: list[tuple[str, dict[str, Any], dict[str, Any], str, str, str | None]] = [
    (
        "filesystem_predicted_full",
        {"history": fs_history(0.5, 0.8)},  # +0.33 %/day: full in ~60 days
        {"history": fs_history(0.5, 0.52)},  # full in years
        "filesystem.predicted_full:/var",
        "fault",
        "3",
    ),
    (
        "filesystem_usage",
        {"facts": facts_document(mounts=[mount("/srv", 0.9)])},
        {"facts": facts_document(mounts=[mount("/srv", 0.5)])},
        "filesystem.usage_high:/srv",
        "warning",
        None,
    ),
    (
        "filesystem_inodes",
        {"facts": facts_document(mounts=[mount("/srv", 0.1, inodes_used=0.95)])},
        {"facts": facts_document(mounts=[mount("/srv", 0.1, inodes_used=0.5)])},
        "filesystem.inodes_high:/srv",
        "warning",
        None,
    ),
    (
        "failed_units",
        {
            "facts": facts_document(
                units={"systemd": True, "enabled": [], "failed": ["backup.service"]}
            )
        },
        {
            "facts": facts_document(
                units={"systemd": True, "enabled": ["backup.service"], "failed": []}
            )
        },
        "units.failed:backup.service",
        "fault",
        "3",
    ),
    (
        "kernel_io_errors",
        {"facts": facts_document(kernel_log=kernel_log(io=4))},
        {"facts": facts_document(kernel_log=kernel_log(io=0))},
        "kernel.io_errors",
        "fault",
        "2",
    ),
    (
        "oom_kills",
        {"facts": facts_document(kernel_log=kernel_log(oom=2))},
        {"facts": facts_document(kernel_log=kernel_log(oom=0))},
        "memory.oom_kills",
        "fault",
        "3",
    ),
    (
        "memory_high",
        {"history": {"memory_used_ratio": [series("memory_used_ratio", [0.95] * 500)]}},
        {
            "history": {
                "memory_used_ratio": [series("memory_used_ratio", [0.5] * 480 + [0.99] * 20)]
            }
        },
        "memory.high",
        "warning",
        None,
    ),
    (
        "clock_unsynchronised",
        {"facts": facts_document(time_sync={"synchronized": False, "offset_ms": 900.0})},
        {"facts": facts_document(time_sync={"synchronized": None, "offset_ms": None})},
        "time.unsynchronised",
        "fault",
        "4",
    ),
    (
        "reboot_required",
        {"facts": facts_document(reboot_required=True)},
        {"facts": facts_document(reboot_required=False)},
        "system.reboot_required",
        "warning",
        None,
    ),
    (
        "security_updates",
        {"facts": facts_document(security_updates={"state": "known", "count": 5})},
        {"facts": facts_document(security_updates={"state": "unknown", "count": None})},
        "packages.security_updates",
        "warning",
        None,
    ),
    (
        "host_unreachable",
        {"outcome": "refused", "detail": "policy refuses quarterly-inspection"},
        {"outcome": "collected"},
        "host.unreachable",
        "fault",
        "3",
    ),
    (
        "data_gaps",
        {"gaps": [GapSummary(START_MS + DAY_MS, START_MS + DAY_MS + 3 * 3600_000, "spool full")]},
        {"gaps": [GapSummary(START_MS + DAY_MS, START_MS + DAY_MS + 600_000, "restart")]},
        "availability.data_gaps",
        "warning",
        None,
    ),
    (
        "no_facts",
        {"outputs": {"system summary": "text"}},
        {"outcome": "offline"},  # an offline host is "unreachable", not "no data"
        "facts.no_data",
        "warning",
        None,
    ),
]


def test_every_check_of_the_catalogue_is_covered_here() -> None:
    assert {rule[0] for rule in RULES} == set(CHECKS)


@pytest.mark.parametrize(
    ("check", "firing", "quiet", "key", "state", "level"), RULES, ids=[r[0] for r in RULES]
)
def test_rule_fires_and_stays_quiet(
    check: str,
    firing: dict[str, Any],
    quiet: dict[str, Any],
    key: str,
    state: str,
    level: str | None,
) -> None:
    fired = not_ok(host(**firing))
    assert key in fired, fired.keys()
    finding = fired[key]
    assert (finding["state"], finding["level"]) == (state, level)
    assert finding["evidence"] and all(isinstance(line, str) for line in finding["evidence"])
    assert finding["title"]["en"] and finding["title"]["zh-CN"]
    assert "{" not in finding["title"]["en"] + finding["title"]["zh-CN"], "placeholders filled"
    assert finding["recommendation"]["id"] == key.split(":")[0]
    assert key not in findings(host(**quiet))


def test_predicted_full_gives_the_date_and_growth() -> None:
    entry = report_of(host(history=fs_history(0.5, 0.8)))["hosts"][0]
    trend = entry["capacity"][0]
    assert trend["resource"] == "filesystem" and trend["subject"] == "/var"
    assert trend["growth_per_day"] == pytest.approx(0.3 / 90, rel=0.01)
    assert trend["predicted_full_ms"] == pytest.approx(END_MS + 60 * DAY_MS, abs=DAY_MS)
    finding = {f["key"]: f for f in entry["findings"]}["filesystem.predicted_full:/var"]
    assert "2027-01-2" in finding["title"]["en"]  # ~60 days after 2026-11-29


def test_capacity_p95_and_max_over_the_period() -> None:
    values = [0.1] * 90 + [0.5] * 9 + [0.9]
    history = {
        "memory_used_ratio": [series("memory_used_ratio", values)],
        "load_average": [
            series("load_average", [2.0] * 10, labels={"period": "5m"}),
            series("load_average", [9.0] * 10, labels={"period": "1m"}),
        ],
    }
    capacity = report_of(host(history=history))["hosts"][0]["capacity"]
    assert [(c["resource"], c["p95"], c["max"]) for c in capacity] == [
        ("memory", 0.5, 0.9),
        ("load", 2.0, 2.0),
    ]
    assert capacity[0]["predicted_full_ms"] is None


@pytest.mark.parametrize(
    "outputs",
    [
        {},
        {"facts": ""},
        {"facts": "not json at all"},
        {"facts": '{"schema": "aftercare.inspection-facts/1", "packages": {"items": '},  # cut
        {"facts": '["a list"]'},
        {"facts": '{"schema": "something/else"}'},
    ],
)
def test_missing_or_malformed_facts_say_no_data(outputs: dict[str, str]) -> None:
    entry = report_of(host(outputs=outputs))["hosts"][0]
    keys = {f["key"]: f for f in entry["findings"]}
    assert keys["facts.no_data"]["state"] == "warning"
    assert keys["facts.no_data"]["title"]["en"].startswith("No data: ")
    assert keys["facts.no_data"]["title"]["zh-CN"].startswith("无数据")
    assert entry["facts"]["available"] is False
    assert {f["item"] for f in entry["findings"]} == {"host", "facts", "availability"}


def test_facts_with_values_of_the_wrong_type_are_unknown_not_a_crash() -> None:
    broken = facts_document(
        packages="many",
        units={"enabled": "all", "failed": [1, None, "x.service"]},
        mounts=[1, {"mountpoint": 5}, {"mountpoint": "/ok", "size_bytes": "big"}],
        listening=[{"port": "22"}],
        kernel_log=[],
        time_sync=None,
        security_updates={"state": "known", "count": "3"},
        config_files={"/etc/x": "abc"},
    )
    entry = report_of(host(facts=broken))["hosts"][0]
    keys = {f["key"] for f in entry["findings"]}
    assert "units.failed:x.service" in keys
    assert "packages.security_updates" not in keys
    json.dumps(entry)


def test_an_extension_adds_a_stricter_rule_and_one_finding_per_subject(tmp_path: Path) -> None:
    extension = tmp_path / "site.yaml"
    extension.write_text(
        """
entries:
  - id: filesystem.usage_critical
    check: filesystem_usage
    item: filesystem
    state: fault
    level: "2"
    params: {above: 0.95}
    title: {en: "{subject} nearly full ({percent})", zh-CN: "{subject} 即将写满 {percent}"}
    recommendation: {en: "Act now on {subject}.", zh-CN: "立即处理 {subject}。"}
  - id: system.reboot_required
    check: reboot_required
    item: software
    state: fault
    level: "4"
    title: {en: "Reboot overdue", zh-CN: "重启已逾期"}
    recommendation: {en: "Reboot.", zh-CN: "重启。"}
"""
    )
    catalogue = load_catalogue(extension)
    facts = facts_document(mounts=[mount("/a", 0.97), mount("/b", 0.9)], reboot_required=True)
    report = analyse(inspection([host(facts=facts)]), catalogue)
    found = {f["key"]: f for f in report["hosts"][0]["findings"] if f["state"] != "ok"}
    assert found["filesystem.usage_critical:/a"]["level"] == "2"
    assert found["filesystem.usage_critical:/a"]["title"]["en"] == "/a nearly full (97.0%)"
    assert "filesystem.usage_high:/a" not in found  # the stricter entry took it
    assert found["filesystem.usage_high:/b"]["state"] == "warning"
    assert found["system.reboot_required"]["state"] == "fault"  # replaced by id
    assert len(catalogue.entries) == len(shipped_catalogue().entries) + 1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("entries: [{id: x, check: nope}]", "check must be one of"),
        (
            "entries: [{id: x, check: reboot_required, item: i, state: warning, level: '3'}]",
            "level",
        ),
        (
            "entries: [{id: x, check: oom_kills, item: i, state: fault, level: '3',"
            " params: {above: 1}}]",
            "no parameter 'above'",
        ),
        (
            "entries: [{id: x, check: reboot_required, item: i, state: warning, title: {en: a}}]",
            "title must have exactly the keys en, zh-CN",
        ),
        ("entries: {}", "'entries' list"),
        ("[: nope", "not valid YAML"),
        ("checklist: {made_up: {en: a, zh-CN: b}}", "not checklist items"),
    ],
)
def test_a_bad_extension_is_refused_with_the_reason(
    tmp_path: Path, text: str, problem: str
) -> None:
    extension = tmp_path / "bad.yaml"
    extension.write_text(text)
    with pytest.raises(CatalogueError, match=problem) as caught:
        load_catalogue(extension)
    assert str(extension) in str(caught.value)


def test_a_missing_extension_is_refused() -> None:
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(Path("/nonexistent/catalogue.yaml"))


def test_offline_hosts_are_listed_with_what_the_collector_knows() -> None:
    report = report_of(
        host("web-1"),
        host(
            "db-1", outcome="offline", detail="last seen 3 days ago", history=fs_history(0.5, 0.8)
        ),
    )
    db = next(h for h in report["hosts"] if h["hostname"] == "db-1")
    keys = {f["key"]: f for f in db["findings"]}
    assert keys["host.unreachable"]["evidence"] == [
        "outcome: offline",
        "detail: last seen 3 days ago",
    ]
    assert "filesystem.predicted_full:/var" in keys  # from the collector's own history
    assert "facts.no_data" not in keys
    assert report["overview"]["outcomes"] == {"collected": 1, "offline": 1}


def test_analysis_is_deterministic_and_json() -> None:
    hosts = [
        host(
            "b", facts=facts_document(reboot_required=True), previous=facts_document(kernel="6.0")
        ),
        host("a", history=fs_history(0.2, 0.9)),
    ]
    first = analyse(inspection(hosts, tickets=[ticket(1)]))
    second = analyse(inspection(list(reversed(hosts)), tickets=[ticket(1)]))
    assert canonical_bytes(first) == canonical_bytes(second)
    assert [h["hostname"] for h in first["hosts"]] == ["a", "b"]
    assert json.loads(canonical_bytes(first)) == first


# --- tickets, SLA, recurrence -------------------------------------------------------------


def test_ticket_statistics_by_level() -> None:
    tickets = [
        ticket(1),  # level 3, resolved in 1 h, both SLAs met
        ticket(2, level="3", resolved_ms=START_MS + 12 * DAY_MS, resolution_met=False),
        ticket(
            3, level="1", resolved_ms=None, closed_ms=None, response_met=False, resolution_met=None
        ),
        ticket(4, level="consult", rule=None, dedup_key=None),
    ]
    stats = report_of(host(), tickets=tickets)["tickets"]
    rows = {row["level"]: row for row in stats["by_level"]}
    assert [row["level"] for row in stats["by_level"]] == ["1", "2", "3", "4", "consult", "other"]
    assert (rows["3"]["count"], rows["3"]["resolved"], rows["3"]["open"]) == (2, 2, 0)
    assert rows["3"]["resolution"] == {"met": 1, "breached": 1, "pending": 0}
    assert rows["3"]["resolve_ms"]["median"] == 3_600_000
    assert rows["3"]["resolve_ms"]["max"] == 2 * DAY_MS
    assert rows["1"]["response"] == {"met": 0, "breached": 1, "pending": 0}
    assert rows["1"]["resolution"] == {"met": 0, "breached": 0, "pending": 1}
    assert rows["1"]["open"] == 1 and rows["2"]["count"] == 0
    assert stats["total"] == 4 and [t["id"] for t in stats["list"]] == [1, 2, 3, 4]


def test_recurrence_found_by_this_inspection() -> None:
    report = report_of(host(facts=facts_document(mounts=[mount("/", 0.92)])), tickets=[ticket(7)])
    (entry,) = report["recurrence"]
    assert (entry["ticket_id"], entry["recurred"], entry["rechecked"]) == (7, True, True)
    assert "found again by this inspection" in entry["evidence"]


def test_no_recurrence_when_the_inspection_finds_it_ok() -> None:
    (entry,) = report_of(host(), tickets=[ticket(7)])["recurrence"]
    assert (entry["recurred"], entry["rechecked"]) == (False, True)
    assert "not found again" in entry["evidence"]


def test_recurrence_from_a_later_ticket_with_the_same_key() -> None:
    later = ticket(8, created_ms=START_MS + 30 * DAY_MS, resolved_ms=None, state="open")
    entries = report_of(host(), tickets=[ticket(7), later])["recurrence"]
    assert [(e["ticket_id"], e["recurred"]) for e in entries] == [(7, True)]
    assert "#8" in entries[0]["evidence"]


def test_recurrence_of_an_inspection_finding_matches_its_key() -> None:
    old = ticket(9, rule=None, dedup_key="inspection:agent-web-1:units.failed:backup.service")
    failing = facts_document(units={"systemd": True, "enabled": [], "failed": ["backup.service"]})
    (entry,) = report_of(host(facts=failing), tickets=[old])["recurrence"]
    assert entry["recurred"] is True
    (entry,) = report_of(host(), tickets=[old])["recurrence"]
    assert entry["recurred"] is False


def test_recurrence_cannot_be_rechecked_on_a_host_not_inspected() -> None:
    (entry,) = report_of(host(outcome="offline"), tickets=[ticket(7)])["recurrence"]
    assert (entry["recurred"], entry["rechecked"]) == (False, False)
    (entry,) = report_of(host("other"), tickets=[ticket(7)])["recurrence"]
    assert entry["rechecked"] is False


def test_open_and_non_fault_tickets_are_not_rechecked() -> None:
    tickets = [ticket(1, resolved_ms=None), ticket(2, level="consult")]
    assert report_of(host(), tickets=tickets)["recurrence"] == []


def test_the_collector_refuses_a_bad_catalogue_extension_at_start(tmp_path: Path) -> None:
    from collector.config import ServeConfig
    from collector.errors import ConfigError

    extension = tmp_path / "site.yaml"
    extension.write_text("entries: [{id: x, check: nope}]")
    with pytest.raises(ConfigError, match=r"--inspection-catalogue: .*check must be one of"):
        ServeConfig(data_dir=tmp_path, inspection_catalogue=extension).validate()
    extension.write_text("checklist: {time: {en: Clock fine, zh-CN: 时钟正常}}")
    config = ServeConfig(data_dir=tmp_path, inspection_catalogue=extension).validate()
    assert load_catalogue(config.inspection_catalogue).checklist["time"]["en"] == "Clock fine"


def test_the_agents_real_facts_are_understood() -> None:
    import time

    from agent.playbook.builtins import default_builtins

    output = default_builtins()["inspection_facts"](time.monotonic() + 60, since="1d")
    entry = report_of(host(outputs={"facts": output.decode()}))["hosts"][0]
    assert entry["facts"]["available"] is True
    assert {"host", "facts", "software", "filesystem"} <= {f["item"] for f in entry["findings"]}
    assert "facts.no_data" not in {f["key"] for f in entry["findings"]}
