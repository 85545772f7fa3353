"""The wire contract: ``.proto`` sources and the Python code generated from them.

Regenerate with ``make proto`` (``python -m proto.generate``); a test fails when
the committed generated files are stale.
"""
