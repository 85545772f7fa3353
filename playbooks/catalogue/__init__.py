"""Package data: the shipped catalogue of signed playbooks (``*.yaml``, MANIFEST.json,
MANIFEST.sig). Edit a playbook, then run ``python -m playbooks.sign_dev``."""
