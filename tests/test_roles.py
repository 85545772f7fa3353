"""Install per role: each program's third-party imports are exactly its own extra.

The fast tests follow the first-party import graph with ``ast`` from each role's entry
modules (imports inside functions included, except past the few modules a role loads
only on request, listed in OPTIONAL) and compare the third-party packages reached
with the role's extra in pyproject.toml: nothing missing, nothing unused. The slow
test builds the wheel, creates a clean venv per role with only that extra, imports the
entry modules and runs each console script's ``--help``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_dependencies import _normalise

REPO = Path(__file__).resolve().parent.parent
FIRST_PARTY = frozenset({"agent", "collector", "common", "playbooks", "proto"})


@dataclass(frozen=True)
class Role:
    extra: str
    entry_modules: tuple[str, ...]
    scripts: tuple[str, ...]
    # Modules this role imports only on request, behind a clear "install X" error.
    optional: frozenset[str] = frozenset()


ROLES = (
    Role(
        "agent",
        ("agent.cli", "agent.main_loop"),
        ("aftercare-agent",),
        optional=frozenset({"agent.session.sshd_backend"}),  # [agent-sshd]
    ),
    Role("agent-sshd", ("agent.cli", "agent.main_loop", "agent.session.sshd_backend"), ()),
    Role("collector", ("collector.cli", "collector.server.app"), ("aftercare-collector",)),
    Role(
        "cli",
        ("collector.client.cli",),
        ("aftercare",),
        # the deprecated `aftercare playbooks lint|keygen|sign` load the vendor tools
        optional=frozenset(
            {"playbooks.loader", "playbooks.signing_keys", "playbooks.sign", "playbooks.verify"}
        ),
    ),
    Role("vendor", ("playbooks.vendor_cli",), ("aftercare-vendor",)),
)


def _module_file(name: str) -> Path | None:
    path = REPO.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imported_names(name: str, path: Path) -> list[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, *([module] if module else [])])
            names.append(module)
            names += [f"{module}.{alias.name}" for alias in node.names]
    return names


def import_closure(role: Role) -> tuple[set[str], set[str]]:
    """(first-party modules, third-party top-level modules) the role's entries reach."""
    seen: set[str] = set()
    third_party: set[str] = set()
    todo = list(role.entry_modules)
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None or name in role.optional:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        for imported in _imported_names(name, path):
            top = imported.partition(".")[0]
            if top in FIRST_PARTY:
                todo.append(imported)
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
    return seen, third_party


def _extra(name: str) -> set[str]:
    """Distribution names in extra ``name``, following self-references (aftercare[x])."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    found: set[str] = set()
    for spec in extras[name]:
        if spec.startswith("aftercare["):
            for inner in spec.partition("[")[2].rstrip("]").split(","):
                found |= _extra(inner.strip())
        else:
            found.add(_normalise(spec.split(";")[0].split("[")[0].split("<")[0].split(">")[0]))
    return found


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.extra)
def test_each_role_declares_exactly_what_it_imports(role: Role) -> None:
    distributions = importlib.metadata.packages_distributions()
    _, modules = import_closure(role)
    needed = {_normalise(owner) for module in modules for owner in distributions[module]}
    declared = _extra(role.extra)
    assert needed - declared == set(), f"[{role.extra}] misses what its program imports"
    assert declared - needed == set(), f"[{role.extra}] installs what its program never imports"


def test_the_agent_imports_neither_grpcio_nor_vendor_tools() -> None:
    agent = next(role for role in ROLES if role.extra == "agent")
    modules, third_party = import_closure(agent)
    assert "grpc" not in third_party and "paramiko" not in third_party
    assert "agent.playbook.verify_child" in modules, "the scan must reach the verification path"
    assert not modules & {"playbooks.vendor_cli", "playbooks.sign_dev"}


def test_packages_leave_out_only_modules_their_programs_never_import() -> None:
    """packaging/build.sh deletes these from the installed venvs."""
    agent = import_closure(ROLES[0])[0]
    assert not {m for m in agent if m.startswith("collector")}
    for role in ROLES:
        assert "playbooks.sign_dev" not in import_closure(role)[0], role.extra


def test_an_agent_without_paramiko_says_which_extra_the_sshd_backend_needs() -> None:
    code = (
        "import sys; sys.modules['paramiko'] = None\n"
        "from agent.config import SessionsConfig\n"
        "from agent.errors import ConfigError\n"
        "from agent.session.setup import build_backend\n"
        "try:\n"
        "    build_backend(SessionsConfig(backend='sshd', user='support', key_file='/k'))\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('sessions.backend: "sshd" needs paramiko'), done.stdout
    assert "aftercare[agent-sshd]" in done.stdout


def test_the_customer_cli_does_not_need_the_collector_or_yaml() -> None:
    cli = next(role for role in ROLES if role.extra == "cli")
    modules, third_party = import_closure(cli)
    assert not third_party & {"yaml", "paramiko", "prometheus_client", "weasyprint", "psutil"}
    assert not any(module.startswith("collector.server") for module in modules)


@pytest.mark.slow
def test_each_role_runs_in_a_clean_venv_with_only_its_extra(tmp_path: Path) -> None:
    """Slow (about a minute): a wheel, then one venv per role installed from it."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), "."],
        cwd=REPO,
        check=True,
    )
    (wheel,) = wheels.glob("aftercare-*.whl")
    for role in ROLES:
        venv = tmp_path / role.extra
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        requirement = f"aftercare[{role.extra}] @ {wheel.as_uri()}"
        pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
        subprocess.run([*pip, requirement], check=True)
        imports = "; ".join(f"import {module}" for module in role.entry_modules)
        done = subprocess.run([python, "-c", imports], capture_output=True, text=True)
        assert done.returncode == 0, f"[{role.extra}]: {done.stderr}"
        for script in role.scripts:
            shown = subprocess.run([venv / "bin" / script, "--help"], capture_output=True)
            assert shown.returncode == 0, f"[{role.extra}] {script}: {shown.stderr!r}"
        if role.extra == "cli":  # the deprecated vendor commands name what they need
            old = subprocess.run(
                [venv / "bin" / "aftercare", "playbooks", "lint", str(tmp_path)],
                capture_output=True,
                text=True,
            )
            assert old.returncode == 1 and "pip install 'aftercare[vendor]'" in old.stderr
            assert "Traceback" not in old.stderr
        if role.extra == "agent":
            for absent in ("grpc", "paramiko", "prometheus_client"):
                probe = subprocess.run([python, "-c", f"import {absent}"], capture_output=True)
                assert probe.returncode != 0, f"[agent] installed {absent}"
