"""systemd builtins: ``failed_units`` and ``unit_journal`` (via systemctl / journalctl).

Where systemd is not the running init, or its tools are missing, the output says
"systemd not available" instead of failing. Unit names are checked before they
become arguments (letters, digits, ``@_.:\\-``; never a leading ``-``), including
names read back from systemctl.
"""

from __future__ import annotations

import re
import time

from agent.playbook.builtins.common import (
    MARGIN,
    CommandResult,
    Host,
    command_text,
    duration_arg,
    int_arg,
    lines_out,
    pattern_arg,
    remaining,
    run_command,
)

NO_SYSTEMD = b"systemd not available\n"
UNIT_NAME = r"[A-Za-z0-9@_.:\\][A-Za-z0-9@_.:\\-]{0,254}"
_SHOW = "Id,ActiveState,Result,InactiveEnterTimestamp,ExecMainStatus"
_MAX_UNITS = 100
_MAX_JOURNALS = 10


def failed_units(host: Host, deadline: float, /) -> bytes:
    """Units in the failed state with their result, since when, and exit status."""
    systemctl = host.which("systemctl")
    if systemctl is None or not host.systemd_running():
        return NO_SYSTEMD
    units, listing = failed_unit_names(systemctl, deadline)
    if listing.returncode != 0:
        return command_text(listing, "systemctl")
    if not units:
        return b"no failed units\n"
    argv = [systemctl, "show", "--no-pager", f"--property={_SHOW}", *units[:_MAX_UNITS]]
    shown = run_command(argv, deadline - MARGIN)
    if shown.returncode != 0:
        return f"{len(units)} failed units\n".encode() + command_text(listing, "systemctl")
    lines = [f"{len(units)} failed units"]
    for props in _blocks(shown.output.decode(errors="replace")):
        lines.append(
            f"{props.get('Id', '?')}  {props.get('ActiveState', '?')}  "
            f"result={props.get('Result', '?')}  since {props.get('InactiveEnterTimestamp') or '?'}"
            f"  status={props.get('ExecMainStatus', '?')}"
        )
    return lines_out(lines)


def failed_unit_names(systemctl: str, deadline: float) -> tuple[list[str], CommandResult]:
    """Names of the failed units, and the listing command's result."""
    argv = [systemctl, "list-units", "--state=failed", "--all", "--plain", "--no-legend"]
    result = run_command([*argv, "--no-pager"], deadline - MARGIN)
    units = []
    for line in result.output.decode(errors="replace").splitlines():
        fields = [f for f in line.split() if f not in ("●", "*")]
        if fields and re.fullmatch(UNIT_NAME, fields[0]):
            units.append(fields[0])
    return units, result


def _blocks(text: str) -> list[dict[str, str]]:
    """``systemctl show`` output: one ``key=value`` block per unit, blank-line separated."""
    blocks: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if not line.strip():
            blocks.append({})
            continue
        key, _, value = line.partition("=")
        blocks[-1][key] = value
    return [block for block in blocks if block]


def unit_journal(
    host: Host,
    deadline: float,
    /,
    *,
    unit: str = "",
    lines: int | str = 100,
    since: str | float = "24h",
) -> bytes:
    """The newest ``lines`` journal lines within ``since`` of ``unit`` (empty: of every
    failed unit, at most 10)."""
    if unit:
        pattern_arg("unit", unit, UNIT_NAME, "a systemd unit name such as nginx.service")
    count = int_arg("lines", lines, 1, 5000)
    window = duration_arg("since", since, 1, 400 * 86400)
    journalctl = host.which("journalctl")
    if journalctl is None:
        return NO_SYSTEMD
    units = [unit]
    if not unit:
        systemctl = host.which("systemctl")
        if systemctl is None or not host.systemd_running():
            return NO_SYSTEMD
        units = failed_unit_names(systemctl, deadline)[0][:_MAX_JOURNALS]
        if not units:
            return b"no failed units\n"
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - window))
    out = b""
    for name in units:
        if remaining(deadline) < MARGIN * 2:
            return out + b"[time limit reached]\n"
        argv = [journalctl, "--no-pager", "--output=short-iso", f"--lines={count}"]
        argv += [f"--since={start}", f"--unit={name}"]
        out += f"-- {name} --\n".encode() if len(units) > 1 or not unit else b""
        out += command_text(run_command(argv, deadline - MARGIN), "journalctl")
    return out
