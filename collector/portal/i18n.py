"""Page languages: English (the source text) and zh-CN from a gettext-style catalogue.

``locales/zh_CN/LC_MESSAGES/portal.po`` is read with Babel at start (no compiled
.mo). ``choose`` picks the user's setting, else the best of the browser's
Accept-Language, else zh-CN (the customers' language). Messages raised in Python
code for pages are listed in ``MESSAGES`` so the catalogue test sees them.
"""

from __future__ import annotations

import functools
import gettext
from typing import get_args

from collector.inspections.model import EVENT_KINDS as INSPECTION_EVENTS
from collector.inspections.model import LISTABLE_STATES as INSPECTION_STATES
from collector.po_catalogue import CatalogTranslations, read_messages
from collector.portal import approval_summary
from collector.runs.model import RUN_MODES, RUN_STATES
from collector.sessions.model import SESSION_EVENT_KINDS, SESSION_STATES
from collector.tickets.model import TICKET_STATES, EventKind

__all__ = ["DEFAULT", "LANGUAGES", "MESSAGES", "choose", "shown_names", "translations"]

LANGUAGES = ("zh-CN", "en")
DEFAULT = "zh-CN"
_PACKAGE = "collector.portal"

# Page texts produced in Python (not in templates): extracted by the catalogue test.
MESSAGES = (
    "Wrong user name, password or code.",
    "Too many failed sign-ins. Try again later.",
    "The form expired or did not come from this portal. Reload the page and try again.",
    "Not found, or not yours to see.",
    "You may not do this.",
    "This cannot be done now.",
    "The request was not valid.",
    "Something went wrong in the collector. Try again; if it persists, tell your vendor.",
    "Sign in to continue.",
    *approval_summary.LABELS,
)


def shown_names() -> tuple[str, ...]:
    """States and event kinds that pages show translated (``_(state)``)."""
    return tuple(
        dict.fromkeys(
            (
                *TICKET_STATES,
                *get_args(EventKind),
                *SESSION_STATES,
                *SESSION_EVENT_KINDS,
                *INSPECTION_STATES,
                *INSPECTION_EVENTS,
                *RUN_STATES,
                *RUN_MODES,
            )
        )
    )


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The translations for ``language`` (English: none needed)."""
    if language == "en":
        return gettext.NullTranslations()
    return CatalogTranslations(catalogue(language))


def catalogue(language: str) -> dict[str, str]:
    """msgid -> msgstr of ``language``'s catalogue (untranslated and fuzzy entries left out)."""
    folder = language.replace("-", "_")
    return read_messages(_PACKAGE, f"locales/{folder}/LC_MESSAGES/portal.po", folder)


def choose(setting: str, accept_language: str) -> str:
    """The page language: ``setting`` if it is one we have, else the browser's
    preference (``Accept-Language`` q-values honoured), else ``DEFAULT``."""
    if setting in LANGUAGES:
        return setting
    wanted: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        wanted.append((-quality, index, tag.strip().lower()))
    for quality, _, tag in sorted(wanted):
        if quality >= 0:
            continue
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT
