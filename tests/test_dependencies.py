"""Every third-party package the programs import is declared in pyproject.toml, pinned.

Imports are read with ``ast`` from every module of the importable packages (also
imports inside functions and ``TYPE_CHECKING`` blocks), mapped to distributions with
``importlib.metadata.packages_distributions()``, and looked up in the role extras
(``agent``, ``agent-sshd``, ``collector``, ``cli``, ``vendor``; which role needs which
is tests/test_roles.py) — or, for the development tools listed in DEV_MODULES, in the
``dev`` extra.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "collector", "common", "playbooks", "proto")
DEV_MODULES = {"proto/generate.py"}  # regenerates proto code: grpcio-tools, a dev tool
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,_-]+\])?")  # name[extras]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


ROLE_EXTRAS = ("agent", "agent-sshd", "collector", "cli", "vendor")


def _requirements(key: str | None) -> dict[str, str]:
    """Distribution -> spec in extra ``key``; None: the base list and every role extra."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    if key is None:
        specs = [*project["dependencies"], *(s for role in ROLE_EXTRAS for s in extras[role])]
    else:
        specs = extras[key]
    found = {}
    for spec in specs:
        if spec.startswith("aftercare["):  # a role extra that includes another
            continue
        match = _NAME.match(spec)
        assert match, spec
        found[_normalise(match.group(1))] = spec
    return found


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level module name -> the files importing it."""
    first_party = set(PACKAGES)
    imports: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top in first_party or top in sys.stdlib_module_names:
                        continue
                    imports.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return imports


def test_the_scan_finds_the_known_imports() -> None:
    imports = _third_party_imports()
    assert {"h2", "hyperframe", "grpc", "google", "psutil", "yaml"} <= set(imports)


def test_every_third_party_import_is_a_declared_and_pinned_dependency() -> None:
    distributions = importlib.metadata.packages_distributions()
    runtime, dev = _requirements(None), _requirements("dev")
    problems = []
    for module, files in sorted(_third_party_imports().items()):
        owners = distributions.get(module)
        if not owners:
            problems.append(f"{module} (imported by {sorted(files)}) is not installed")
            continue
        names = {_normalise(owner) for owner in owners}
        declared = runtime if not files <= DEV_MODULES else {**runtime, **dev}
        if not names & set(declared):
            problems.append(f"{module} ({'/'.join(sorted(names))}) imported by {sorted(files)}")
    assert not problems, "undeclared in pyproject.toml: " + "; ".join(problems)


def test_every_runtime_dependency_has_a_major_version_ceiling() -> None:
    for name, spec in _requirements(None).items():
        assert "<" in spec and ">=" in spec, f"{name}: pin it as {name}>=X.Y,<X+1 ({spec!r})"


def test_the_installed_versions_satisfy_the_pins() -> None:
    """The pins name the versions the tests run with (so they are the tested ones)."""
    for name, spec in _requirements(None).items():
        installed = importlib.metadata.version(name)
        for clause in spec[_NAME.match(spec).end() :].split(","):  # type: ignore[union-attr]
            operator, bound = re.match(r"\s*(>=|<)\s*(\S+)", clause).groups()  # type: ignore[union-attr]
            ok = _version(installed) >= _version(bound)
            assert ok if operator == ">=" else not ok, f"{name} {installed} is outside {spec}"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])
