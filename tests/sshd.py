"""A real OpenSSH sshd for tests: started on a free 127.0.0.1 port as the current user.

Used by the agent's session tests and the end-to-end tests::

    with RealSshd(tmp_path / "sshd") as sshd:          # or sshd = RealSshd(...).start()
        sshd.port, sshd.address                        # 40123, "127.0.0.1:40123"
        sshd.user                                      # the current user (root in CI)
        sshd.client_key                                # private key authorised for .user
        sshd.host_key_pub                              # the sshd's public host key (.pub)
        sshd.sessions_config()                         # an agent's [sessions] for this sshd
        sshd.log_text()                                # what sshd logged (-e)

Everything lives in the given directory: a fresh ed25519 host key, a client key
pair, the authorized_keys file (``authorize`` adds more keys) and the generated
sshd_config (UsePAM no, StrictModes no, PidFile none, public keys only,
PermitRootLogin prohibit-password, Subsystem sftp). ``needs_sshd`` skips a test
with a clear reason where /usr/sbin/sshd is missing (CI installs openssh-server).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

__all__ = ["SFTP_SERVER", "SSHD", "RealSshd", "needs_sshd", "sshd_missing"]

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
START_TIMEOUT_SECONDS = 15.0


def sshd_missing() -> str:
    """Why a real sshd cannot run here ("" when it can)."""
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is not installed (Debian package openssh-server; .ci/run installs it)"
    if shutil.which(SSH_KEYGEN) is None:
        return "ssh-keygen is not installed (Debian package openssh-client)"
    return ""


needs_sshd = pytest.mark.skipif(bool(sshd_missing()), reason=sshd_missing() or "sshd present")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RealSshd:
    """``/usr/sbin/sshd -D -e -f <generated config>`` on 127.0.0.1, as the current user."""

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.host = "127.0.0.1"
        self.port = port or _free_port()
        self.user = getpass.getuser()
        self.host_key = directory / "ssh_host_ed25519_key"
        self.host_key_pub = directory / "ssh_host_ed25519_key.pub"
        self.client_key = directory / "client_key"
        self.client_key_pub = directory / "client_key.pub"
        self.authorized_keys = directory / "authorized_keys"
        self.config_path = directory / "sshd_config"
        self.log_path = directory / "sshd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> RealSshd:
        """Generate keys and config, start sshd and wait until it accepts connections."""
        missing = sshd_missing()
        if missing:
            pytest.skip(missing)
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            keygen(self.host_key, "aftercare-test-sshd")
        if not self.client_key.exists():
            keygen(self.client_key, "aftercare-test-client")
            self.authorize(self.client_key_pub)
        self.config_path.write_text(self._config())
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self._wait_until_listening()
        return self

    def stop(self) -> None:
        """Stop sshd (SIGTERM, then SIGKILL); logins it started end with it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def authorize(self, public_key: Path | str) -> None:
        """Let the key (a .pub file or an authorized_keys line) log in as ``user``."""
        line = public_key.read_text() if isinstance(public_key, Path) else public_key
        with self.authorized_keys.open("a") as file:
            file.write(line.strip() + "\n")
        self.authorized_keys.chmod(0o600)

    def sessions_config(self, **overrides: Any) -> dict[str, Any]:
        """An agent's ``[sessions]`` table logging in to this sshd as ``user``."""
        return {
            "backend": "sshd",
            "sshd_address": self.address,
            "user": self.user,
            "key_file": str(self.client_key),
            "host_key_files": [str(self.host_key_pub)],
            **overrides,
        }

    def ssh_command(self, *remote: str) -> list[str]:
        """argv of the OpenSSH client logging in directly (benchmarks' baseline)."""
        return [
            "ssh",
            "-p",
            str(self.port),
            "-i",
            str(self.client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={self.directory / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            f"{self.user}@{self.host}",
            *remote,
        ]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> RealSshd:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _config(self) -> str:
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.host_key}",
            "PidFile none",
            "UsePAM no",
            "StrictModes no",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {self.user}",
            "PrintMotd no",
            "PrintLastLog no",
            "LogLevel VERBOSE",
            f"Subsystem sftp {SFTP_SERVER}",
        ]
        return "\n".join(lines) + "\n"

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"sshd exited ({self.process.returncode}):\n{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"sshd did not listen on {self.address}") from None
                time.sleep(0.05)


def keygen(path: Path, comment: str) -> Path:
    """A new passphrase-less Ed25519 key pair at ``path`` and ``path``.pub."""
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path
