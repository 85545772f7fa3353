"""The fault analysis report (故障分析报告): drafted from a ticket's timeline.

``draft_report`` gathers everything the service commitments ask of the report — the
onset and its key metrics, what happened (every timeline event), the diagnostics
attached, the actions, cause and prevention, the SLA figures and how the ticket was
closed — into a ``Report`` that renders as Markdown, as a small self-contained HTML
page (every piece of text escaped), or as a JSON-ready dict that ``Report.from_dict``
reads back.

What it reads from the timeline (so other features know what to write):

- the first ``opened`` event: its time is the onset; its details other than
  title/level/source are the key metrics at onset (``value``, ``threshold``,
  ``labels``, ``annotations``, …);
- ``diagnostics`` events: ``playbook`` (or ``name``), ``status`` (or ``exit_code``),
  ``output`` (or ``excerpt``) and ``truncated``; the output is cut to
  ``EXCERPT_LINES`` lines / ``EXCERPT_CHARS`` characters;
- ``confirmed`` / ``closed`` events for the closing; every event for the timeline.

``extras`` (optional, JSON-ready) adds a last section, e.g. remote-session summaries.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from collector.errors import format_ms
from collector.tickets.model import LEVELS, Level, Ticket
from collector.tickets.sla import (
    LEVEL_NAMES_EN,
    LEVEL_NAMES_ZH,
    Clock,
    Event,
    SlaStatus,
    format_duration_ms,
)

__all__ = [
    "EXCERPT_CHARS",
    "EXCERPT_LINES",
    "REPORT_FORMAT",
    "Diagnostic",
    "Report",
    "SlaFigure",
    "TimelineEntry",
    "draft_report",
    "summarize_event",
]

REPORT_FORMAT = "aftercare-fault-report/1"
TITLE = "故障分析报告 / Fault analysis report"
EXCERPT_LINES = 60
EXCERPT_CHARS = 4000
_ONSET_SKIP = frozenset({"title", "level", "source"})


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the report's timeline."""

    at_ms: int
    actor: str
    kind: str
    summary: str


@dataclass(frozen=True)
class Diagnostic:
    """A diagnostic playbook's output attached to the ticket (an excerpt)."""

    at_ms: int
    actor: str
    playbook: str
    status: str
    excerpt: str
    truncated: bool


@dataclass(frozen=True)
class SlaFigure:
    """One SLA clock in the report: target, actual (elapsed, pauses excluded), result."""

    clock: str
    state: str
    target_ms: int | None
    actual_ms: int | None
    due_ms: int | None
    stopped_ms: int | None

    @property
    def result(self) -> str:
        """The outcome: met, breached, running, paused, warning, or n/a."""
        return "n/a" if self.state == "not_applicable" else self.state


@dataclass(frozen=True)
class Report:
    """A drafted fault analysis report; render with markdown(), html() or as_dict()."""

    ticket_id: int
    title: str
    customer: str
    host: str
    level: Level
    state: str
    source: str
    rule: str | None
    description: str
    labels: Mapping[str, str]
    opened_ms: int
    onset_metrics: Mapping[str, Any]
    timeline: tuple[TimelineEntry, ...]
    diagnostics: tuple[Diagnostic, ...]
    cause: str
    actions: str
    prevention: str
    sla: tuple[SlaFigure, ...]
    resolved_ms: int | None
    closed_ms: int | None
    close_reason: str | None
    closed_by: str | None
    reopen_count: int
    generated_ms: int
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def level_name(self) -> str:
        """The level's Chinese name, e.g. "一级故障 (重大故障)"."""
        return LEVEL_NAMES_ZH[self.level]

    @property
    def closing(self) -> str:
        """How the loop was closed (or why it is not yet), one sentence."""
        return _closing_text(self)

    def markdown(self) -> str:
        """The report as Markdown (user text escaped, tool output in fenced blocks)."""
        return _render(self, _MarkdownWriter())

    def html(self) -> str:
        """The report as a self-contained HTML page (all text through html.escape)."""
        return _render(self, _HtmlWriter())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``Report.from_dict`` reads it back."""
        data = asdict(self)
        data["format"] = REPORT_FORMAT
        data["level_name"] = self.level_name
        data["level_name_en"] = LEVEL_NAMES_EN[self.level]
        data["closing"] = self.closing
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """A report from ``as_dict`` output (e.g. after a JSON round trip)."""
        level = str(data["level"])
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}")
        plain = {k: v for k, v in data.items() if k in _REPORT_FIELDS}
        plain["level"] = LEVELS[LEVELS.index(level)]
        plain["timeline"] = tuple(TimelineEntry(**e) for e in data["timeline"])
        plain["diagnostics"] = tuple(Diagnostic(**d) for d in data["diagnostics"])
        plain["sla"] = tuple(SlaFigure(**s) for s in data["sla"])
        return cls(**plain)


_REPORT_FIELDS = frozenset(Report.__dataclass_fields__)


# -- drafting --------------------------------------------------------------------------


def draft_report(
    ticket: Ticket,
    events: Sequence[Event],
    status: SlaStatus,
    extras: Mapping[str, Any] | None = None,
) -> Report:
    """Draft the report of ``ticket`` from its timeline and SLA status (as of
    ``status.now_ms``, which becomes the report's ``generated_ms``)."""
    timeline = sorted(events, key=lambda e: e.at_ms)
    opened = next((e for e in timeline if e.kind == "opened"), None)
    resolution = ticket.resolution
    return Report(
        ticket_id=ticket.id,
        title=ticket.title,
        customer=ticket.customer,
        host=ticket.hostname,
        level=ticket.level,
        state=ticket.state,
        source=ticket.source,
        rule=ticket.rule,
        description=ticket.description,
        labels=dict(ticket.labels),
        opened_ms=opened.at_ms if opened else ticket.created_ms,
        onset_metrics=_onset_metrics(opened),
        timeline=tuple(_entry(e) for e in timeline),
        diagnostics=tuple(_diagnostic(e) for e in timeline if e.kind == "diagnostics"),
        cause=str(resolution.get("cause", "")),
        actions=str(resolution.get("actions", "")),
        prevention=str(resolution.get("prevention", "")),
        sla=tuple(_figure(c) for c in status.clocks),
        resolved_ms=ticket.resolved_ms,
        closed_ms=ticket.closed_ms,
        close_reason=ticket.close_reason,
        closed_by=_closed_by(ticket, timeline),
        reopen_count=ticket.reopen_count,
        generated_ms=status.now_ms,
        extras=dict(extras or {}),
    )


def _onset_metrics(opened: Event | None) -> dict[str, Any]:
    if opened is None:
        return {}
    return {k: v for k, v in opened.details.items() if k not in _ONSET_SKIP}


def _entry(event: Event) -> TimelineEntry:
    return TimelineEntry(event.at_ms, event.actor, event.kind, summarize_event(event))


def _diagnostic(event: Event) -> Diagnostic:
    details = event.details
    output = str(details.get("output", details.get("excerpt", "")))
    excerpt, cut = _excerpt(output)
    status = details.get("status")
    if status is None and "exit_code" in details:
        status = f"exit {details['exit_code']}"
    return Diagnostic(
        at_ms=event.at_ms,
        actor=event.actor,
        playbook=str(details.get("playbook", details.get("name", "?"))),
        status=str(status) if status is not None else "",
        excerpt=excerpt,
        truncated=cut or bool(details.get("truncated", False)),
    )


def _excerpt(output: str) -> tuple[str, bool]:
    lines = output.splitlines()
    text = "\n".join(lines[:EXCERPT_LINES])
    cut = len(lines) > EXCERPT_LINES
    if len(text) > EXCERPT_CHARS:
        text, cut = text[:EXCERPT_CHARS], True
    return text, cut


def _figure(clock: Clock) -> SlaFigure:
    applicable = clock.applicable
    return SlaFigure(
        clock=clock.name,
        state=clock.state,
        target_ms=clock.target_ms,
        actual_ms=clock.elapsed_ms if applicable else None,
        due_ms=clock.due_ms,
        stopped_ms=clock.stopped_ms,
    )


def _closed_by(ticket: Ticket, timeline: Sequence[Event]) -> str | None:
    if ticket.state != "closed":
        return None
    closes = [e for e in timeline if e.kind in ("confirmed", "closed")]
    return closes[-1].actor if closes else None


def _closing_text(report: Report) -> str:
    if report.state == "closed" and report.closed_ms is not None:
        when = format_ms(report.closed_ms)
        if report.close_reason == "auto-confirmed":
            return (
                f"Closed automatically (auto-confirmed) at {when}: the customer did not "
                "answer within the auto-confirm period after the resolution."
            )
        return f"Confirmed by the customer ({report.closed_by or '?'}) and closed at {when}."
    if report.state == "resolved":
        return "Resolved; awaiting the customer's confirmation."
    return f"Not resolved yet (state: {report.state})."


# -- event summaries -------------------------------------------------------------------


def summarize_event(event: Event) -> str:
    """One line saying what an event means, for timelines."""
    summarize = _SUMMARIES.get(event.kind, _generic)
    return _one_line(summarize(event.details))


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _get(details: Mapping[str, Any], key: str, default: str = "") -> str:
    value = details.get(key)
    return default if value is None else str(value)


def _with_value(prefix: str, details: Mapping[str, Any]) -> str:
    parts = [prefix]
    if "value" in details:
        parts.append(f"value {details['value']}")
    if "threshold" in details:
        parts.append(f"threshold {details['threshold']}")
    return ", ".join(parts)


def _generic(details: Mapping[str, Any]) -> str:
    return json.dumps(dict(details), ensure_ascii=False, sort_keys=True, default=str)


_SUMMARIES: Mapping[str, Callable[[Mapping[str, Any]], str]] = {
    "opened": lambda d: _with_value(f"opened: {_get(d, 'title')}", d),
    "refired": lambda d: _with_value("fired again", d),
    "acknowledged": lambda d: "acknowledged",
    "comment": lambda d: _get(d, "text"),
    "assigned": lambda d: f"assigned to {_get(d, 'assignee', 'nobody')}",
    "notification": lambda d: (
        f"notified {_get(d, 'channel')} {_get(d, 'target')}: {_get(d, 'subject', _get(d, 'key'))}"
    ),
    "escalation": lambda d: f"escalated: {_generic(d)}",
    "recovered": lambda d: "the condition cleared by itself",
    "resolved": lambda d: f"resolved — cause: {_get(d, 'cause')}",
    "confirmed": lambda d: "the customer confirmed the resolution",
    "rejected": lambda d: f"the customer rejected the resolution: {_get(d, 'reason')}",
    "reopened": lambda d: f"re-opened ({_get(d, 'trigger', '?')}): {_get(d, 'reason')}",
    "closed": lambda d: f"closed ({_get(d, 'reason', '?')})",
    "waiting": lambda d: f"waiting on the customer: {_get(d, 'reason')}",
    "resumed": lambda d: "no longer waiting on the customer",
    "regraded": lambda d: (
        f"level changed from {_get(d, 'previous', '?')} to {_get(d, 'level', '?')}: "
        f"{_get(d, 'reason')}"
    ),
    "diagnostics": lambda d: (
        f"diagnostics: playbook {_get(d, 'playbook', _get(d, 'name', '?'))} "
        f"{_get(d, 'status')}".rstrip()
    ),
}


# -- rendering -------------------------------------------------------------------------


class _Writer:
    """What ``_render`` needs from an output format."""

    def title(self, text: str) -> None:
        raise NotImplementedError

    def heading(self, text: str) -> None:
        raise NotImplementedError

    def paragraph(self, text: str) -> None:
        raise NotImplementedError

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        raise NotImplementedError

    def preformatted(self, caption: str, text: str) -> None:
        raise NotImplementedError

    def finish(self, page_title: str) -> str:
        raise NotImplementedError


def _render(report: Report, out: _Writer) -> str:
    out.title(TITLE)
    _render_header(report, out)
    _render_onset(report, out)
    _render_timeline(report, out)
    _render_diagnostics(report, out)
    _render_resolution(report, out)
    _render_sla(report, out)
    out.heading("Closing / 闭环确认")
    out.paragraph(report.closing)
    if report.extras:
        out.heading("Additional information / 附加信息")
        out.table(["item", "value"], [[k, _value(v)] for k, v in report.extras.items()])
    out.paragraph(f"Drafted by aftercare at {format_ms(report.generated_ms)}.")
    return out.finish(f"{TITLE} — #{report.ticket_id}")


def _render_header(report: Report, out: _Writer) -> None:
    out.heading(f"Ticket #{report.ticket_id}: {report.title}")
    source = f"{report.source} ({report.rule})" if report.rule else report.source
    rows = [
        ["Customer / 客户", report.customer],
        ["Host / 主机", report.host or "—"],
        ["Fault level / 故障等级", f"{report.level_name} — {LEVEL_NAMES_EN[report.level]}"],
        ["State / 状态", report.state],
        ["Source / 来源", source],
        ["Opened / 发生时间", format_ms(report.opened_ms)],
        ["Resolved / 解决时间", _time(report.resolved_ms)],
        ["Closed / 关闭时间", _time(report.closed_ms)],
        ["Re-opened / 重开次数", str(report.reopen_count)],
    ]
    out.table(["", ""], rows)
    if report.description:
        out.paragraph(report.description)


def _render_onset(report: Report, out: _Writer) -> None:
    out.heading("Onset and key metrics / 故障现象与关键指标")
    out.paragraph(f"First detected at {format_ms(report.opened_ms)}.")
    if report.onset_metrics:
        rows = [[key, _value(value)] for key, value in report.onset_metrics.items()]
        out.table(["metric", "value at onset"], rows)
    else:
        out.paragraph("No metrics were recorded at onset.")


def _render_timeline(report: Report, out: _Writer) -> None:
    out.heading("Timeline / 处理过程")
    rows = [[format_ms(e.at_ms), e.actor, e.kind, e.summary] for e in report.timeline]
    out.table(["time (UTC)", "actor", "event", "summary"], rows)


def _render_diagnostics(report: Report, out: _Writer) -> None:
    out.heading("Diagnostics / 诊断信息")
    if not report.diagnostics:
        out.paragraph("No diagnostics were attached.")
    for diag in report.diagnostics:
        status = f", {diag.status}" if diag.status else ""
        caption = f"{diag.playbook} ({format_ms(diag.at_ms)}{status})"
        marker = "\n[… output truncated]" if diag.truncated else ""
        out.preformatted(caption, diag.excerpt + marker)


def _render_resolution(report: Report, out: _Writer) -> None:
    for heading, text in (
        ("Cause / 故障原因", report.cause),
        ("Actions taken / 处理措施", report.actions),
        ("Prevention / 预防措施", report.prevention),
    ):
        out.heading(heading)
        out.paragraph(text or "—")


def _render_sla(report: Report, out: _Writer) -> None:
    out.heading("SLA / 服务时限")
    rows = [
        [
            fig.clock.replace("_", " "),
            _duration(fig.target_ms),
            _duration(fig.actual_ms),
            _time(fig.due_ms),
            fig.result,
        ]
        for fig in report.sla
    ]
    out.table(["clock", "target", "actual", "due (UTC)", "result"], rows)


def _time(ms: int | None) -> str:
    return format_ms(ms) if ms is not None else "—"


def _duration(ms: int | None) -> str:
    return format_duration_ms(ms) if ms is not None else "—"


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|&~])")


def _md(text: str) -> str:
    """Escape text for Markdown so user input cannot inject markup, raw HTML or
    headings (lists stay lists: an engineer's "- step" renders as intended)."""
    escaped = _MD_SPECIAL.sub(r"\\\1", text)
    return "\\" + escaped if escaped.startswith("#") else escaped


class _MarkdownWriter(_Writer):
    def __init__(self) -> None:
        self.parts: list[str] = []

    def title(self, text: str) -> None:
        self.parts.append(f"# {_md(text)}\n")

    def heading(self, text: str) -> None:
        self.parts.append(f"## {_md(_one_line(text))}\n")

    def paragraph(self, text: str) -> None:
        lines = [_md(line) for line in text.strip().splitlines()]
        self.parts.append("  \n".join(lines) + "\n")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        lines = [_md_row(header), "|" + "---|" * len(header)]
        lines += [_md_row(row) for row in rows]
        self.parts.append("\n".join(lines) + "\n")

    def preformatted(self, caption: str, text: str) -> None:
        fence = "`" * max(3, _longest_backtick_run(text) + 1)
        self.parts.append(f"**{_md(caption)}**\n\n{fence}text\n{text}\n{fence}\n")

    def finish(self, page_title: str) -> str:
        return "\n".join(self.parts)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_md(_one_line(c)) for c in cells) + " |"


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "color:#222}table{border-collapse:collapse;margin:.5rem 0}"
    "th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}"
    "pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;white-space:pre-wrap}"
    "h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:1.5rem}"
)


def _h(text: str) -> str:
    return html.escape(text, quote=True)


class _HtmlWriter(_Writer):
    def __init__(self) -> None:
        self.parts: list[str] = []

    def title(self, text: str) -> None:
        self.parts.append(f"<h1>{_h(text)}</h1>")

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{_h(text)}</h2>")

    def paragraph(self, text: str) -> None:
        lines = [_h(line) for line in text.strip().splitlines()]
        self.parts.append("<p>" + "<br>\n".join(lines) + "</p>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        head = ""
        if any(header):
            head = "<tr>" + "".join(f"<th>{_h(c)}</th>" for c in header) + "</tr>"
        body = "".join(
            "<tr>" + "".join(f"<td>{_h(c)}</td>" for c in row) + "</tr>\n" for row in rows
        )
        self.parts.append(f"<table>{head}\n{body}</table>")

    def preformatted(self, caption: str, text: str) -> None:
        self.parts.append(f"<p><strong>{_h(caption)}</strong></p>\n<pre>{_h(text)}</pre>")

    def finish(self, page_title: str) -> str:
        body = "\n".join(self.parts)
        return (
            '<!DOCTYPE html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{_h(page_title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            f"<body>\n{body}\n</body>\n</html>\n"
        )
