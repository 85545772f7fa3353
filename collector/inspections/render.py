"""``render()``: the published report document -> HTML, PDF, Markdown or JSON bytes.

HTML and Markdown come from Jinja2 templates (``templates/``) translated through
gettext-style catalogues (``locales/<lang>/LC_MESSAGES/report.po``, read with
Babel; English is the source language). The PDF is the HTML laid out by
WeasyPrint, with a CJK font (WenQuanYi Micro Hei or Noto Sans CJK, from the system)
embedded. JSON is the canonical document bytes the customer's signature binds.

Everything that comes from hosts (names, units, evidence) is escaped: HTML by
autoescaping, Markdown by writing ``& < >`` as entities and backslash-escaping every
other character Markdown would interpret, so such text is shown, never interpreted.

    RenderError (ValueError)       an unknown format or language; names the bad value.
    PdfLayoutError (RuntimeError)  a PDF worker process failed; carries its last error line.
"""

from __future__ import annotations

import functools
import gettext
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import pypdf

from collector.po_catalogue import CatalogTranslations, read_messages

__all__ = ["FORMATS", "LANGUAGES", "RenderError", "canonical_bytes", "render"]

FORMATS = ("html", "pdf", "md", "json")
LANGUAGES = ("zh-CN", "en")
_PACKAGE = "collector.inspections"
PDF_PART_HOSTS = 50  # hosts detailed per PDF part (bounds one layout's time and memory)
PDF_WORKERS = 2  # processes laying out PDF parts at once
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")
_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_ITEMS = {
    "host": "Host",
    "facts": "Inspection data",
    "hardware": "Hardware",
    "software": "Software",
    "services": "Services",
    "filesystem": "Filesystems",
    "memory": "Memory",
    "time": "Time",
    "availability": "Availability",
}


class RenderError(ValueError):
    """render() was asked for a format or language it does not have."""


class PdfLayoutError(RuntimeError):
    """A worker process could not lay out a part of the PDF (a defect, not bad input)."""


def canonical_bytes(report: Mapping[str, Any]) -> bytes:
    """The document's canonical JSON bytes (what the published report's sha256 is of)."""
    return json.dumps(report, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def render(report: Mapping[str, Any], fmt: str, lang: str) -> bytes:
    """The report in ``fmt`` ("html", "pdf", "md", "json") and ``lang`` ("zh-CN", "en")."""
    if fmt not in FORMATS:
        raise RenderError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    if lang not in LANGUAGES:
        raise RenderError(f"unknown report language {lang!r}: use one of {', '.join(LANGUAGES)}")
    if fmt == "json":
        return canonical_bytes(report)
    if fmt == "md":
        return (
            _environment("md", lang)
            .get_template("report.md.j2")
            .render(_context(report, lang))
            .encode()
        )
    template = _environment("html", lang).get_template("report.html.j2")
    context = _context(report, lang)
    if fmt == "html":
        return template.render(context).encode()
    return _pdf([template.render({**context, **part}) for part in _pdf_parts(context["hosts"])])


def _pdf_parts(hosts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The PDF's parts: the front (overview, recommendations) with the first hosts'
    details, then ``PDF_PART_HOSTS`` hosts' details a part, the last with the back
    (tickets, alerts, recurrence, sign-off)."""
    chunks = [hosts[at : at + PDF_PART_HOSTS] for at in range(0, len(hosts), PDF_PART_HOSTS)]
    chunks = chunks or [[]]
    return [
        {"front": index == 0, "back": index == len(chunks) - 1, "detail_hosts": chunk}
        for index, chunk in enumerate(chunks)
    ]


def _pdf(parts: list[str]) -> bytes:
    """The HTML parts laid out by WeasyPrint and joined into one PDF, in order: a single
    part here, more in ``PDF_WORKERS`` worker processes, each given a run of
    consecutive parts."""
    if len(parts) == 1:
        return pdf_of_html(parts[0])
    workers = min(PDF_WORKERS, len(parts), os.cpu_count() or 1)
    runs = [
        parts[len(parts) * n // workers : len(parts) * (n + 1) // workers] for n in range(workers)
    ]
    with ThreadPoolExecutor(workers, thread_name_prefix="report-pdf") as pool:
        return join_pdfs(list(pool.map(_pdf_in_process, runs)))


def _pdf_in_process(parts: list[str]) -> bytes:
    """``parts`` laid out and joined by ``python -m collector.inspections.pdf_worker``."""
    done = subprocess.run(
        [sys.executable, "-m", "collector.inspections.pdf_worker"],
        input=json.dumps(parts).encode(),
        env=_worker_environment(),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise PdfLayoutError(
            f"the PDF could not be laid out: {reason[-1] if reason else done.returncode}"
        )
    return done.stdout


def _worker_environment() -> dict[str, str]:
    """This environment, with the directory this ``collector`` package is in first on
    PYTHONPATH: the worker imports the same code however the collector was started."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, path]))}


def pdf_of_html(html: str) -> bytes:
    """One HTML document laid out as PDF, loading nothing from outside (runs in a
    worker process)."""
    import weasyprint  # imported here: only the PDF needs it, and it loads Pango

    document: bytes = weasyprint.HTML(string=html, url_fetcher=_fetch_nothing).write_pdf()
    return document


def join_pdfs(documents: list[bytes]) -> bytes:
    """The PDF documents' pages in order, as one PDF with the first one's metadata."""
    if len(documents) == 1:
        return documents[0]
    writer = pypdf.PdfWriter()
    readers = [pypdf.PdfReader(io.BytesIO(document)) for document in documents]
    for reader in readers:
        writer.append(reader)
    if readers[0].metadata:
        writer.add_metadata(dict(readers[0].metadata))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _fetch_nothing(url: str, *args: object, **kwargs: object) -> dict[str, Any]:
    """The report is self-contained: WeasyPrint may not read files or the network."""
    raise ValueError(f"the inspection report loads no resources ({url[:80]})")


# --- templates and translations ---------------------------------------------------------


@functools.cache
def _translations(lang: str) -> gettext.NullTranslations:
    if lang == "en":
        return gettext.NullTranslations()
    folder = lang.replace("-", "_")
    path = f"locales/{folder}/LC_MESSAGES/report.po"
    return CatalogTranslations(read_messages(_PACKAGE, path, folder))


@functools.cache
def _environment(kind: str, lang: str) -> jinja2.Environment:
    loader = jinja2.PackageLoader(_PACKAGE, "templates")
    if kind == "html":
        env = jinja2.Environment(
            loader=loader,
            autoescape=True,
            extensions=["jinja2.ext.i18n"],
            undefined=jinja2.ChainableUndefined,
        )
    else:
        env = jinja2.Environment(
            loader=loader,
            autoescape=False,
            finalize=markdown_escape,
            extensions=["jinja2.ext.i18n"],
            undefined=jinja2.ChainableUndefined,
        )
    translations = _translations(lang)
    env.install_gettext_callables(  # type: ignore[attr-defined]
        translations.gettext, translations.ngettext, newstyle=True
    )
    env.filters.update(_filters(lang))
    env.filters["label"] = lambda value: translations.gettext(str(value or ""))
    return env


def markdown_escape(value: object) -> str:
    """``value`` as Markdown text: one line, every Markdown/HTML special character escaped."""
    if value is None:
        return "—"
    text = " ".join(str(value).split())
    text = re.sub(r"[&<>]", lambda m: _MD_ENTITIES[m.group(0)], text)
    return _MD_SPECIAL.sub(r"\\\1", text)


def _filters(lang: str) -> dict[str, Callable[..., Any]]:
    return {
        "tr": lambda texts: _pick(texts, lang),
        "when": _when,
        "day": _day,
        "pct": _pct,
        "dur": _duration,
        "num": lambda value, digits=2: "—" if value is None else f"{value:.{digits}f}",
        "css_string": css_string,
    }


def css_string(value: object) -> str:
    """``value`` as a quoted CSS string: every character but letters and digits written
    as a CSS escape, so no text can end the string or the style sheet."""
    text = " ".join(str(value or "").split())
    quoted = "".join(c if c.isalnum() and c.isascii() else f"\\{ord(c):x} " for c in text)
    return markupsafe.Markup(f'"{quoted}"')  # letters, digits, escapes: nothing to escape


def _pick(texts: object, lang: str) -> str:
    if isinstance(texts, Mapping):
        return str(texts.get(lang) or texts.get("en") or "")
    return "" if texts is None else str(texts)


def _when(ms: object) -> str:
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _day(ms: object) -> str:
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def _pct(ratio: object) -> str:
    if not isinstance(ratio, int | float) or isinstance(ratio, bool):
        return "—"
    return f"{ratio * 100:.1f}%"


def _duration(ms: object) -> str:
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "—"
    minutes = ms // 60000
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 2 * 1440:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} d"


# --- the context the templates see -------------------------------------------------------


def _context(report: Mapping[str, Any], lang: str) -> dict[str, Any]:
    hosts = [_host(h) for h in _list(report.get("hosts"))]
    return {
        "lang": lang,
        "report": report,
        "customer": str(report.get("customer_name") or report.get("customer") or ""),
        "customer_id": str(report.get("customer") or ""),
        "inspection_id": str(report.get("inspection_id") or ""),
        "engineer": str(report.get("engineer") or ""),
        "period": _dict(report.get("period")),
        "summary": str(report.get("summary") or ""),
        "summary_lines": [
            line for line in str(report.get("summary") or "").splitlines() if line.strip()
        ],
        "published": _dict(report.get("published")),
        "signoff": _dict(report.get("signoff")) or None,
        "hosts": hosts,
        "detail_hosts": hosts,
        "front": True,
        "back": True,
        "overview": _dict(report.get("overview")),
        "tickets": _dict(report.get("tickets")),
        "alerts": _dict(report.get("alerts")),
        "recurrence": [_dict(r) for r in _list(report.get("recurrence"))],
        "recommendations": _recommendations(hosts, lang),
        "items": _ITEMS,
    }


def _host(raw: object) -> dict[str, Any]:
    host = _dict(raw)
    findings = [_dict(f) for f in _list(host.get("findings"))]
    drift = [_dict(d) for d in _list(host.get("drift"))]
    return {
        **host,
        "hostname": str(host.get("hostname") or host.get("agent_id") or "?"),
        "findings": findings,
        "faults": sum(1 for f in findings if f.get("state") == "fault"),
        "warnings": sum(1 for f in findings if f.get("state") == "warning"),
        "drift": drift,
        "drift_groups": _drift_groups(drift),
        "capacity": [_dict(c) for c in _list(host.get("capacity"))],
        "availability": _dict(host.get("availability")),
    }


def _drift_groups(drift: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changes grouped by kind, in the document's order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for change in drift:
        groups.setdefault(str(change.get("kind", "")), []).append(change)
    return [{"kind": kind, "changes": changes} for kind, changes in groups.items()]


def _recommendations(hosts: list[dict[str, Any]], lang: str) -> list[dict[str, Any]]:
    """Each distinct recommendation text with the hosts it concerns, most severe first."""
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for host in hosts:
        for finding in host["findings"]:
            recommendation = _dict(finding.get("recommendation"))
            if not recommendation:
                continue
            text = _pick(recommendation, lang)
            entry = grouped.setdefault(
                (str(recommendation.get("id")), text),
                {
                    "id": recommendation.get("id"),
                    "text": text,
                    "state": finding.get("state"),
                    "hosts": [],
                },
            )
            if host["hostname"] not in entry["hosts"]:
                entry["hosts"].append(host["hostname"])
    return sorted(grouped.values(), key=lambda e: (e["state"] != "fault", str(e["id"]), e["text"]))


def _dict(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []
