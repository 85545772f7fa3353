"""Playbook records: what a validated playbook YAML document becomes (frozen dataclasses).

A playbook is a named, versioned list of steps. ``exec`` steps run one program with
an argv list, no shell; parameters reach a step only as whole argv elements
(``{{ param }}`` must be the entire element) or as environment variables.
``builtin`` steps call a named, read-only agent function.

``Manifest`` / ``ManifestEntry`` are what a verified, signed catalogue manifest
becomes (see ``playbooks.verify``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Mode = Literal["read-only", "mutating"]
ParamType = Literal["string", "int", "enum"]


@dataclass(frozen=True)
class Parameter:
    """A typed parameter; values are validated on the agent before anything runs."""

    name: str
    type: ParamType
    description: str = ""
    required: bool = False
    default: str | int | None = None
    pattern: str | None = None  # full-match regex for strings
    minimum: int | None = None  # ints
    maximum: int | None = None
    choices: tuple[str, ...] = ()  # enums
    max_length: int = 256  # strings
    secret: bool = False  # never logged or echoed; redacted from output


@dataclass(frozen=True)
class ExecStep:
    """Run ``argv`` (no shell). ``{{ name }}`` may only be a whole argv element."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # values may be "{{ name }}"
    timeout_seconds: float = 30.0
    output_limit_bytes: int = 256 * 1024
    run_as: str | None = None  # user name; None: the agent's user
    optional: bool = False  # a missing program is "skipped" either way; optional: no warning


@dataclass(frozen=True)
class BuiltinStep:
    """Call a read-only agent function with keyword arguments (values may be "{{ name }}")."""

    name: str
    function: str  # e.g. "top_processes", "largest_directories"
    args: Mapping[str, str | int] = field(default_factory=dict)
    timeout_seconds: float = 30.0
    output_limit_bytes: int = 256 * 1024


Step = ExecStep | BuiltinStep


@dataclass(frozen=True)
class Playbook:
    """A validated playbook."""

    name: str
    version: str  # semantic version "MAJOR.MINOR.PATCH"
    description: str
    mode: Mode
    parameters: tuple[Parameter, ...] = ()
    steps: tuple[Step, ...] = ()
    redact: tuple[str, ...] = ()  # extra regexes, on top of the default redactions
    timeout_seconds: float = 300.0  # the whole run
    collects: str = ""  # documentation: what it collects
    needs: str = ""  # documentation: what it needs on the host

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)


@dataclass(frozen=True)
class ManifestEntry:
    """One playbook of a signed catalogue: the sha256 of its file's exact bytes."""

    name: str
    version: str
    mode: Mode
    file: str  # a bare file name in the catalogue directory ("disk-usage.yaml")
    sha256: str  # lower-case hex


@dataclass(frozen=True)
class Manifest:
    """A verified catalogue manifest (signature, expiry and downgrade checks passed)."""

    format: int
    catalogue_version: int  # monotonic: an agent never accepts a lower one
    issued_at: datetime  # UTC
    expires_at: datetime  # UTC
    playbooks: tuple[ManifestEntry, ...]
    signer: str = ""  # key id of the trusted vendor key that verified the signature

    def entry(self, name: str) -> ManifestEntry | None:
        return next((e for e in self.playbooks if e.name == name), None)

    def versions(self) -> dict[str, str]:
        """Playbook name -> version: what an agent keeps to refuse later downgrades."""
        return {e.name: e.version for e in self.playbooks}
