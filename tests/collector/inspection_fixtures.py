"""Builders of inspection data for the analysis and report tests and the benchmark.

``facts_document(**changes)`` is a healthy host's facts document (as the agent's
``inspection_facts`` prints it) with top-level keys replaced; ``history`` builds
metric series; ``inspection(...)`` wraps hosts and tickets into an InspectionInput.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from collector.history.model import HistoryPoint, HistorySeries
from collector.inspections.inputs import (
    AlertSummary,
    HostInput,
    InspectionInput,
    TicketSummary,
)

DAY_MS = 86_400_000
FIVE_MIN_MS = 300_000
END_MS = 1_796_000_000_000  # 2026-11-29
START_MS = END_MS - 90 * DAY_MS


def facts_document(**changes: Any) -> dict[str, Any]:
    """A healthy host's facts, with ``changes`` replacing top-level keys."""
    document: dict[str, Any] = {
        "schema": "aftercare.inspection-facts/1",
        "hostname": "web-1",
        "os": "Debian GNU/Linux 12 (bookworm)",
        "kernel": "6.1.0-26-amd64",
        "uptime_s": 864000.0,
        "boot_ms": END_MS - 10 * DAY_MS,
        "reboot_required": False,
        "packages": {
            "manager": "dpkg",
            "items": {"openssl": "3.0.15-1~deb12u1", "nginx": "1.22.1-9", "bash": "5.2.15-2+b7"},
            "count": 3,
            "truncated": False,
        },
        "security_updates": {"state": "known", "count": 0, "source": "update-notifier"},
        "units": {
            "systemd": True,
            "enabled": ["nginx.service", "ssh.service"],
            "failed": [],
        },
        "listening": [
            {"proto": "tcp", "address": "0.0.0.0", "port": 22, "process": "sshd"},
            {"proto": "tcp", "address": "0.0.0.0", "port": 80, "process": "nginx"},
        ],
        "mounts": [
            {
                "mountpoint": "/",
                "device": "/dev/vda1",
                "fstype": "ext4",
                "size_bytes": 100 * 2**30,
                "used_bytes": 40 * 2**30,
                "inodes": 6_000_000,
                "inodes_used": 300_000,
            }
        ],
        "time_sync": {"synchronized": True, "offset_ms": 0.25},
        "kernel_log": {
            "readable": True,
            "since_s": 92 * 86400.0,
            "oom_kills": 0,
            "io_errors": 0,
            "oom_kills_since_boot": 0,
            "detail": "",
        },
        "config_files": {"/etc/nginx/nginx.conf": {"sha256": "a" * 64}},
        "errors": [],
    }
    document.update(changes)
    return document


def facts_output(document: dict[str, Any] | None = None) -> dict[str, str]:
    """Step outputs holding ``document`` (default: healthy facts) as the "facts" step."""
    return {"facts": json.dumps(document or facts_document()) + "\n", "system summary": "x\n"}


def series(
    name: str,
    values: Sequence[float],
    *,
    labels: dict[str, str] | None = None,
    start_ms: int = START_MS,
    step_ms: int = FIVE_MIN_MS,
) -> HistorySeries:
    points = [
        HistoryPoint(start_ms + index * step_ms, step_ms, 10, value, value, value)
        for index, value in enumerate(values)
    ]
    return HistorySeries(name, labels or {}, points)


def linear(first: float, last: float, count: int) -> list[float]:
    return [first + (last - first) * index / (count - 1) for index in range(count)]


def host(
    name: str = "web-1",
    *,
    outcome: str = "collected",
    facts: dict[str, Any] | None = None,
    outputs: dict[str, str] | None = None,
    previous: dict[str, Any] | None = None,
    history: dict[str, Sequence[HistorySeries]] | None = None,
    **extra: Any,
) -> HostInput:
    """A host; ``facts`` is its facts document (healthy when None), ``previous`` the
    previous inspection's (no previous inspection when None)."""
    collected = outcome == "collected"
    return HostInput(
        agent_id=extra.pop("agent_id", f"agent-{name}"),
        hostname=name,
        outcome=outcome,  # type: ignore[arg-type]
        run_id="run-1" if collected else None,
        playbook_version="1.1.0",
        step_outputs=(outputs if outputs is not None else facts_output(facts)) if collected else {},
        previous_step_outputs=facts_output(previous) if previous is not None else None,
        previous_inspection_id="insp-0" if previous is not None else None,
        history=history or {},
        connected_ms=extra.pop("connected_ms", END_MS - START_MS),
        **extra,
    )


def ticket(ticket_id: int, **changes: Any) -> TicketSummary:
    values: dict[str, Any] = {
        "id": ticket_id,
        "level": "3",
        "title": "Filesystem / on web-1 is 93% full",
        "state": "closed",
        "source": "rule",
        "hostname": "web-1",
        "created_ms": START_MS + 10 * DAY_MS,
        "acknowledged_ms": START_MS + 10 * DAY_MS + 600_000,
        "resolved_ms": START_MS + 10 * DAY_MS + 3_600_000,
        "closed_ms": START_MS + 11 * DAY_MS,
        "response_due_ms": START_MS + 10 * DAY_MS + 7_200_000,
        "resolution_due_ms": START_MS + 12 * DAY_MS,
        "response_met": True,
        "resolution_met": True,
        "rule": "filesystem_almost_full",
        "dedup_key": "web-1|filesystem_almost_full|mountpoint=/",
    }
    values.update(changes)
    return TicketSummary(**values)


def inspection(
    hosts: Sequence[HostInput],
    tickets: Sequence[TicketSummary] = (),
    alerts: Sequence[AlertSummary] = (),
) -> InspectionInput:
    return InspectionInput(
        inspection_id="insp-1",
        customer="acme",
        customer_name="ACME 有限公司",
        period_start_ms=START_MS,
        period_end_ms=END_MS,
        engineer="erin",
        hosts=hosts,
        tickets=tickets,
        alerts=alerts,
        config_files=("/etc/nginx/nginx.conf",),
    )
