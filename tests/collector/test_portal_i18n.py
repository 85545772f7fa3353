"""Portal languages: every page string has a zh-CN translation; the language choice."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2.ext
import pytest

from collector.portal import i18n
from collector.portal.error_details import DETAIL_MESSAGES

TEMPLATES = Path(i18n.__file__).parent / "templates"


def page_strings() -> set[str]:
    """Every msgid of the templates (``_()``), the Python-side messages and the shown
    state and event names."""
    found: set[str] = set()
    for template in sorted(TEMPLATES.glob("*.j2")):
        with template.open("rb") as file:
            for _line, _function, message, _comments in jinja2.ext.babel_extract(
                file, ("_", "gettext", "ngettext"), [], {}
            ):
                messages = message if isinstance(message, tuple) else (message,)
                found.update(m for m in messages if isinstance(m, str) and m)
    return found | set(i18n.MESSAGES) | set(i18n.shown_names()) | set(DETAIL_MESSAGES)


def test_the_extraction_sees_the_templates() -> None:
    strings = page_strings()
    assert "Sign in" in strings and "Waiting for you" in strings and "awaiting_signoff" in strings


def test_every_page_string_has_a_chinese_translation() -> None:
    catalogue = i18n.catalogue("zh-CN")
    missing = sorted(page_strings() - catalogue.keys())
    assert not missing, f"add these to locales/zh_CN/LC_MESSAGES/portal.po: {missing}"


def test_placeholders_survive_translation() -> None:
    catalogue = i18n.catalogue("zh-CN")
    for msgid, msgstr in catalogue.items():
        for name in ("%(minutes)s", "%(root)s", "%(id)s", "%(count)s"):
            assert (name in msgid) == (name in msgstr), (msgid, msgstr)


@pytest.mark.parametrize(
    ("setting", "accept", "chosen"),
    [
        ("en", "zh-CN", "en"),
        ("zh-CN", "en-US", "zh-CN"),
        ("", "en-US,en;q=0.9", "en"),
        ("", "zh-TW,zh;q=0.9", "zh-CN"),
        ("", "fr-FR, en;q=0.5, zh;q=0.8", "zh-CN"),
        ("", "en;q=0, zh;q=0.1", "zh-CN"),
        ("", "fr", "zh-CN"),
        ("", "", "zh-CN"),
        ("klingon", "en", "en"),
    ],
)
def test_language_choice(setting: str, accept: str, chosen: str) -> None:
    assert i18n.choose(setting, accept) == chosen


def test_error_details_keep_their_placeholders_in_chinese() -> None:
    catalogue = i18n.catalogue("zh-CN")
    for msgid in DETAIL_MESSAGES:
        names = sorted(re.findall(r"%\((\w+)\)s", msgid))
        assert sorted(re.findall(r"%\((\w+)\)s", catalogue[msgid])) == names, msgid
