"""File permissions: a collector started by hand with umask 022 keeps its data
directory private (directories 0700, files 0600: CA key, store and its -wal/-shm,
run outputs, ...); the agent refuses a config file or pinned vendor key that others
could change, naming the file."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from playbooks.shipped import dev_public_key_path
from tests.support import Agent, Collector, run, wait_for


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _loose(root: Path) -> list[str]:
    """Entries under ``root`` (itself included) with any group or other permission."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {oct(mode)}")
    return found


def test_a_collector_started_by_hand_keeps_its_data_directory_private(
    tmp_path: Path, make_agent: Callable[..., Agent]
) -> None:
    data_dir = tmp_path / "collector"
    with _umask(0o022):
        data_dir.mkdir(mode=0o755)  # as `mkdir DIR` by hand, README step 1
        collector = Collector(data_dir).start()
    try:
        (tmp_path / "policy.toml").write_text("")
        (tmp_path / "policy.toml").chmod(0o600)
        agent = make_agent(
            "web-1",
            playbooks={
                "trusted_keys": [str(dev_public_key_path())],
                "policy": str(tmp_path / "policy.toml"),
            },
        )
        assert agent.enroll(collector.join_command("acme")).returncode == 0
        agent.start()
        token = collector.admin_token
        wait_for(lambda: collector.client_json(token, "agents")[0]["connected"], 30, "agent")
        started = collector.client_json(token, "run", "cpu-load", "--host", "web-1")
        wait_for(
            lambda: (
                collector.client_json(token, "run", "show", started["run_id"])["run"]["state"]
                == "ok"
            ),
            60,
            "the run to finish",
        )
        names = {p.name for p in data_dir.rglob("*")}
        assert {"aftercare.db", "aftercare.db-wal", "aftercare.db-shm", "ca-key.pem"} <= names
        assert any(p.suffix == ".out" for p in (data_dir / "runs").iterdir()), names
        assert _loose(data_dir) == []
    finally:
        collector.stop()
        print("--- collector log ---\n" + collector.log_text()[-3000:])


def test_agent_refuses_a_config_or_vendor_key_others_can_change(
    tmp_path: Path, collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent("web-1")
    assert agent.enroll(collector.join_command("acme")).returncode == 0
    key = tmp_path / "vendor.pub"
    key.write_bytes(dev_public_key_path().read_bytes())
    policy = tmp_path / "policy.toml"
    policy.write_text("")
    policy.chmod(0o600)
    config = tmp_path / "agent.toml"
    config.write_text(
        f'hostname = "web-1"\n[playbooks]\ntrusted_keys = ["{key}"]\npolicy = "{policy}"\n'
    )

    def start() -> tuple[int, str]:
        args = ["run", "--state-dir", str(agent.state_dir), "--config", str(config)]
        result = run("agent.cli", *args, timeout=20)
        return result.returncode, result.stderr

    config.chmod(0o666)
    code, err = start()
    assert code == 1
    assert f"{config}: is writable by group or others" in err, err

    config.chmod(0o644)
    key.chmod(0o666)
    code, err = start()
    assert code == 1
    assert f"playbooks.trusted_keys: vendor key {key} is writable by group or others" in err, err
