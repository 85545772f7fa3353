"""``analyse()``: an inspection's data -> the report document (pure, deterministic).

For every host in scope: its facts (from the "facts" step), capacity trends (from
the metric history), availability, the findings of the recommendation catalogue's
checks - one finding per fault or warning, and an "ok" finding for each checklist
item that was checked and found nothing - and its drift since the previous
inspection. For the customer: the period's ticket and SLA statistics, alerts and
the recurrence of the period's faults. Schema ``aftercare.inspection-report/1``:
docs/inspection-report.md. The inspection service calls ``analyse`` with the
``InspectionInput`` it gathered (collector/inspections/inputs.py) and adds the
summary, publication and sign-off keys to the document it returns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from collector.inspections.capacity import CapacityTrend, capacity_trends
from collector.inspections.catalogue import (
    CatalogueEntry,
    RecommendationCatalogue,
    shipped_catalogue,
)
from collector.inspections.checks import (
    CHECK_FUNCTIONS,
    Availability,
    Hit,
    HostView,
    percent,
    span,
)
from collector.inspections.drift import drift
from collector.inspections.facts import FactsUnavailable, HostFacts, read_facts
from collector.inspections.inputs import HostInput, InspectionInput
from collector.inspections.period import alert_statistics, recurrence, ticket_statistics

__all__ = ["CHECKLIST", "REPORT_SCHEMA", "analyse"]

REPORT_SCHEMA = "aftercare.inspection-report/1"
# the checklist items in report order; their "ok" titles are in the catalogue
CHECKLIST = (
    "host",
    "facts",
    "hardware",
    "software",
    "services",
    "filesystem",
    "memory",
    "time",
    "availability",
)
_FACT_ITEMS = ("facts", "hardware", "software", "services", "time")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def analyse(
    data: InspectionInput, catalogue: RecommendationCatalogue | None = None
) -> dict[str, Any]:
    """The report document without "summary", "published" and "signoff" (see module doc)."""
    rules = catalogue if catalogue is not None else shipped_catalogue()
    hosts = [_host(host, data, rules) for host in data.hosts]
    hosts.sort(key=lambda h: (h["hostname"], h["agent_id"]))
    return {
        "schema": REPORT_SCHEMA,
        "inspection_id": data.inspection_id,
        "customer": data.customer,
        "customer_name": data.customer_name,
        "engineer": data.engineer,
        "period": {"start_ms": data.period_start_ms, "end_ms": data.period_end_ms},
        "config_files": sorted(data.config_files),
        "hosts": hosts,
        "overview": _overview(hosts),
        "tickets": ticket_statistics(data.tickets),
        "alerts": alert_statistics(data.alerts),
        "recurrence": recurrence(data.tickets, hosts),
    }


def _host(host: HostInput, data: InspectionInput, rules: RecommendationCatalogue) -> dict[str, Any]:
    facts, problem = _facts(host.step_outputs if host.outcome == "collected" else None)
    if host.outcome != "collected":
        problem = f"host {host.outcome}"
    trends = capacity_trends(host.history)
    availability = _availability(host, data)
    view = HostView(host, facts, problem, trends, availability, data.period_end_ms)
    findings = _findings(view, rules)
    changes, drift_state = _drift(host, facts)
    return {
        "agent_id": host.agent_id,
        "hostname": host.hostname,
        "outcome": host.outcome,
        "detail": host.detail,
        "run_id": host.run_id,
        "playbook_version": host.playbook_version,
        "facts": _facts_summary(facts, problem),
        "findings": findings,
        "drift": changes,
        "drift_state": drift_state,
        "previous_inspection_id": host.previous_inspection_id,
        "availability": _availability_dict(availability, host),
        "capacity": [trend.as_dict() for trend in trends],
    }


def _facts(outputs: Mapping[str, str] | None) -> tuple[HostFacts | None, str]:
    result = read_facts(outputs)
    if isinstance(result, FactsUnavailable):
        return None, result.reason
    return result, ""


# --- findings ---------------------------------------------------------------------------


def _findings(view: HostView, rules: RecommendationCatalogue) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for check, function in CHECK_FUNCTIONS.items():
        taken: set[str] = set()  # subjects already found by a more severe entry of this check
        for entry in rules.for_check(check):
            for hit in function(view, entry.params):
                if hit.subject not in taken:
                    taken.add(hit.subject)
                    found.append(_finding(entry, hit))
    items_with_findings = {finding["item"] for finding in found}
    for item in CHECKLIST:
        if item not in items_with_findings and _checked(item, view):
            found.append(_ok(item, view, rules))
    order = {item: index for index, item in enumerate(CHECKLIST)}
    found.sort(key=lambda f: (order.get(f["item"], len(order)), f["item"], f["key"]))
    return found


def _finding(entry: CatalogueEntry, hit: Hit) -> dict[str, Any]:
    values = {"subject": hit.subject, **hit.values}
    return {
        "key": f"{entry.id}:{hit.subject}" if hit.subject else entry.id,
        "item": entry.item,
        "state": entry.state,
        "level": entry.level,
        "title": {lang: _fill(text, values) for lang, text in entry.title.items()},
        "evidence": hit.evidence,
        "recommendation": {
            "id": entry.id,
            **{lang: _fill(text, values) for lang, text in entry.recommendation.items()},
        },
    }


def _fill(template: str, values: Mapping[str, str]) -> str:
    """``{name}`` placeholders replaced by ``values`` (unknown names are left as written)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _checked(item: str, view: HostView) -> bool:
    """Whether the data behind ``item`` was there (an unchecked item gets no "ok")."""
    if item == "host":
        return True
    if item in _FACT_ITEMS:
        return view.facts is not None
    if item == "filesystem":
        return view.facts is not None or any(t.resource == "filesystem" for t in view.trends)
    if item == "memory":
        return view.facts is not None or any(t.resource == "memory" for t in view.trends)
    return item == "availability"


def _ok(item: str, view: HostView, rules: RecommendationCatalogue) -> dict[str, Any]:
    return {
        "key": f"{item}.ok",
        "item": item,
        "state": "ok",
        "level": None,
        "title": dict(rules.checklist.get(item) or {"en": item, "zh-CN": item}),
        "evidence": _ok_evidence(item, view),
        "recommendation": None,
    }


def _ok_evidence(item: str, view: HostView) -> list[str]:
    facts = view.facts
    if item == "host":
        run, version = view.host.run_id or "?", view.host.playbook_version or "?"
        return [f"collected (run {run}, playbook {version})"]
    if item == "availability":
        ratio = view.availability.ratio
        connected = "unknown" if ratio is None else percent(ratio)
        return [f"connected {connected} of the period; {view.availability.gap_count} data gaps"]
    if item == "filesystem":
        return _filesystem_evidence(facts, view.trends)
    if item == "memory":
        return _memory_evidence(facts, view.trends)
    if facts is None:
        return []
    if item == "facts":
        return [f"{facts.os or 'unknown OS'}, kernel {facts.kernel or '?'}"] + [
            f"collection problem: {error}" for error in facts.errors[:5]
        ]
    if item == "hardware":
        count = "unknown" if facts.io_errors is None else str(facts.io_errors)
        detail = f" ({facts.kernel_log_detail})" if facts.kernel_log_detail else ""
        return [f"kernel I/O errors in the period: {count}{detail}"]
    if item == "software":
        updates = "unknown" if facts.security_updates is None else str(facts.security_updates)
        packages = "unknown" if facts.packages is None else str(len(facts.packages))
        return [
            f"{packages} packages ({facts.package_manager or 'no package manager'}); "
            f"pending security updates: {updates}; reboot required: "
            + {True: "yes", False: "no", None: "unknown"}[facts.reboot_required]
        ]
    if item == "services":
        if not facts.systemd:
            return ["systemd not available"]
        return [f"{len(facts.enabled_units)} enabled units, none failed"]
    if item == "time":
        offset = "unknown" if facts.time_offset_ms is None else f"{facts.time_offset_ms:.3f} ms"
        state = {True: "synchronised", False: "not synchronised", None: "unknown"}
        return [f"clock {state[facts.time_synchronized]}, offset {offset}"]
    return []


def _filesystem_evidence(facts: HostFacts | None, trends: Sequence[CapacityTrend]) -> list[str]:
    if facts is not None:
        return [
            f"{m.mountpoint}: {percent(m.used_ratio)} used"
            if m.used_ratio is not None
            else f"{m.mountpoint}: not measured ({m.error or 'unknown'})"
            for m in facts.mounts[:20]
        ]
    return [f"{t.subject}: {percent(t.last)} used" for t in trends if t.resource == "filesystem"]


def _memory_evidence(facts: HostFacts | None, trends: Sequence[CapacityTrend]) -> list[str]:
    lines = [
        f"memory used: p95 {percent(t.p95)}, max {percent(t.max)}"
        for t in trends
        if t.resource == "memory"
    ]
    if facts is not None:
        count = "unknown" if facts.oom_kills is None else str(facts.oom_kills)
        lines.append(f"OOM kills in the period: {count}")
    return lines


# --- availability, drift, overview ------------------------------------------------------


def _availability(host: HostInput, data: InspectionInput) -> Availability:
    gaps = [g for g in host.gaps if g.end_ms > g.start_ms]
    return Availability(
        period_ms=max(0, data.period_end_ms - data.period_start_ms),
        connected_ms=max(0, host.connected_ms),
        gap_count=len(gaps),
        gap_ms=sum(g.end_ms - g.start_ms for g in gaps),
    )


def _availability_dict(availability: Availability, host: HostInput) -> dict[str, Any]:
    ratio = availability.ratio
    return {
        "period_ms": availability.period_ms,
        "connected_ms": availability.connected_ms,
        "ratio": None if ratio is None else round(ratio, 6),
        "gaps": availability.gap_count,
        "gap_ms": availability.gap_ms,
        "gap_text": span(availability.gap_ms),
        "gap_list": [
            {"start_ms": g.start_ms, "end_ms": g.end_ms, "reason": g.reason}
            for g in sorted(host.gaps, key=lambda g: g.start_ms)[:20]
        ],
    }


def _drift(host: HostInput, facts: HostFacts | None) -> tuple[list[dict[str, Any]], str]:
    """(changes, state): state "compared", "first" (no previous inspection) or "no data"."""
    if host.previous_step_outputs is None:
        return [], "first"
    before, _ = _facts(host.previous_step_outputs)
    if facts is None or before is None:
        return [], "no data"
    return list(drift(before, facts)), "compared"


def _facts_summary(facts: HostFacts | None, problem: str) -> dict[str, Any]:
    if facts is None:
        return {"available": False, "problem": problem}
    return {
        "available": True,
        "os": facts.os,
        "kernel": facts.kernel,
        "uptime_s": facts.uptime_s,
        "boot_ms": facts.boot_ms,
        "packages": None if facts.packages is None else len(facts.packages),
        "package_manager": facts.package_manager,
        "security_updates": facts.security_updates,
        "reboot_required": facts.reboot_required,
        "errors": list(facts.errors),
    }


def _overview(hosts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    states = {"ok": 0, "warning": 0, "fault": 0}
    outcomes: dict[str, int] = {}
    for host in hosts:
        outcomes[host["outcome"]] = outcomes.get(host["outcome"], 0) + 1
        for finding in host["findings"]:
            states[finding["state"]] += 1
    return {
        "hosts": len(hosts),
        "outcomes": dict(sorted(outcomes.items())),
        "findings": states,
        "drift_changes": sum(len(host["drift"]) for host in hosts),
    }
