"""Customer notices of what waits for the customer's approval: a remote session, a
playbook run. Each goes to the customer's contacts (webhook, e-mail) with the portal
link to the exact page, in the customer's language, once per recipient.

    approvals.py  which notices are due and what they say (pure; the texts and their
                  gettext catalogue are in collector/notice_texts)
    service.py    the evaluation-cycle duty (store due notices in the outbox) and
                  their outbox sender (still waiting? deliver, audit)
"""
