"""``package_inventory``: installed packages and the most recent package changes.

The first package manager found answers: dpkg (recent changes from
/var/log/dpkg.log), rpm (``rpm -qa --last``), apk or pacman (no history).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from agent.playbook.builtins.common import (
    MARGIN,
    CommandResult,
    Host,
    command_text,
    int_arg,
    lines_out,
    run_command,
)

PACKAGE_QUERIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dpkg-query", ("-W", "-f=${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n")),
    ("rpm", ("-qa", "--queryformat", "ii \t%{NAME}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n")),
    ("apk", ("info", "-v")),
    ("pacman", ("-Q",)),
)
_LOG_TAIL = 2 * 1024 * 1024  # bytes of dpkg.log read for recent changes


def package_inventory(host: Host, deadline: float, /, *, recent: int | str = 50) -> bytes:
    """Installed packages (name, version, architecture) and the ``recent`` latest changes."""
    changes = int_arg("recent", recent, 0, 1000)
    for program, options in PACKAGE_QUERIES:
        path = host.which(program)
        if path is None:
            continue
        result = run_command([path, *options], deadline - MARGIN)
        packages = sorted(package_lines(program, result.output.decode("utf-8", "replace")))
        note = command_text(CommandResult(result.returncode, b"", result.truncated), program)
        out = lines_out([f"{len(packages)} packages installed ({program})", *packages]) + note
        if changes:
            out += lines_out(_recent(host, program, path, changes, deadline))
        return out
    return b"no package manager found (dpkg, rpm, apk, pacman)\n"


def package_lines(program: str, text: str) -> Iterator[str]:
    """Per installed package: "name version arch" (dpkg, rpm) or the apk/pacman line."""
    for line in text.splitlines():
        if program in ("dpkg-query", "rpm"):
            status, _, rest = line.partition("\t")
            if status.startswith("ii"):
                yield rest.replace("\t", " ")
        elif line.strip():
            yield line.strip()


def _recent(host: Host, program: str, path: str, count: int, deadline: float) -> list[str]:
    if program == "dpkg-query":
        log = host.var_log / "dpkg.log"
        lines = [line for line in _tail(log) if " install " in line or " upgrade " in line]
        return [f"last {min(count, len(lines))} package changes ({log}):", *lines[-count:]]
    if program == "rpm":
        result = run_command([path, "-qa", "--last"], deadline - MARGIN, limit=256 * 1024)
        lines = result.output.decode("utf-8", "replace").splitlines()[:count]
        return [f"last {len(lines)} package changes (rpm -qa --last):", *lines]
    return [f"recent package changes: not available for {program}"]


def _tail(path: Path) -> deque[str]:
    try:
        with path.open("rb") as file:
            file.seek(max(0, os.fstat(file.fileno()).st_size - _LOG_TAIL))
            data = file.read(_LOG_TAIL)
    except OSError:
        return deque()
    return deque(data.decode("utf-8", "replace").splitlines()[1:] if data else [])
