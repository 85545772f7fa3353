"""Signed diagnostic playbooks: the format, validation, signing and verification.

Modules: ``model`` (the records a playbook becomes), ``loader`` (YAML → Playbook, lint),
``exec_policy`` (what an exec step may run), ``builtins`` (the builtin functions and
their arguments), ``params`` (parameter values, rendering), ``signing`` (keys, manifest,
verification), ``errors`` (the exception tree), ``shipped`` (the shipped catalogue and
the development key). The cryptography library is only imported by the functions that
sign or verify. See docs/playbooks.md.
"""

from playbooks.builtins import BUILTIN_ARGS, BUILTIN_FUNCTIONS

__all__ = ["BUILTIN_ARGS", "BUILTIN_FUNCTIONS"]
