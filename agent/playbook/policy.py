"""The customer's policy: which signed playbooks may run on this host, and remote sessions.

The policy is a TOML file the customer owns (default ``/etc/aftercare/policy.toml``;
docs/policy.md documents every key). ``load_policy`` reads it once into a frozen
``Policy``; ``Policy.decide(name, mode)`` answers with a ``Decision``:

* ``allow``   run unattended;
* ``approve`` run only after a per-run approval, counted only from the place
  ``approval_source`` names (see ``accepts``);
* ``deny``    never run.

Approval sources (``[defaults] approval``, ``[playbooks.NAME] approval`` and
``[sessions] approval``), secure by default:

* ``signed``    (default) a statement signed by an approver certified by the
  customer's approval root pinned on this host (docs/approvals.md); without a
  pinned root nothing is approved;
* ``local``     only an approval given on this host (``aftercare-agent approve``);
* ``either``    signed or local;
* ``collector`` trusts the vendor's server: the collector's word counts as the
  customer's approval (signed ones too). Only a customer who writes it gets it.

Rules: a ``[playbooks.NAME]`` entry overrides the default for the playbook's mode.
An entry may always make a decision stricter. It may make a *mutating* playbook's
decision looser than the ``mutating`` default only if it says ``mode = "mutating"``
- so an entry written for a read-only playbook never lets a later, mutating
version of the same name run unattended. Without a file the built-in defaults
apply: read-only allow, mutating approve, approvals signed by the customer.

Remote sessions: ``[sessions] approval`` (``Policy.session_approval``) says whose
approval opens an engineer's login here: the sources above (``local`` means
``aftercare-agent approve-session``), or ``disabled`` (no remote sessions at all).

Validation is strict like the agent config: unknown keys and values are errors
naming the file and the dotted key (PolicyError). The file must not be writable by
group or others, and must belong to root or to the agent's user - otherwise any
local user could allow playbooks for the vendor.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from agent.playbook.errors import PolicyError
from agent.trusted_file import ownership_problem

__all__ = [
    "APPROVAL_SOURCES",
    "DECISIONS",
    "DEFAULT_POLICY_PATH",
    "SESSION_APPROVALS",
    "Decision",
    "PlaybookRule",
    "Policy",
    "SessionApprovalMode",
    "accepts",
    "load_policy",
]

log = logging.getLogger(__name__)

DEFAULT_POLICY_PATH = Path("/etc/aftercare/policy.toml")
DecisionKind = Literal["allow", "approve", "deny"]
ApprovalSource = Literal["signed", "local", "either", "collector"]
Origin = Literal["signed", "collector", "local"]  # where one approval comes from
PlaybookMode = Literal["read-only", "mutating"]
DECISIONS: tuple[DecisionKind, ...] = ("allow", "approve", "deny")  # loosest first
APPROVAL_SOURCES: tuple[ApprovalSource, ...] = ("signed", "local", "either", "collector")
MODES: tuple[PlaybookMode, ...] = ("read-only", "mutating")
SessionApprovalMode = Literal["signed", "local", "either", "collector", "disabled"]
SESSION_APPROVALS: tuple[SessionApprovalMode, ...] = (
    "signed",
    "local",
    "either",
    "collector",
    "disabled",
)
_ACCEPTED: dict[str, frozenset[Origin]] = {
    "signed": frozenset({"signed"}),
    "local": frozenset({"local"}),
    "either": frozenset({"signed", "local"}),
    "collector": frozenset({"signed", "collector"}),
    "disabled": frozenset(),
}


def accepts(mode: str, origin: Origin) -> bool:
    """Whether an approval from ``origin`` counts under the approval source ``mode``."""
    return origin in _ACCEPTED.get(mode, frozenset())


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class Decision:
    """What the policy says about one run; ``reason`` says which rule decided."""

    kind: DecisionKind
    approval_source: ApprovalSource
    reason: str = ""

    def counts(self, origin: Origin) -> bool:
        """Whether an approval from ``origin`` counts for this decision."""
        return self.kind == "approve" and accepts(self.approval_source, origin)


@dataclass(frozen=True)
class PlaybookRule:
    """``[playbooks.NAME]``: unset fields fall back to ``[defaults]``."""

    decision: DecisionKind | None = None
    approval: ApprovalSource | None = None
    mode: PlaybookMode = "read-only"  # "mutating": this entry may loosen a mutating playbook


@dataclass(frozen=True)
class Policy:
    """The customer's policy; ``path`` is None for the built-in defaults."""

    read_only: DecisionKind = "allow"
    mutating: DecisionKind = "approve"
    approval: ApprovalSource = "signed"
    playbooks: Mapping[str, PlaybookRule] = field(default_factory=dict)
    path: Path | None = None
    session_approval: SessionApprovalMode = "signed"  # ``[sessions] approval``

    def decide(self, playbook_name: str, mode: str) -> Decision:
        """The decision for a run of ``playbook_name`` (a playbook of ``mode``)."""
        if mode not in MODES:
            return Decision("deny", self.approval, f"unknown playbook mode {mode!r}")
        default = self.read_only if mode == "read-only" else self.mutating
        source = f"[defaults] {mode}"
        rule = self.playbooks.get(playbook_name)
        if rule is None or rule.decision is None:
            approval = rule.approval if rule and rule.approval else self.approval
            return Decision(default, approval, source)
        approval = rule.approval or self.approval
        entry = f"[playbooks.{playbook_name}]"
        looser = DECISIONS.index(rule.decision) < DECISIONS.index(default)
        if looser and mode == "mutating" and rule.mode != "mutating":
            why = f'{source}; {entry} cannot loosen a mutating playbook without mode = "mutating"'
            return Decision(default, approval, why)
        return Decision(rule.decision, approval, entry)


def load_policy(path: Path | None) -> Policy:
    """Read and validate the policy at ``path``; None or a missing file give the defaults.

    A missing file is logged as a warning. Raises PolicyError naming the file and
    key for unreadable or unsafe files, invalid TOML, unknown keys and bad values.
    """
    if path is None:
        log.info("no policy file configured; using the built-in policy defaults")
        return Policy()
    try:
        text = _read(path)
        if text is None:
            log.warning(
                "policy file %s not found; using the built-in defaults: read-only playbooks "
                "allowed, mutating playbooks and sessions need an approval signed by the customer",
                path,
            )
            return Policy()
        return _build(_parse(text), path)
    except PolicyError as exc:
        raise exc.in_file(path) from exc.__cause__


def _read(path: Path) -> str | None:
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"not UTF-8 text: {exc}") from exc
    _check_ownership(info)
    return text


def _check_ownership(info: os.stat_result) -> None:
    problem = ownership_problem(info)
    if problem:
        raise PolicyError(problem)


def _parse(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"not valid TOML: {exc}") from exc


def _build(document: Mapping[str, Any], path: Path) -> Policy:
    _known(document, ("defaults", "playbooks", "sessions"), "")
    defaults = _table(document, "defaults")
    _known(defaults, ("read-only", "mutating", "approval"), "defaults")
    playbooks = _table(document, "playbooks")
    sessions = _table(document, "sessions")
    _known(sessions, ("approval",), "sessions")
    return Policy(
        read_only=_choice(defaults, "read-only", DECISIONS, "defaults", "allow"),
        mutating=_choice(defaults, "mutating", DECISIONS, "defaults", "approve"),
        approval=_choice(defaults, "approval", APPROVAL_SOURCES, "defaults", "signed"),
        playbooks={name: _rule(playbooks, name) for name in playbooks},
        path=path,
        session_approval=_choice(sessions, "approval", SESSION_APPROVALS, "sessions", "signed"),
    )


def _rule(playbooks: Mapping[str, Any], name: str) -> PlaybookRule:
    prefix = f"playbooks.{name}"
    if not _NAME.fullmatch(name):
        raise PolicyError("is not a playbook name (letters, digits, '.', '_', '-')", key=prefix)
    table = _table(playbooks, name, prefix)
    _known(table, ("decision", "approval", "mode"), prefix)
    if "decision" not in table and "approval" not in table:
        raise PolicyError("sets neither decision nor approval", key=prefix)
    return PlaybookRule(
        decision=_choice(table, "decision", DECISIONS, prefix, None),
        approval=_choice(table, "approval", APPROVAL_SOURCES, prefix, None),
        mode=_choice(table, "mode", MODES, prefix, "read-only"),
    )


def _table(parent: Mapping[str, Any], name: str, key: str | None = None) -> Mapping[str, Any]:
    value = parent.get(name, {})
    if not isinstance(value, dict):
        raise PolicyError(f"expected a table, got {type(value).__name__}", key=key or name)
    return value


def _known(table: Mapping[str, Any], keys: tuple[str, ...], prefix: str) -> None:
    for key in table:
        if key not in keys:
            dotted = f"{prefix}.{key}" if prefix else key
            raise PolicyError(f"unknown key; valid keys here: {', '.join(keys)}", key=dotted)


def _choice(
    table: Mapping[str, Any], key: str, choices: tuple[str, ...], prefix: str, default: Any
) -> Any:
    if key not in table:
        return default
    value = table[key]
    if value not in choices or not isinstance(value, str):
        raise PolicyError(
            f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}",
            key=f"{prefix}.{key}",
        )
    return cast(Any, value)
