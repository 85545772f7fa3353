"""gettext-style ``.po`` catalogues read at run time with Babel (no compiled .mo).

Shared by the inspection report (collector/inspections/render.py) and the web portal
(collector/portal/i18n.py): ``read_messages`` gives msgid -> msgstr (untranslated and
fuzzy entries left out), ``CatalogTranslations`` serves them as ``gettext`` does.
"""

from __future__ import annotations

import gettext
from collections.abc import Mapping
from importlib import resources

from babel.messages.pofile import read_po

__all__ = ["CatalogTranslations", "read_messages"]


def read_messages(package: str, path: str, locale: str) -> dict[str, str]:
    """The translated messages of the catalogue at ``path`` inside ``package``."""
    with resources.files(package).joinpath(path).open("rb") as file:
        catalog = read_po(file, locale=locale)
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string and not m.fuzzy}


class CatalogTranslations(gettext.NullTranslations):
    """Translations straight from a .po catalogue's messages."""

    def __init__(self, messages: Mapping[str, str]) -> None:
        super().__init__()
        self._messages = dict(messages)

    def gettext(self, message: str) -> str:
        return self._messages.get(message, message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.gettext(singular if n == 1 else plural)
