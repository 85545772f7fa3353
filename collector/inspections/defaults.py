"""Where the real analysis and renderer plug in, and stand-ins until they exist.

``default_analyse()`` / ``default_render()`` return ``collector.inspections.analysis
.analyse`` and ``collector.inspections.render.render`` when those modules are
installed (the insp-report work), else the minimal stand-ins below: an analysis
that reports every host's outcome with no findings, and a renderer for ``json`` and
``md`` only. The collector logs which it uses.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

from collector.inspections.inputs import InspectionInput

__all__ = ["default_analyse", "default_render", "outcome_only_analyse", "plain_render"]

log = logging.getLogger(__name__)

SCHEMA = "aftercare.inspection-report/1"


def outcome_only_analyse(data: InspectionInput) -> dict[str, Any]:
    """A report document with each host's outcome and no findings (the stand-in)."""
    return {
        "schema": SCHEMA,
        "inspection_id": data.inspection_id,
        "customer": data.customer,
        "customer_name": data.customer_name,
        "engineer": data.engineer,
        "period": {"start_ms": data.period_start_ms, "end_ms": data.period_end_ms},
        "hosts": [
            {
                "agent_id": h.agent_id,
                "hostname": h.hostname,
                "outcome": h.outcome,
                "detail": h.detail,
                "findings": [],
                "drift": [],
                "steps": sorted(h.step_outputs),
            }
            for h in data.hosts
        ],
        "tickets": {"count": len(data.tickets)},
        "recurrence": [],
        "analysis": "outcome-only (the full analysis is not installed)",
    }


def plain_render(report: Mapping[str, Any], fmt: str, lang: str) -> bytes:
    """``json`` (indented) or a short ``md`` listing; ValueError for anything else."""
    if lang not in ("zh-CN", "en"):
        raise ValueError(f"unknown language {lang!r}: use zh-CN or en")
    if fmt == "json":
        return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False).encode()
    if fmt != "md":
        raise ValueError(
            f"format {fmt!r} needs the report renderer (collector/inspections/render.py), "
            "which is not installed: use json or md"
        )
    title = "巡检报告" if lang == "zh-CN" else "Inspection report"
    lines = [f"# {title} #{report.get('inspection_id', '')}", ""]
    lines.append(f"- customer: {report.get('customer', '')}")
    lines.append(f"- engineer: {report.get('engineer', '')}")
    for host in report.get("hosts", []):
        lines.append(f"- {host.get('hostname', '')}: {host.get('outcome', '')}")
    if report.get("summary"):
        lines += ["", str(report["summary"])]
    signoff = report.get("signoff")
    if signoff:
        lines += ["", f"{signoff.get('decision', '')}: {signoff.get('name', '')}"]
    return ("\n".join(lines) + "\n").encode()


def _load(module: str, name: str) -> Callable[..., Any] | None:
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        return None
    return cast(Callable[..., Any], getattr(loaded, name, None))


def default_analyse() -> Callable[[InspectionInput], dict[str, Any]]:
    """The installed analysis, else ``outcome_only_analyse``."""
    found = _load("collector.inspections.analysis", "analyse")
    if found is None:
        log.warning("inspection analysis not installed: reports list host outcomes only")
        return outcome_only_analyse
    return cast(Callable[[InspectionInput], dict[str, Any]], found)


def default_render() -> Callable[[Mapping[str, Any], str, str], bytes]:
    """The installed renderer, else ``plain_render``."""
    found = _load("collector.inspections.render", "render")
    if found is None:
        log.warning("inspection report renderer not installed: json and md only")
        return plain_render
    return cast(Callable[[Mapping[str, Any], str, str], bytes], found)
