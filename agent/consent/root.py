"""The approval root this host pins: ``[approvals] root`` or the enrolment's pin.

``aftercare-agent enroll --approver-root sha256:HEX`` writes the fingerprint to
``<state dir>/approval-root`` (0600); the agent config's ``[approvals] root`` may
name it instead. Both set and different is a ConfigError: a host must not be
unsure which customer root it trusts.
"""

from __future__ import annotations

from pathlib import Path

from agent.config import ApprovalsConfig
from agent.errors import ConfigError
from common.atomic import write_atomic
from common.signed_bytes import FormatError, parse_fingerprint

__all__ = ["ROOT_FILE", "check_root", "pin_root", "pinned_root"]

ROOT_FILE = "approval-root"


def check_root(fingerprint: str) -> str:
    """``fingerprint`` normalised; ConfigError if it is not ``sha256:HEX``."""
    try:
        return parse_fingerprint(fingerprint)
    except FormatError as exc:
        raise ConfigError(str(exc), key="--approver-root") from exc


def pin_root(state_dir: Path, fingerprint: str) -> str:
    """Record ``fingerprint`` as this host's approval root; returns it normalised.

    Raises ConfigError for a malformed fingerprint or an unwritable state directory.
    """
    value = check_root(fingerprint)
    path = state_dir / ROOT_FILE
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, (value + "\n").encode("ascii"))
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return value


def pinned_root(state_dir: Path, config: ApprovalsConfig) -> str:
    """The pinned root's fingerprint, or "" when the host pins none."""
    path = state_dir / ROOT_FILE
    try:
        enrolled = parse_fingerprint(path.read_text(encoding="ascii"))
    except FileNotFoundError:
        enrolled = ""
    except (OSError, UnicodeDecodeError, FormatError) as exc:
        raise ConfigError(f"{path} is unreadable or not a fingerprint: {exc}") from exc
    if config.root and enrolled and config.root != enrolled:
        raise ConfigError(
            f"pins {config.root} but {path} (from enrolment) pins {enrolled}; keep one",
            key="approvals.root",
        )
    return config.root or enrolled
