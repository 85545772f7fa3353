"""``make demo``: a collector on its embedded SQLite store under ./var and one local agent.

Runs the real commands (``aftercare-collector serve``, ``token create``,
``aftercare-agent enroll`` and ``run``) as child processes, prints what to try
next, and stops both on Ctrl-C. Re-running reuses ./var (the agent stays enrolled).

It also plays the customer's side of consent (docs/approvals.md) under
``./var/customer``: an approval root (``aftercare approvers init``) pinned on the
demo host, and a customer user ``carol`` whose approval key the root certified
(``approvers key`` / ``approvers add``). The host keeps the secure defaults:
sessions and mutating playbooks need an approval signed by carol.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from playbooks.shipped import dev_public_key_path

READY_TIMEOUT_SECONDS = 30.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m collector.demo",
        description="Run a demo collector and a local agent under --var.",
    )
    parser.add_argument("--var", type=Path, default=Path("var"), help="state directory (var)")
    parser.add_argument("--interval", default="5s", help="agent collection interval (5s)")
    parser.add_argument(
        "--exit-after",
        type=float,
        default=0,
        help="stop after this many seconds (0: run until Ctrl-C)",
    )
    args = parser.parse_args(argv)
    var: Path = args.var.resolve()
    data_dir, state_dir = var / "collector", var / "agent"
    bin_dir = Path(sys.executable).parent
    collector = _start_collector(bin_dir, data_dir, var / "collector.log")
    agent: subprocess.Popen[bytes] | None = None
    try:
        endpoints = json.loads((data_dir / "endpoints.json").read_text())
        if not (state_dir / "identity.json").exists():
            _enroll(bin_dir, data_dir, state_dir)
        customer = _customer_side(bin_dir, data_dir, endpoints["api"], var / "customer")
        config = var / "agent.toml"
        policy = var / "policy.toml"
        policy.write_text(
            "# the defaults: read-only playbooks run; mutating playbooks and remote sessions\n"
            '# need an approval signed by a customer approver (approval = "signed")\n'
        )
        policy.chmod(0o600)
        config.write_text(
            f'interval = "{args.interval}"\n\n[playbooks]\n'
            "# the DEVELOPMENT vendor key that signs the shipped catalogue; a vendor pins its own\n"
            f'trusted_keys = ["{dev_public_key_path()}"]\npolicy = "{policy}"\n\n'
            "# remote sessions open a PTY shell as you (a real install logs in through sshd)\n"
            '[sessions]\nbackend = "pty"\n\n'
            "# the customer's approval root (var/customer/approval-root.key stays with them)\n"
            f'[approvals]\nroot = "{customer.root}"\n'
        )
        agent = _spawn(
            [
                str(bin_dir / "aftercare-agent"),
                "run",
                "--state-dir",
                str(state_dir),
                "--config",
                str(config),
            ],
            var / "agent.log",
        )
        _show_fleet(bin_dir, data_dir, endpoints["api"])
        _print_next_steps(data_dir, endpoints, var, customer)
        _wait(collector, agent, args.exit_after)
    finally:
        for process in (agent, collector):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=15)
    return 0


def _start_collector(bin_dir: Path, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "endpoints.json").unlink(missing_ok=True)
    process = _spawn(
        [str(bin_dir / "aftercare-collector"), "serve", "--data-dir", str(data_dir)], log
    )
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not (data_dir / "endpoints.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the collector did not start; see {log}:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    return process


def _enroll(bin_dir: Path, data_dir: Path, state_dir: Path) -> None:
    join = subprocess.run(
        [
            str(bin_dir / "aftercare-collector"),
            "token",
            "create",
            "--data-dir",
            str(data_dir),
            "--customer",
            "demo-customer",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    print("join command:", " ".join(join))
    command = [str(bin_dir / join[0]), *join[1:], "--state-dir", str(state_dir)]
    subprocess.run(command, check=True)


def _show_fleet(bin_dir: Path, data_dir: Path, api: str) -> None:
    """Print ``aftercare agents`` once the local agent has reported."""
    command = [
        str(bin_dir / "aftercare"),
        "--collector",
        api,
        "--ca-file",
        str(data_dir / "ca.pem"),
        "--token",
        (data_dir / "admin-token").read_text().strip(),
        "agents",
    ]
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        listing = subprocess.run(command, capture_output=True, text=True).stdout
        if "connected" in listing and "%" in listing:
            print("\n$ aftercare agents\n" + listing, end="")
            return
        time.sleep(0.5)


@dataclass(frozen=True)
class Customer:
    """The demo customer's side: its root's fingerprint, carol's token and key file."""

    root: str
    carol_token: str
    carol_key: Path


def _customer_side(bin_dir: Path, data_dir: Path, api: str, home: Path) -> Customer:
    """Create (once) the approval root, carol, her approval key and its certificate."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    root_key, carol_key = home / "approval-root.key", home / "carol.key"
    state = home / "customer.json"
    if state.exists():
        saved = json.loads(state.read_text())
        return Customer(saved["root"], saved["carol_token"], carol_key)
    client = [str(bin_dir / "aftercare"), "--collector", api, "--ca-file", str(data_dir / "ca.pem")]
    add_user = [str(bin_dir / "aftercare-collector"), "user", "add", "carol", "--role"]
    add_user += ["customer", "--customer", "demo-customer", "--data-dir", str(data_dir)]
    token = _output(add_user).strip()
    root = json.loads(_output([*client, "approvers", "init", "--out", str(root_key), "--json"]))
    key = json.loads(_output([*client, "approvers", "key", "--out", str(carol_key), "--json"]))
    certify = [*client, "--token", token, "approvers", "add", "carol"]
    certify += ["--key", key["public_key"], "--customer", "demo-customer"]
    certify += ["--root-key", str(root_key), "--out", str(carol_key.with_suffix(".cert"))]
    _output(certify)
    customer = Customer(root["root_fingerprint"], token, carol_key)
    state.write_text(json.dumps({"root": customer.root, "carol_token": token}))
    state.chmod(0o600)
    return customer


def _output(command: list[str]) -> str:
    """What ``command`` prints; exits the demo with its error if it fails."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"demo set-up failed: {' '.join(command[:4])} ...: {done.stderr.strip()}")
    return done.stdout


def _spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)


def _print_next_steps(
    data_dir: Path, endpoints: dict[str, str], var: Path, customer: Customer
) -> None:
    token = (data_dir / "admin-token").read_text().strip()
    venv_bin = Path(sys.executable).parent
    rel_bin = os.path.relpath(venv_bin)
    print(
        f"""
aftercare demo is running (logs: {var}/collector.log, {var}/agent.log). In another shell:

  export PATH="$PWD/{rel_bin}:$PATH"
  export AFTERCARE_COLLECTOR={endpoints["api"]}
  export AFTERCARE_TOKEN={token}
  export AFTERCARE_CA_FILE={data_dir}/ca.pem

  aftercare agents                     # hosts, connectivity, health summary
  aftercare host $(hostname) --json    # latest metrics and the gaps list
  aftercare tickets                    # tickets the default rules opened (if any)
  aftercare playbooks list             # the signed diagnostic catalogue
  aftercare run time-sync --host $(hostname) --follow
  curl -s http://127.0.0.1:9464/metrics | grep aftercare_host_memory
  aftercare-collector token create --data-dir {data_dir} --customer acme
  aftercare-collector audit verify --data-dir {data_dir}

  # a remote session: you request it, carol of demo-customer signs her approval with
  # her own key (certified by the customer's root under {var}/customer), the host
  # verifies it, you log in
  aftercare keys add ~/.ssh/id_ed25519.pub     # any OpenSSH public key of yours
  SID=$(aftercare session request --host $(hostname) --reason try --duration 10m --json \\
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["session_id"])')
  export CAROL={customer.carol_token} AFTERCARE_APPROVAL_KEY={customer.carol_key}
  AFTERCARE_TOKEN=$CAROL aftercare session approve $SID
  aftercare ssh $SID                           # or: ssh -p 2222 $SID@127.0.0.1
  AFTERCARE_TOKEN=$CAROL aftercare session watch $SID   # in a third shell
  AFTERCARE_TOKEN=$CAROL aftercare approvers list       # carol's certificate
  aftercare-agent status --state-dir {var}/agent --config {var}/agent.toml  # the pinned root

Press Ctrl-C to stop.""",
        flush=True,
    )


def _wait(
    collector: subprocess.Popen[bytes], agent: subprocess.Popen[bytes], exit_after: float
) -> None:
    deadline = time.monotonic() + exit_after if exit_after else None
    try:
        while collector.poll() is None and agent.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                return
            time.sleep(0.5)
        print("a demo process exited; see the logs under var/", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopping")


if __name__ == "__main__":
    sys.exit(main())
