"""Drift between two inspections of a host, and package version ordering."""

from __future__ import annotations

from typing import Any

import pytest

from collector.inspections.analysis import analyse
from collector.inspections.drift import compare_versions
from tests.collector.inspection_fixtures import facts_document, host, inspection


def drift_of(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    entry = analyse(inspection([host(facts=after, previous=before)]))["hosts"][0]
    assert entry["drift_state"] == "compared"
    return list(entry["drift"])


def packages(**items: str) -> dict[str, Any]:
    return {"manager": "dpkg", "items": items, "count": len(items), "truncated": False}


def test_no_change_no_drift() -> None:
    assert drift_of(facts_document(), facts_document()) == []


def test_package_changes() -> None:
    before = facts_document(packages=packages(openssl="3.0.11-1", nginx="1.22.1-9", curl="7.88"))
    after = facts_document(packages=packages(openssl="3.0.15-1", nginx="1.22.1-8", jq="1.6-2"))
    assert drift_of(before, after) == [
        {"kind": "package.added", "item": "jq", "before": None, "after": "1.6-2"},
        {"kind": "package.downgraded", "item": "nginx", "before": "1.22.1-9", "after": "1.22.1-8"},
        {"kind": "package.removed", "item": "curl", "before": "7.88", "after": None},
        {"kind": "package.upgraded", "item": "openssl", "before": "3.0.11-1", "after": "3.0.15-1"},
    ]


def test_unknown_packages_on_one_side_claim_nothing() -> None:
    before = facts_document(packages=None)
    assert drift_of(before, facts_document()) == []


def test_kernel_units_ports_mounts_and_config_files() -> None:
    before = facts_document(
        kernel="6.1.0-25-amd64",
        units={
            "systemd": True,
            "enabled": ["ssh.service", "cups.service"],
            "failed": ["a.service"],
        },
        listening=[{"proto": "tcp", "address": "0.0.0.0", "port": 22, "process": "sshd"}],
        mounts=[
            {"mountpoint": "/", "device": "/dev/vda1", "fstype": "ext4"},
            {"mountpoint": "/data", "device": "/dev/vdb1", "fstype": "xfs"},
        ],
        config_files={
            "/etc/a.conf": {"sha256": "1" * 64},
            "/etc/b.conf": {"sha256": "2" * 64},
            "/etc/c.conf": {"sha256": "3" * 64},
        },
    )
    after = facts_document(
        kernel="6.1.0-26-amd64",
        units={
            "systemd": True,
            "enabled": ["ssh.service", "redis.service"],
            "failed": ["b.service"],
        },
        listening=[
            {"proto": "tcp", "address": "0.0.0.0", "port": 22, "process": "sshd"},
            {"proto": "tcp6", "address": "::", "port": 6379, "process": "redis-server"},
        ],
        mounts=[
            {"mountpoint": "/", "device": "/dev/vda2", "fstype": "ext4"},
            {"mountpoint": "/backup", "device": "nas:/b", "fstype": "nfs4"},
        ],
        config_files={
            "/etc/a.conf": {"sha256": "1" * 64},
            "/etc/b.conf": {"sha256": "9" * 64},
            "/etc/c.conf": {"error": "Permission denied"},
            "/etc/d.conf": {"sha256": "4" * 64},
        },
    )
    kinds = [(c["kind"], c["item"]) for c in drift_of(before, after)]
    assert kinds == [
        ("config.added", "/etc/d.conf"),
        ("config.changed", "/etc/b.conf"),
        ("config.changed", "/etc/c.conf"),
        ("kernel.changed", "kernel"),
        ("mount.added", "/backup"),
        ("mount.changed", "/"),
        ("mount.removed", "/data"),
        ("port.opened", "tcp6 [::]:6379 (redis-server)"),
        ("unit.disabled", "cups.service"),
        ("unit.enabled", "redis.service"),
        ("unit.failed", "b.service"),
        ("unit.recovered", "a.service"),
    ]
    changes = {(c["kind"], c["item"]): c for c in drift_of(before, after)}
    assert changes[("config.changed", "/etc/c.conf")]["after"] == "error: Permission denied"
    assert changes[("kernel.changed", "kernel")]["before"] == "6.1.0-25-amd64"


def test_first_inspection_and_missing_data_are_said_so() -> None:
    first = analyse(inspection([host()]))["hosts"][0]
    assert (first["drift_state"], first["drift"]) == ("first", [])
    broken = analyse(inspection([host(outputs={"facts": "x"}, previous=facts_document())]))
    assert broken["hosts"][0]["drift_state"] == "no data"


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("1.2", "1.10"),
        ("1.0~rc1", "1.0"),
        ("1.0", "1.0.1"),
        ("1.0", "1.0a"),
        ("2.0", "1:1.0"),
        ("3.0.11-1~deb12u1", "3.0.11-1"),
        ("5.2.15-2", "5.2.15-2+b7"),
        ("1.22.1-8", "1.22.1-9"),
    ],
)
def test_version_order(low: str, high: str) -> None:
    assert compare_versions(low, high) == -1
    assert compare_versions(high, low) == 1
    assert compare_versions(low, low) == 0
