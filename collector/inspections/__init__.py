"""Quarterly inspections (巡检): planned, consented, run, analysed, reported, signed.

Pure domain logic lives here (no gRPC, no SQL). ``inputs.py`` is the contract between
the part that gathers an inspection's data (the service, from the store and the
hosts' playbook runs) and the part that analyses it and renders the report.
"""
