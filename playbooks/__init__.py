"""Signed diagnostic playbooks: format, validation, signing and verification (not yet built)."""
