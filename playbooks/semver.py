"""Playbook versions: strict semantic versions ``MAJOR.MINOR.PATCH``, compared numerically.

Used by the loader (a playbook's ``version``) and by verification (refusing a
playbook version older than one already accepted). Pre-release and build suffixes
are not accepted: a signed catalogue only carries releases.
"""

from __future__ import annotations

import re

__all__ = ["SEMVER_HELP", "is_semver", "parse_semver"]

_SEMVER = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")
SEMVER_HELP = 'use MAJOR.MINOR.PATCH with no leading zeros (e.g. "1.2.0")'


def is_semver(text: str) -> bool:
    """True if ``text`` is a strict ``MAJOR.MINOR.PATCH`` version."""
    return _SEMVER.fullmatch(text) is not None


def parse_semver(text: str) -> tuple[int, int, int]:
    """(major, minor, patch) of ``text``; ValueError (quoting it) if it is not a version."""
    match = _SEMVER.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid version {text!r}: {SEMVER_HELP}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch
