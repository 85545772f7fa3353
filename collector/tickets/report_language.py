"""The fault analysis report's languages: English (the source text) and zh-CN.

Fixed texts of ``collector/tickets/report.py`` are English msgids translated through
``locales/zh_CN/LC_MESSAGES/ticket_report.po`` (read with Babel, no compiled .mo).
English keeps the report exactly as it always was; zh-CN replaces every heading,
label and fixed phrase. ``ReportLanguage.at`` formats a time per language in the
report's zone: ISO 8601 in English, ``2026年12月04日 15:30:00 (UTC+08:00)`` in zh-CN.

    ValueError   an unknown language; the message names the ones there are.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from collector.po_catalogue import read_messages

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "ReportLanguage", "report_language"]

LANGUAGES = ("en", "zh-CN")
DEFAULT_LANGUAGE = "en"
_PACKAGE = "collector.tickets"
_CATALOGUE = "locales/zh_CN/LC_MESSAGES/ticket_report.po"


@dataclass(frozen=True)
class ReportLanguage:
    """One language of the report: its code and translated messages (empty for English)."""

    code: str
    messages: Mapping[str, str]

    def t(self, message: str, **values: object) -> str:
        """``message`` translated, then ``{name}`` placeholders filled from ``values``."""
        text = self.messages.get(message, message)
        return text.format(**values) if values else text

    def at(self, moment: dt.datetime) -> str:
        """An aware time as text: ISO 8601 (English) or the Chinese date form."""
        if self.code == "en":
            return moment.isoformat(timespec="seconds")
        offset = moment.strftime("%z")
        zone = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
        return moment.strftime("%Y年%m月%d日 %H:%M:%S") + f" ({zone})"


def report_language(code: str = DEFAULT_LANGUAGE) -> ReportLanguage:
    """The language ``code`` ("en" or "zh-CN"); ValueError for any other."""
    if code not in LANGUAGES:
        raise ValueError(f"unknown report language {code!r}: use one of {', '.join(LANGUAGES)}")
    if code == "en":
        return ReportLanguage("en", MappingProxyType({}))
    return ReportLanguage(code, _chinese())


@functools.cache
def _chinese() -> Mapping[str, str]:
    return MappingProxyType(read_messages(_PACKAGE, _CATALOGUE, "zh_CN"))
