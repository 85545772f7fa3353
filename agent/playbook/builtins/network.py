"""Network builtins: ``listening_sockets``, ``dns_resolve``, ``gateway_reachability``.

Only ``dns_resolve`` (through the host's own resolver) and ``gateway_reachability``
(``ping`` to the default gateways, when installed) send anything; the rest reads
kernel tables. Without ``ping`` the gateway report still has the route and the
neighbour-table state of each gateway (from /proc/net/arp, or ``ip neigh`` for IPv6).
"""

from __future__ import annotations

import math
import socket
import struct
import time

import psutil

from agent.playbook.builtins.common import (
    MARGIN,
    Host,
    bounded,
    command_text,
    duration_arg,
    int_arg,
    lines_out,
    pattern_arg,
    read_text,
    remaining,
    run_command,
    table,
)
from agent.playbook.errors import BuiltinError
from common.safe_text import safe

RTF_UP = 0x0001
RTF_GATEWAY = 0x0002
ATF_COM = 0x02  # /proc/net/arp flag: the entry is complete (the neighbour answered)
_KEYWORDS = [["nameserver"], ["search"], ["domain"], ["options"]]
_HOSTNAME = (
    r"(?=.{1,253}\.?$)[A-Za-z0-9_][A-Za-z0-9_-]{0,62}(?:\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?"
)


def listening_sockets(host: Host, deadline: float, /, *, limit: int | str = 200) -> bytes:
    """TCP sockets in LISTEN state and bound UDP sockets, with the owning process."""
    count = int_arg("limit", limit, 1, 5000)
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError) as exc:
        raise BuiltinError(f"cannot list sockets: {exc}") from exc
    rows: list[tuple[int, str, str, int | None]] = []
    for conn in connections:
        tcp = conn.type == socket.SOCK_STREAM
        if (tcp and conn.status != psutil.CONN_LISTEN) or (not tcp and conn.raddr):
            continue
        if not conn.laddr:
            continue
        ip, port = conn.laddr.ip, conn.laddr.port
        proto = ("tcp" if tcp else "udp") + ("6" if conn.family == socket.AF_INET6 else "")
        rows.append((port, proto, f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}", conn.pid))
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    names: dict[int, str] = {}
    lines = [
        f"{len(rows)} listening sockets" + (f" (first {count} shown)" if len(rows) > count else ""),
        f"{'PROTO':<6} {'LOCAL ADDRESS':<40} {'PID':>7}  PROCESS",
    ]
    for _, proto, local, pid in rows[:count]:
        owner = names.setdefault(pid, _process_name(pid)) if pid is not None else "?"
        lines.append(f"{proto:<6} {local:<40} {pid if pid is not None else '-':>7}  {owner}")
    return lines_out(lines)


def _process_name(pid: int) -> str:
    try:
        return safe(psutil.Process(pid).name())  # a comm may hold a newline
    except (psutil.Error, OSError):
        return "?"


def dns_resolve(
    host: Host, deadline: float, /, *, name: str = "", timeout: str | float = "5s"
) -> bytes:
    """Resolve ``name`` (default: this host's name) through the system resolver."""
    name = pattern_arg("name", name or socket.gethostname(), _HOSTNAME, "a host name")
    limit = min(duration_arg("timeout", timeout, 0.1, 60), max(0.1, remaining(deadline) - MARGIN))
    lines = [f"resolver configuration ({host.etc / 'resolv.conf'}):"]
    lines += [f"  {line}" for line in _resolv_conf(host)] or ["  (none)"]
    started = time.monotonic()
    answer = bounded(lambda: socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP), limit)
    took = (time.monotonic() - started) * 1000
    if answer is None:
        lines.append(f"{name}: no answer within {limit:g}s")
    elif isinstance(answer, BaseException):
        lines.append(f"{name}: resolution failed after {took:.0f}ms: {answer}")
    else:
        addresses = sorted({str(info[4][0]) for info in answer})
        lines.append(f"{name}: {len(addresses)} addresses in {took:.0f}ms")
        lines += [f"  {address}" for address in addresses]
    return lines_out(lines)


def _resolv_conf(host: Host) -> list[str]:
    text = read_text(host.etc / "resolv.conf") or ""
    return [line.strip() for line in text.splitlines() if line.split(None, 1)[:1] in _KEYWORDS]


def default_routes(host: Host) -> list[tuple[str, str, int]]:
    """``(gateway, interface, metric)`` of the IPv4 and IPv6 default routes."""
    routes = []
    for fields in table(host.proc / "net" / "route", skip_header=True):
        if len(fields) >= 8 and fields[1] == "00000000" and fields[7] == "00000000":
            flags = int(fields[3], 16)
            if flags & RTF_UP and flags & RTF_GATEWAY:
                gateway = socket.inet_ntoa(struct.pack("<I", int(fields[2], 16)))
                routes.append((gateway, fields[0], int(fields[6])))
    for fields in table(host.proc / "net" / "ipv6_route"):
        if len(fields) >= 10 and fields[0] == "0" * 32 and fields[1] == "00":
            flags = int(fields[8], 16)
            if flags & RTF_UP and flags & RTF_GATEWAY:
                gateway = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(fields[4]))
                routes.append((gateway, fields[9], int(fields[5], 16)))
    return routes


def gateway_reachability(
    host: Host, deadline: float, /, *, count: int | str = 3, timeout: str | float = "1s"
) -> bytes:
    """Each default gateway: its route, neighbour-table state, and a ping when installed."""
    probes = int_arg("count", count, 1, 20)
    wait = duration_arg("timeout", timeout, 0.1, 10)
    routes = default_routes(host)
    if not routes:
        return b"no default route\n"
    out = b""
    ping = host.which("ping")
    for gateway, device, metric in routes:
        out += lines_out(
            [
                f"default route via {gateway} dev {device} metric {metric}",
                f"  neighbour: {_neighbour(host, gateway, device, deadline)}",
            ]
        )
        if ping is None:
            continue
        if remaining(deadline) < 1:
            out += b"  [time limit reached]\n"
            break
        argv = [ping, "-n", "-c", str(probes), "-W", str(max(1, math.ceil(wait))), gateway]
        if ":" in gateway:
            argv.insert(1, "-6")
        result = run_command(argv, deadline - MARGIN, limit=64 * 1024)
        out += f"$ ping {' '.join(argv[1:])}\n".encode()
        out += command_text(result, "ping")
    if ping is None:
        out += b"ping is not installed; reporting the route and neighbour state only\n"
    return out


def _neighbour(host: Host, gateway: str, device: str, deadline: float) -> str:
    if ":" not in gateway:
        for fields in table(host.proc / "net" / "arp", skip_header=True):
            if len(fields) >= 6 and fields[0] == gateway and fields[5] == device:
                state = "complete" if int(fields[2], 16) & ATF_COM else "incomplete"
                return f"{fields[3]} ({state})"
        return "no entry in the ARP table"
    ip = host.which("ip")
    if ip is None:
        return "unknown (ip not installed)"
    result = run_command([ip, "-6", "neigh", "show", gateway, "dev", device], deadline - MARGIN)
    return result.output.decode(errors="replace").strip() or "no entry in the neighbour table"
