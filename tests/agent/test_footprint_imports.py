"""The agent's start-up imports leave out what a metrics cycle does not need (issue 17).

Each module loaded stays resident (its code objects), so a regression here shows up as
RSS in ``tests/bench/agent_cycle.py``; these tests name the module that came back.
Each probe runs in a fresh interpreter and does what ``aftercare-agent run`` does at
start that could pull a module in (read its command line, finish a renewal, write a
file atomically, build the hello's platform and the session endpoint).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LOADED_ON_FIRST_RUN = (
    "agent.playbook_runs",
    "agent.playbook.approvals",
    "agent.journal",
    "agent.playbook.executor",
    "agent.playbook.output",
    "agent.playbook.process",
    "agent.playbook.redact",
    "agent.playbook.redact_rules",
    "agent.playbook.verify_child",
    "agent.playbook.waiting",
    "playbooks.model",
    "playbooks.errors",
)
LOADED_WITH_THE_FIRST_APPROVAL = (  # what an approval or revocation needs
    "common.approval_format",
)
LOADED_ON_FIRST_SESSION_MESSAGE = (  # with sessions.backend = "none", the default
    "agent.session.endpoint",
    "agent.session.tunnel",
    "agent.session.tunnel_io",
    "agent.session.requests",
    "agent.session.recording",
    "common.asciicast",
)
NOT_FOR_RUN = (
    "argparse",  # a plain `run` command line is read without it
    "agent.enroll",
    "platform",  # the hello's platform string comes from os.uname
    "random",  # backoff jitter from os.urandom
    "tempfile",  # write_atomic makes its own temporary file
    "shutil",  # recover_renewal needs it only to remove a staging directory
    "bz2",
    "lzma",
    "encodings.idna",  # host names go to getaddrinfo and TLS as ASCII bytes
)
NEVER_IN_THE_AGENT = (  # verification and builtin steps run in child processes
    "yaml",
    "cryptography",
    "grpc",
    "psutil",
    "agent.playbook.builtins",
)

START_PROBE = """
import asyncio, json, sys
from pathlib import Path
import agent.cli, agent.main_loop
from agent.config import SessionsConfig
from agent.consent.memory import ConsentMemory
from agent.consent.verify import ConsentVerifier
from agent.identity import recover_renewal
from agent.playbook.policy import Policy
from agent.session.setup import build_session_endpoint
from common.atomic import write_atomic

state = Path(sys.argv[1])
args = agent.cli.parse_args(["run", "--state-dir", str(state)])
assert args.handler is agent.cli._run
from agent.audit_witness import AuditWitness
from agent.consent.root import pinned_root
recover_renewal(state)
write_atomic(state / "probe", b"x")
agent.main_loop.platform_name()

async def nothing(message): pass

consent = ConsentVerifier("", "acme", "agt-1", ConsentMemory(state))
endpoint = build_session_endpoint(
    state, SessionsConfig(), Policy(), nothing, lambda: None, consent
)
endpoint.start()
print(json.dumps(sorted(sys.modules)))
"""

RUN_PROBE = """
import asyncio, json, sys
from pathlib import Path
from agent.playbook.executor import Executor, RenderedBuiltin
from agent.playbook.redact import Redactor
from playbooks.model import Playbook

PLAYBOOK = Playbook(name="psi", version="1.0.0", description="probe", mode="read-only")

async def main():
    chunks = []
    async def keep(chunk): chunks.append(chunk)
    step = RenderedBuiltin(name="psi", function="pressure_stall")
    result = await Executor(redactor=Redactor()).run(
        PLAYBOOK, (step,), keep, asyncio.Event(), 60.0)
    return result.steps[0].status, b"".join(c.data for c in chunks).decode()

status, text = asyncio.run(main())
print(json.dumps({"status": status, "text": text, "modules": sorted(sys.modules)}))
"""


def _run_probe(code: str, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout


def test_starting_the_agent_does_not_load_what_a_cycle_does_not_need(tmp_path: Path) -> None:
    loaded = set(json.loads(_run_probe(START_PROBE, str(tmp_path))))
    assert "agent.session.setup" in loaded  # the probe itself worked
    unexpected = [
        m
        for m in LOADED_ON_FIRST_RUN
        + LOADED_WITH_THE_FIRST_APPROVAL
        + LOADED_ON_FIRST_SESSION_MESSAGE
        + NOT_FOR_RUN
        + NEVER_IN_THE_AGENT
        if m in loaded
    ]
    assert unexpected == [], f"loaded at start-up, costing resident memory: {unexpected}"


def test_a_builtin_step_runs_in_a_child_and_leaves_psutil_out_of_the_agent() -> None:
    answer = json.loads(_run_probe(RUN_PROBE))
    assert answer["status"] == "ok", answer["text"]
    assert "cpu" in answer["text"]  # pressure_stall's report came back from the child
    loaded = set(answer["modules"])
    assert "agent.playbook.executor" in loaded  # the probe ran a playbook step
    assert [m for m in NEVER_IN_THE_AGENT if m in loaded] == []
