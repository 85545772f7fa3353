"""The texts of customer notices in the customer's language (pure): the approval
notices (collector/notices/approvals.py) and, for a customer with a language setting,
the inspection application and report notices (collector/inspections/notify.py). A
package of its own that imports nothing of the collector's services or store, so both
may use it without joining their import knot (tests/test_import_cycles.py).

English is the source; zh-CN comes from the gettext catalogue
``locales/zh_CN/LC_MESSAGES/notices.po`` (read with Babel, as the portal's). Every
msgid is listed in ``MESSAGES`` so the catalogue test sees it. ``LANGUAGES`` are the
ones a customer may choose (``aftercare customer settings C --language``); a customer
without a setting gets both, Chinese first (as the ticket notices).
"""

from __future__ import annotations

import functools
import gettext

from collector.po_catalogue import CatalogTranslations, read_messages

__all__ = ["LANGUAGES", "MESSAGES", "language_of", "translations"]

LANGUAGES = ("zh-CN", "en")

SESSION_SUBJECT = "[aftercare] Remote session waiting for your approval: %(host)s"
SESSION_ASK = "Engineer %(engineer)s asks to log in to your host %(host)s for %(minutes)s minutes."
SESSION_REASON = "Reason: %(reason)s"
SESSION_TICKET = "Ticket: #%(ticket)s"
SESSION_EXPIRES = "The request lapses at %(expires)s unless you approve or deny it."
SESSION_ON_HOST = "This host accepts only an approval given on the host itself."
RUN_SUBJECT = "[aftercare] Playbook run waiting for your approval: %(playbook)s on %(host)s"
RUN_ASK = (
    "%(requested_by)s asks to run the playbook %(playbook)s %(version)s (%(mode)s) "
    "on your host %(host)s."
)
RUN_PARAMS = "Parameters: %(params)s"
RUN_TICKET = SESSION_TICKET
LINK = "Approve or deny it here: %(link)s"
NO_PARAMS = "none"

# inspection notices (collector/inspections/notify.py), when the customer has a language
APPLICATION_SUBJECT = "[aftercare] Inspection application #%(id)s: %(when)s"
APPLICATION_PLANNED = "Inspection #%(id)s of %(customer)s is planned for %(when)s."
REPORT_SUBJECT = "[aftercare] Inspection report #%(id)s awaits your sign-off"
REPORT_PUBLISHED = (
    "The report of inspection #%(id)s for %(customer)s is published and waits for your sign-off."
)
ENGINEER_LINE = "Engineer: %(engineer)s"
HOSTS_LINE = "Hosts: %(hosts)s"
CHECKLIST_LINE = "Checklist: %(checklist)s"
SUMMARY_LINE = "Summary: %(summary)s"
CONSENT_LINE = "Consent: %(command)s"
DECLINE_LINE = "Decline: %(command)s"
SIGN_LINE = "Sign: %(command)s"
REJECT_LINE = "Reject: %(command)s"
LINK_LINE = "Link: %(link)s"

MESSAGES = (
    SESSION_SUBJECT,
    SESSION_ASK,
    SESSION_REASON,
    SESSION_TICKET,
    SESSION_EXPIRES,
    SESSION_ON_HOST,
    RUN_SUBJECT,
    RUN_ASK,
    RUN_PARAMS,
    LINK,
    NO_PARAMS,
    "read-only",
    "mutating",
    APPLICATION_SUBJECT,
    APPLICATION_PLANNED,
    REPORT_SUBJECT,
    REPORT_PUBLISHED,
    ENGINEER_LINE,
    HOSTS_LINE,
    CHECKLIST_LINE,
    SUMMARY_LINE,
    CONSENT_LINE,
    DECLINE_LINE,
    SIGN_LINE,
    REJECT_LINE,
    LINK_LINE,
)


def language_of(setting: str | None) -> str:
    """The notice language for a customer's setting; "" (both languages) when it has
    none, or one we do not have."""
    return setting if setting is not None and setting in LANGUAGES else ""


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The translations for ``language`` (English: none needed)."""
    if language == "en":
        return gettext.NullTranslations()
    folder = language.replace("-", "_")
    path = f"locales/{folder}/LC_MESSAGES/notices.po"
    return CatalogTranslations(read_messages("collector.notice_texts", path, folder))
