"""Real processes for end-to-end tests: a collector, agents and the CLIs, on free loopback ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

PYTHON = sys.executable
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def run(
    module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` and capture its output (never raises on exit code)."""
    return subprocess.run(
        [PYTHON, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def alertmanager_ready(port: int) -> bool:
    """True once the Alertmanager on ``port`` answers /-/ready."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def post_alerts(port: int, alerts: list[dict[str, Any]]) -> None:
    """Push ``alerts`` into the Alertmanager on ``port`` (API v2), as Prometheus would."""
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert reply.status == 200


class PortTaken(AssertionError):
    """The collector exited because one of its ports was taken meanwhile."""


@dataclass
class Collector:
    """``aftercare-collector serve`` as a child process on fixed free ports."""

    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    agent_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    ssh_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    started_before: bool = False

    @property
    def api(self) -> str:
        return f"127.0.0.1:{self.api_port}"

    @property
    def agent_address(self) -> str:
        return f"127.0.0.1:{self.agent_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self) -> Collector:
        """Start the collector; on its first start, retry on other ports if one was taken.

        ``free_port`` only finds a port that was free a moment ago: another test process
        (pytest-xdist runs two) may bind it first. Later starts (restarts) keep their
        ports, since agents are configured with them.
        """
        for attempt in range(3):
            try:
                return self._start_once()
            except PortTaken:
                if self.started_before or attempt == 2:
                    raise
                self.agent_port, self.api_port = free_port(), free_port()
                self.metrics_port, self.ssh_port = free_port(), free_port()
        raise AssertionError("unreachable")

    def _start_once(self) -> Collector:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        endpoints = self.data_dir / "endpoints.json"
        endpoints.unlink(missing_ok=True)
        log_start = len(self.log_text())
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "collector.cli",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--listen",
                self.agent_address,
                "--api-listen",
                self.api,
                "--metrics-listen",
                f"127.0.0.1:{self.metrics_port}",
                "--ssh-listen",
                f"127.0.0.1:{self.ssh_port}",
                *(() if "--web-listen" in self.extra_args else ("--web-listen", "off")),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        wait_for(
            lambda: endpoints.exists() or self.process.poll() is not None,  # type: ignore[union-attr]
            30,
            "collector start",
        )
        if self.process.poll() is not None:
            text = self.log_text()
            if "Address already in use" in text[log_start:]:
                raise PortTaken(text)
            raise AssertionError(f"collector exited:\n{text}")
        self.started_before = True
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run an ``aftercare-collector`` admin command against this data dir."""
        return run("collector.cli", *args, "--data-dir", str(self.data_dir))

    def join_command(self, customer: str, ttl: str = "24h") -> list[str]:
        result = self.admin("token", "create", "--customer", customer, "--ttl", ttl)
        assert result.returncode == 0, result.stderr
        words = result.stdout.split()
        assert words[:2] == ["aftercare-agent", "enroll"], result.stdout
        return words[2:]

    def add_user(self, name: str, role: str, customer: str | None = None) -> str:
        args = ["user", "add", name, "--role", role]
        if customer:
            args += ["--customer", customer]
        result = self.admin(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def client(self, token: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the ``aftercare`` client as the user holding ``token``."""
        return run("collector.client.cli", *self.client_options(token), *args)

    def client_options(self, token: str) -> list[str]:
        """The ``aftercare`` options that reach this collector as ``token``'s user."""
        return [
            "--collector",
            self.api,
            "--token",
            token,
            "--ca-file",
            str(self.data_dir / "ca.pem"),
        ]

    def client_json(self, token: str, *args: str) -> Any:
        result = self.client(token, *args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return str(response.read().decode())


@dataclass
class Agent:
    """An enrolled ``aftercare-agent run`` child process."""

    state_dir: Path
    hostname: str
    config: dict[str, Any] = field(default_factory=lambda: {"interval": "1s"})
    process: subprocess.Popen[bytes] | None = None

    def enroll(self, join_args: list[str]) -> subprocess.CompletedProcess[str]:
        return run(
            "agent.cli",
            "enroll",
            *join_args,
            "--state-dir",
            str(self.state_dir),
            "--hostname",
            self.hostname,
        )

    @property
    def log_path(self) -> Path:
        return self.state_dir.parent / f"{self.state_dir.name}.log"

    def start(self) -> Agent:
        config_path = self.state_dir.parent / f"{self.state_dir.name}.toml"
        config_path.write_text(_toml({"hostname": self.hostname, **self.config}))
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "agent.cli",
                "run",
                "--state-dir",
                str(self.state_dir),
                "--config",
                str(config_path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    @property
    def agent_id(self) -> str:
        return str(json.loads((self.state_dir / "identity.json").read_text())["agent_id"])

    def status(self) -> dict[str, Any]:
        result = run("agent.cli", "status", "--state-dir", str(self.state_dir), "--json")
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))


def _toml(values: dict[str, Any]) -> str:
    lines: list[str] = []
    tables = {k: v for k, v in values.items() if isinstance(v, dict)}
    for key, value in values.items():
        if key not in tables:
            lines.append(f"{key} = {json.dumps(value)}")
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def vendor_catalogue(directory: Path, playbooks: dict[str, str]) -> Path:
    """A catalogue of ``playbooks`` (file name -> YAML) in ``directory/catalogue``, signed
    with a new vendor key valid a day; returns the vendor's public key file (for an
    agent's ``trusted_keys``). The catalogue is ``directory / "catalogue"``."""
    import datetime as dt

    from playbooks.sign import write_signed_catalogue
    from playbooks.signing_keys import generate_keypair

    private, public = generate_keypair()
    (directory / "vendor.pub").write_bytes(public)
    catalogue = directory / "catalogue"
    catalogue.mkdir()
    for name, text in playbooks.items():
        (catalogue / name).write_text(text)
    write_signed_catalogue(catalogue, private, catalogue_version=1, valid_for=dt.timedelta(days=1))
    return directory / "vendor.pub"
