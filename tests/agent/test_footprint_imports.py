"""The agent's start-up imports leave out what only a playbook run needs (issue 17).

Each module loaded stays resident (its code objects), so a regression here shows up as
RSS in ``tests/bench/agent_cycle.py``; this test names the module that came back.
"""

from __future__ import annotations

import json
import subprocess
import sys

LOADED_ON_FIRST_RUN = (
    "agent.playbook.executor",
    "agent.playbook.output",
    "agent.playbook.process",
    "agent.playbook.redact",
    "agent.playbook.redact_rules",
    "agent.playbook.builtins",
    "psutil",
)
NEVER_IN_THE_AGENT = ("yaml", "cryptography", "grpc")  # verification runs in a child


def test_starting_the_agent_does_not_load_the_run_only_modules() -> None:
    code = (
        "import json, sys, agent.cli, agent.main_loop, agent.playbook_runs;"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded = set(json.loads(out))
    assert "agent.playbook_runs" in loaded  # the probe itself worked
    unexpected = [m for m in LOADED_ON_FIRST_RUN + NEVER_IN_THE_AGENT if m in loaded]
    assert unexpected == [], f"loaded at start-up, costing resident memory: {unexpected}"
