"""Drift: what changed on a host between its previous inspection and this one (pure).

Compares two ``HostFacts``: packages (added, removed, upgraded, downgraded), the
kernel, enabled units, failed units, listening ports, mounted filesystems and the
checksums of configuration files. Each change is ``{"kind", "item", "before",
"after"}`` (kinds in docs/inspection-report.md), sorted by kind then item, so the
same two inspections always give the same list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from collector.inspections.facts import HostFacts

__all__ = ["Change", "compare_versions", "drift"]

Change = dict[str, str | None]
_TOKEN = re.compile(r"\d+|[A-Za-z]+|~|[^A-Za-z\d~]")


def drift(before: HostFacts, after: HostFacts) -> list[Change]:
    """Every change from ``before`` to ``after``, sorted (see module doc)."""
    changes: list[Change] = []
    changes += _packages(before.packages, after.packages)
    if before.kernel != after.kernel and before.kernel and after.kernel:
        changes.append(_change("kernel.changed", "kernel", before.kernel, after.kernel))
    changes += _sets("unit.enabled", "unit.disabled", before.enabled_units, after.enabled_units)
    changes += _sets("unit.failed", "unit.recovered", before.failed_units, after.failed_units)
    changes += _sets(
        "port.opened",
        "port.closed",
        (listener.label() for listener in before.listening),
        (listener.label() for listener in after.listening),
    )
    changes += _mounts(before, after)
    changes += _config_files(before.config_files, after.config_files)
    return sorted(changes, key=lambda c: (str(c["kind"]), str(c["item"])))


def _change(kind: str, item: str, before: str | None, after: str | None) -> Change:
    return {"kind": kind, "item": item, "before": before, "after": after}


def _packages(before: Mapping[str, str] | None, after: Mapping[str, str] | None) -> list[Change]:
    if before is None or after is None:
        return []  # one side does not know its packages: no claim either way
    changes = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            changes.append(_change("package.added", name, None, new))
        elif new is None:
            changes.append(_change("package.removed", name, old, None))
        else:
            kind = "package.upgraded" if compare_versions(new, old) > 0 else "package.downgraded"
            changes.append(_change(kind, name, old, new))
    return changes


def _sets(added: str, removed: str, before: Iterable[str], after: Iterable[str]) -> list[Change]:
    old, new = set(before), set(after)
    return [_change(added, item, None, item) for item in sorted(new - old)] + [
        _change(removed, item, item, None) for item in sorted(old - new)
    ]


def _mounts(before: HostFacts, after: HostFacts) -> list[Change]:
    old = {m.mountpoint: f"{m.device} ({m.fstype})" for m in before.mounts}
    new = {m.mountpoint: f"{m.device} ({m.fstype})" for m in after.mounts}
    changes = []
    for mountpoint in sorted(old.keys() | new.keys()):
        was, now = old.get(mountpoint), new.get(mountpoint)
        if was == now:
            continue
        kind = "mount.added" if was is None else "mount.removed" if now is None else "mount.changed"
        changes.append(_change(kind, mountpoint, was, now))
    return changes


def _config_files(before: Mapping[str, str], after: Mapping[str, str]) -> list[Change]:
    changes = []
    for path in sorted(before.keys() | after.keys()):
        was, now = before.get(path), after.get(path)
        if was == now:
            continue
        kind = (
            "config.added" if was is None else "config.removed" if now is None else "config.changed"
        )
        changes.append(_change(kind, path, was, now))
    return changes


def compare_versions(left: str, right: str) -> int:
    """-1, 0 or 1, ordering package versions the way dpkg and rpm mostly agree on.

    An epoch ("1:") wins first; then runs of digits compare as numbers, letters as
    text, a letter run sorts before a digit run, and ``~`` sorts before anything,
    even the end of the version (``1.0~rc1`` < ``1.0``).
    """
    left_epoch, left_rest = _epoch(left)
    right_epoch, right_rest = _epoch(right)
    if left_epoch != right_epoch:
        return -1 if left_epoch < right_epoch else 1
    a, b = _TOKEN.findall(left_rest), _TOKEN.findall(right_rest)
    for index in range(max(len(a), len(b))):
        x = a[index] if index < len(a) else None
        y = b[index] if index < len(b) else None
        order = _compare_token(x, y)
        if order:
            return order
    return 0


def _epoch(version: str) -> tuple[int, str]:
    head, sep, rest = version.partition(":")
    return (int(head), rest) if sep and head.isdigit() else (0, version)


def _rank(token: str | None) -> int:
    if token == "~":
        return 0
    if token is None:
        return 1
    if token.isdigit():
        return 4
    return 3 if token.isalpha() else 2


def _compare_token(x: str | None, y: str | None) -> int:
    rank_x, rank_y = _rank(x), _rank(y)
    if rank_x != rank_y:
        return -1 if rank_x < rank_y else 1
    if x is None or y is None or x == y:
        return 0
    if x.isdigit() and y.isdigit():
        return (int(x) > int(y)) - (int(x) < int(y))
    return (x > y) - (x < y)
