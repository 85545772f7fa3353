"""Tickets: the closed-loop record of a fault, from detection to the customer's confirmation.

Pure domain logic (no gRPC, no SQL): the model, lifecycle transitions, SLA clocks,
escalation decisions and the fault analysis report. ``service.py`` glues them to
the store, the rule engine and the notifiers.
"""
