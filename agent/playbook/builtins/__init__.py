"""Read-only builtin functions that playbook ``builtin`` steps call; each returns text.

The names and argument names are the contract in ``playbooks/builtins.py``
(``BUILTIN_FUNCTIONS``, ``BUILTIN_ARGS``, documented in docs/playbooks.md): every
function there is implemented here with exactly those keyword arguments, all
optional. ``default_builtins(host)`` is the registry the executor uses.

Every builtin is ``fn(host, deadline, /, **args) -> bytes``: ``host`` (bound by
``default_builtins``, out of a playbook's reach) says where to look - /proc, /sys,
/dev/kmsg, which programs exist - so tests point it at fixtures; ``deadline`` is a
``time.monotonic()`` value by which the function returns, with partial results
where it can (and says so); ``args`` are the step's arguments, validated here
(BuiltinArgumentError); other failures raise BuiltinError. A missing helper
program is reported in the output, not as a failure.

Nothing here changes the host. Only ``dns_resolve`` (the host's own resolver) and
``gateway_reachability`` (``ping`` to the default gateways) send anything. Output
is bounded: limits are clamped and helper programs' output is capped.

    common      Host, argument checks, run_command, formatting
    processes   top_processes
    disks       largest_directories, deleted_open_files
    network     listening_sockets, dns_resolve, gateway_reachability
    kernel      kernel_errors, oom_history
    services    failed_units, unit_journal
    system      pressure_stall, time_sync_status, system_summary
    hardware    sensors, smart_health
    packages    package_inventory
    facts       inspection_facts (structured JSON for the inspection)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from agent.playbook.builtins.common import (
    COMMAND_OUTPUT_LIMIT,
    CommandResult,
    Host,
    run_command,
)
from agent.playbook.builtins.disks import deleted_open_files, largest_directories
from agent.playbook.builtins.facts import inspection_facts
from agent.playbook.builtins.hardware import sensors, smart_health
from agent.playbook.builtins.kernel import KernelRecord, kernel_errors, kernel_records, oom_history
from agent.playbook.builtins.network import (
    default_routes,
    dns_resolve,
    gateway_reachability,
    listening_sockets,
)
from agent.playbook.builtins.packages import package_inventory
from agent.playbook.builtins.processes import top_processes
from agent.playbook.builtins.services import failed_units, unit_journal
from agent.playbook.builtins.system import pressure_stall, system_summary, time_sync_status

__all__ = [
    "BUILTIN_NAMES",
    "COMMAND_OUTPUT_LIMIT",
    "CommandResult",
    "Host",
    "KernelRecord",
    "default_builtins",
    "default_routes",
    "kernel_records",
    "run_command",
]

FUNCTIONS: Mapping[str, Callable[..., bytes]] = {
    "top_processes": top_processes,
    "largest_directories": largest_directories,
    "deleted_open_files": deleted_open_files,
    "listening_sockets": listening_sockets,
    "kernel_errors": kernel_errors,
    "failed_units": failed_units,
    "unit_journal": unit_journal,
    "pressure_stall": pressure_stall,
    "dns_resolve": dns_resolve,
    "gateway_reachability": gateway_reachability,
    "time_sync_status": time_sync_status,
    "sensors": sensors,
    "smart_health": smart_health,
    "package_inventory": package_inventory,
    "system_summary": system_summary,
    "oom_history": oom_history,
    "inspection_facts": inspection_facts,
}
BUILTIN_NAMES: tuple[str, ...] = tuple(sorted(FUNCTIONS))


def default_builtins(host: Host | None = None) -> dict[str, Callable[..., bytes]]:
    """The builtin registry for ``Executor``: each function bound to ``host``."""
    bound = host or Host()
    return {name: functools.partial(function, bound) for name, function in FUNCTIONS.items()}
