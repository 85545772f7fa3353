"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a temporary directory.

The cluster listens on 127.0.0.1 at a free port (and a unix socket in its directory),
trusts local connections, and is stopped and deleted when the test session ends. Nothing
system-wide is started or assumed. PostgreSQL refuses to run as root, so under root the
cluster runs as the unprivileged user ``nobody``. ``find_bin_dir`` returns None where no
PostgreSQL is installed; the fixtures then skip with that reason.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

NO_POSTGRESQL = (
    "no PostgreSQL server binaries (initdb, pg_ctl) found: install Debian's `postgresql` "
    "package (or put its bin directory on PATH) to run the PostgreSQL store tests"
)
UNPRIVILEGED_USER = "nobody"
SUPERUSER = "aftercare"


def find_bin_dir(
    path: str | None = None, debian_root: Path = Path("/usr/lib/postgresql")
) -> Path | None:
    """The directory holding initdb and pg_ctl: ``path`` (default: PATH) first, then the
    newest of Debian's versioned directories."""
    on_path = shutil.which("initdb", path=path)
    if on_path and shutil.which("pg_ctl", path=path):
        return Path(on_path).parent
    versions = sorted(
        (p for p in debian_root.glob("*/bin/initdb") if (p.parent / "pg_ctl").exists()),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


class PgCluster:
    """One running cluster; ``new_database()`` gives each test its own database."""

    def __init__(self, bin_dir: Path, *, durable: bool = False) -> None:
        self.bin_dir = bin_dir
        self.durable = durable  # fsync and synchronous commits on (benchmarks)
        self.root = Path(tempfile.mkdtemp(prefix="aftercare-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._counter = itertools.count(1)
        self._run_as = UNPRIVILEGED_USER if os.geteuid() == 0 else None

    def start(self) -> PgCluster:
        if self._run_as:
            user = pwd.getpwnam(self._run_as)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        fast = "" if self.durable else "-c fsync=off -c synchronous_commit=off "
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.root} {fast}"
            f"-c full_page_writes={'on' if self.durable else 'off'} -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database; return its URL."""
        name = f"t{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_text(self) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self._run_as:
            user = pwd.getpwnam(self._run_as)
            command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                       "--clear-groups", *command]  # fmt: skip
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=120, cwd=self.root, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{tool} failed ({result.returncode}): {result.stderr or result.stdout}\n"
                f"{self.log_text()[-3000:]}"
            )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
