"""Customer notices of what waits for the customer's approval: a remote session, a
playbook run. Each goes to the customer's contacts (webhook, e-mail) with the portal
link to the exact page, in the customer's language, once per recipient.

    messages.py   the notice texts, also the inspection notices' (pure; gettext ``locales/``)
    approvals.py  which notices are due (pure)
    service.py    the evaluation-cycle duty: read, send once, record (audit)
"""
