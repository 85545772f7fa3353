"""``python -m agent.keygen HOSTNAME``: print a fresh key and CSR as JSON, then exit.

Run by the agent for certificate renewal so that the long-running process never
imports the cryptography library (see ``agent.identity.new_key_and_csr``).
"""

from __future__ import annotations

import json
import sys

from agent.identity import new_key_and_csr


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    key_pem, csr_pem = new_key_and_csr(args[0] if args else "")
    json.dump({"key_pem": key_pem.decode(), "csr_pem": csr_pem.decode()}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
