"""One home per concern: which first-party packages may import which (read with ``ast``).

The rules (issue 15; README "Layout"):

- ``common/`` imports only the standard library (and itself): it is what agent,
  collector and playbooks share.
- ``agent/`` never imports ``collector``. From ``playbooks`` it imports only the
  playbook format it verifies and runs: ``AGENT_MAY_IMPORT_FROM_PLAYBOOKS`` (the
  model, its errors, parameter rendering, and the verification path: keys, manifest
  and signature check). Vendor release tooling (signing, the loader's catalogue
  writing, the vendor CLI) stays out of every agent.
- ``playbooks/`` never imports ``agent`` or ``collector``.
- ``collector/`` never imports ``agent``: what both need lives in ``common/``.

Every import counts, including those inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

AGENT_MAY_IMPORT_FROM_PLAYBOOKS = frozenset(
    {
        "playbooks.builtins",  # the builtin functions' names: the contract agent/playbook/builtins
        "playbooks.errors",
        "playbooks.model",
        "playbooks.params",
        "playbooks.signing_keys",
        "playbooks.manifest",
        "playbooks.verify",  # verify_manifest, verify_playbook: the agent's check of a catalogue
    }
)


def _imports(path: Path, root: Path = REPO) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path`` (a file under ``root``)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*parts, *([module] if module else [])])
            found.append((node.lineno, module))
    return found


def _violations(package: str, allowed: Callable[[str], bool], root: Path = REPO) -> list[str]:
    """Every import in ``root/package`` that ``allowed`` refuses, as "file:line imports X"."""
    return [
        f"{path.relative_to(root)}:{line} imports {module}"
        for path in sorted((root / package).rglob("*.py"))
        for line, module in _imports(path, root)
        if not allowed(module)
    ]


def _is_standard_library(module: str) -> bool:
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or top == "__future__"


def common_allows(module: str) -> bool:
    return module.split(".")[0] == "common" or _is_standard_library(module)


def agent_allows(module: str) -> bool:
    top = module.split(".")[0]
    if top == "collector":
        return False
    if top == "playbooks":
        return module in AGENT_MAY_IMPORT_FROM_PLAYBOOKS
    return True


def playbooks_allow(module: str) -> bool:
    return module.split(".")[0] not in {"agent", "collector"}


def collector_allows(module: str) -> bool:
    return module.split(".")[0] != "agent"


def test_the_collector_imports_nothing_from_the_agent() -> None:
    assert _violations("collector", collector_allows) == []


def test_common_imports_only_the_standard_library() -> None:
    assert _violations("common", common_allows) == []


def test_the_agent_imports_nothing_from_the_collector_and_only_the_playbook_verification() -> None:
    assert _violations("agent", agent_allows) == []


def test_the_playbook_format_imports_neither_agent_nor_collector() -> None:
    assert _violations("playbooks", playbooks_allow) == []


@pytest.mark.parametrize(
    ("package", "source", "allowed"),
    [
        ("agent", "from collector.store import Store\n", agent_allows),
        ("agent", "from playbooks.vendor_cli import main\n", agent_allows),
        ("agent", "def f():\n    import collector.cli\n", agent_allows),
        ("common", "import grpc\n", common_allows),
        ("common", "from agent.durations import parse_duration\n", common_allows),
        ("playbooks", "from agent.config import AgentConfig\n", playbooks_allow),
        ("collector", "from agent.session.asciicast import parse_cast\n", collector_allows),
    ],
)
def test_the_checks_catch_a_forbidden_import(
    tmp_path: Path, package: str, source: str, allowed: Callable[[str], bool]
) -> None:
    """The checker is not blind: a forbidden import, also inside a function, is reported."""
    (tmp_path / package / "sub").mkdir(parents=True)
    (tmp_path / package / "sub" / "probe.py").write_text(source, encoding="utf-8")
    problems = _violations(package, allowed, root=tmp_path)
    assert len(problems) == 1 and problems[0].startswith(f"{package}/sub/probe.py:")


def test_the_standard_library_check_rejects_a_third_party_package() -> None:
    assert _is_standard_library("json")
    assert _is_standard_library("concurrent.futures")
    assert not _is_standard_library("grpc")
    assert not _is_standard_library("cryptography.hazmat")


def test_the_tests_have_one_fake_clock() -> None:
    """Fake clocks live in tests/fakes.py; a test file defining its own is reported."""
    own = [
        f"{path.relative_to(REPO)}:{node.lineno} defines {node.name}"
        for path in sorted((REPO / "tests").rglob("test_*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and node.name in {"FakeClock", "Clock"}
    ]
    assert own == []
