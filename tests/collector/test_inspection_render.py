"""render(): the report in HTML, PDF, Markdown and JSON, in zh-CN and English; escaping."""

from __future__ import annotations

import io
import json
from typing import Any

import pypdf
import pytest

from collector.inspections.analysis import analyse
from collector.inspections.render import FORMATS, LANGUAGES, RenderError, canonical_bytes, render
from tests.collector.inspection_fixtures import (
    END_MS,
    facts_document,
    host,
    inspection,
    linear,
    series,
    ticket,
)

ATTACK = "<script>alert('x')</script>"
SIGNOFF = {
    "name": "张三",
    "title": "运维主管",
    "comment": "同意",
    "at_ms": END_MS + 86_400_000,
    "report_sha256": "f" * 64,
    "decision": "signed",
    "reason": "",
}


def published(**extra: Any) -> dict[str, Any]:
    failing = facts_document(
        units={"systemd": True, "enabled": [], "failed": ["backup.service", f"{ATTACK}.service"]}
    )
    history = {
        "filesystem_used_ratio": [
            series(
                "filesystem_used_ratio",
                linear(0.5, 0.8, 2000),
                labels={"mountpoint": "/var"},
                step_ms=3_888_000,
            )
        ]
    }
    hosts = [
        host(
            "web-1",
            facts=failing,
            previous=facts_document(kernel="6.1.0-25-amd64"),
            history=history,
        ),
        host(ATTACK, agent_id="agent-attack"),
        host("db-1", outcome="offline", detail="not connected since 2026-11-01"),
    ]
    report = analyse(inspection(hosts, tickets=[ticket(7), ticket(8, level="1", title=ATTACK)]))
    report.update(
        summary="本季度整体运行平稳。 Overall stable.",
        published={"by": "erin", "at_ms": END_MS + 3_600_000},
        signoff=None,
    )
    report.update(extra)
    return report


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return published()


def text(report: dict[str, Any], fmt: str, lang: str) -> str:
    return render(report, fmt, lang).decode()


def test_html_in_chinese_has_every_section(report: dict[str, Any]) -> None:
    html = text(report, "html", "zh-CN")
    for expected in [
        "巡检报告",
        "ACME 有限公司",
        "erin",
        "巡检周期",
        "web-1",
        "db-1",
        "离线",
        "服务 backup.service 处于失败状态",  # finding title from the catalogue
        "查看该服务的日志",  # its recommendation
        "文件系统 /var 预计于",  # capacity forecast finding
        "容量预测",
        "与上次巡检相比的变更",
        "内核变更",  # drift kind
        "6.1.0-25-amd64",
        "本周期工单与服务时限统计",
        "三级故障",
        "既往故障复查",
        "本季度整体运行平稳",  # the engineer's summary
        "用户签字",
    ]:
        assert expected in html, expected


def test_html_in_english(report: dict[str, Any]) -> None:
    html = text(report, "html", "en")
    for expected in [
        "Inspection report",
        "Service backup.service has failed",
        "Filesystem /var predicted full by",
        "Changes since the previous inspection",
        "kernel.changed",
        "Tickets and SLA in the period",
        "level 3",
        "Sign-off",
    ]:
        assert expected in html, expected
    assert "巡检报告" not in html


def test_html_escapes_what_hosts_send(report: dict[str, Any]) -> None:
    for lang in LANGUAGES:
        html = text(report, "html", lang)
        assert "<script>" not in html
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html  # hostname, unit, ticket


def test_markdown_shows_host_text_harmlessly(report: dict[str, Any]) -> None:
    for lang in LANGUAGES:
        md = text(report, "md", lang)
        assert "<" not in md.replace("<br>", "")  # no HTML at all gets through
        assert r"&lt;script&gt;alert\('x'\)&lt;/script&gt;" in md
    md = text(report, "md", "zh-CN")
    assert md.startswith("# 巡检报告")
    assert "服务 backup.service 处于失败状态" in md


def test_markdown_escapes_table_and_markup_characters() -> None:
    sneaky = published(customer_name="a | b *bold* [link](http://x) `code`")
    md = text(sneaky, "md", "en")
    assert r"a \| b \*bold\* \[link\]\(http://x\) \`code\`" in md


def test_signoff_block_empty_then_filled(report: dict[str, Any]) -> None:
    empty = text(report, "md", "en")
    assert "Name: ______" in empty and "Signature: ______" in empty
    signed = published(signoff=SIGNOFF)
    html = text(signed, "html", "zh-CN")
    assert "张三" in html and "运维主管" in html and "已签字确认" in html and "f" * 64 in html
    md = text(signed, "md", "en")
    assert "| Name | 张三 |" in md and "______" not in md


def test_json_is_the_canonical_document(report: dict[str, Any]) -> None:
    data = render(report, "json", "en")
    assert data == canonical_bytes(report) == render(report, "json", "zh-CN")
    assert json.loads(data) == report
    assert "ACME 有限公司".encode() in data  # UTF-8, not \u escapes


@pytest.mark.parametrize("lang", LANGUAGES)
def test_pdf_text_and_embedded_fonts(report: dict[str, Any], lang: str) -> None:
    pdf = render(report, "pdf", lang)
    assert pdf.startswith(b"%PDF-")
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    content = "".join(page.extract_text() or "" for page in reader.pages)
    assert "web-1" in content and "ACME" in content
    if lang == "zh-CN":
        assert "巡检报告" in content and "有限公司" in content and "用户签字" in content
    else:
        assert "Inspection report" in content and "Sign-off" in content
    fonts = [
        font.get_object()
        for page in reader.pages
        for font in page["/Resources"]["/Font"].values()  # type: ignore[union-attr]
    ]
    descendants = [d.get_object() for f in fonts for d in f.get("/DescendantFonts", [])]
    names = [str(f["/BaseFont"]) for f in fonts]
    assert any("WenQuanYi" in name or "Noto" in name for name in names), names
    described = [f for f in fonts + descendants if "/FontDescriptor" in f]
    assert described and all(_embedded(f) for f in described), names


def _embedded(font: Any) -> bool:
    descriptor = font["/FontDescriptor"].get_object()
    return any(key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3"))


@pytest.mark.parametrize(
    ("fmt", "lang", "bad"), [("docx", "en", "docx"), ("html", "fr", "fr"), ("", "en", "''")]
)
def test_unknown_format_or_language_is_refused(
    report: dict[str, Any], fmt: str, lang: str, bad: str
) -> None:
    with pytest.raises(RenderError, match=bad) as caught:
        render(report, fmt, lang)
    assert isinstance(caught.value, ValueError)
    assert set(FORMATS) == {"html", "pdf", "md", "json"}


@pytest.mark.parametrize(
    "document",
    [
        {"hosts": [{"hostname": "h", "findings": [{}]}]},
        {"hosts": [{"hostname": "h", "capacity": [{}], "drift": [{}], "availability": None}]},
        {"tickets": {"by_level": [{"level": "3"}], "list": [{}]}, "alerts": {"list": [{}]}},
        {"recurrence": [{}], "signoff": {"decision": "rejected"}, "hosts": "not a list"},
    ],
)
def test_an_incomplete_document_still_renders(document: dict[str, Any]) -> None:
    for fmt in ("html", "md"):
        for lang in LANGUAGES:
            assert render(document, fmt, lang)


def test_the_summary_keeps_its_paragraphs_and_is_escaped() -> None:
    doc = published(summary="第一段 <b>x</b>\n\nsecond | paragraph")
    md = text(doc, "md", "en")
    assert "第一段 &lt;b&gt;x&lt;/b&gt;\n\nsecond \\| paragraph" in md
    assert "第一段 &lt;b&gt;x&lt;/b&gt;\n\nsecond | paragraph" in text(doc, "html", "en")


def test_the_pdf_loads_nothing_from_outside() -> None:
    from collector.inspections.render import _fetch_nothing

    with pytest.raises(ValueError, match="loads no resources"):
        _fetch_nothing("file:///etc/passwd")


def test_a_large_report_is_laid_out_in_parts_and_joined_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collector.inspections import render as render_module

    monkeypatch.setattr(render_module, "PDF_PART_HOSTS", 2)  # 5 hosts: 3 parts, 2 workers
    hosts = [host(f"node-{n}", facts=facts_document(hostname=f"node-{n}")) for n in range(5)]
    report = analyse(inspection(hosts, tickets=[ticket(7)]))
    report.update(summary="", published={"by": "erin", "at_ms": END_MS}, signoff=SIGNOFF)
    reader = pypdf.PdfReader(io.BytesIO(render(report, "pdf", "zh-CN")))
    pages = [page.extract_text() or "" for page in reader.pages]
    content = "".join(pages)
    order = [content.index(f"node-{n} (") for n in range(5)]  # each host's detail heading
    assert order == sorted(order)
    assert content.index("巡检报告") < order[0]  # the front comes first
    assert order[-1] < content.index("用户签字") and "张三" in content  # the sign-off last
    assert all("ACME" in page for page in pages)  # every page's footer names the report
    assert reader.metadata is not None and reader.metadata.title


def test_a_worker_that_fails_is_reported_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.inspections import render as render_module

    monkeypatch.setattr(render_module.sys, "executable", "/bin/false")
    with pytest.raises(render_module.PdfLayoutError, match="could not be laid out"):
        render_module._pdf(["<p>a</p>", "<p>b</p>"])


def test_the_footer_text_cannot_break_out_of_its_css_string() -> None:
    from collector.inspections.render import css_string

    quoted = css_string('x" } body { display: none } @page { content: "')
    inner = quoted[1:-1]
    assert quoted[0] == quoted[-1] == '"'
    assert not set(inner) & set("\"'{};:<>@")
    assert css_string("ACME 有限公司") == '"ACME\\20 \\6709 \\9650 \\516c \\53f8 "'
