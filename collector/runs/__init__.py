"""Playbook runs: engineers ask, agents verify and execute, the collector records.

model.py      RunRecord and the run states (pure domain; the store imports it)
errors.py     UnknownRun
catalogue.py  the signed playbook catalogue the collector serves (no signing key)
service.py    RunService: start, approve, follow, record agent messages, attach to tickets
"""
