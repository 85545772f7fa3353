"""Before ``aftercare ssh`` runs OpenSSH: is the session the caller's, and will the
gateway know one of the caller's keys?

Stock ssh only says ``Permission denied (publickey)``. The gateway accepts a login
when the key is registered to the engineer who requested the session (``aftercare
keys``), so two refusals can be told apart before ssh runs:

- the session was requested by another engineer (``WhoAmI`` against the session);
- the caller has no key registered at all, or none of the keys ssh would offer is
  registered: the ``--identity`` key (its ``.pub`` beside it), the ssh-agent's keys
  (``ssh-add -L``) and the default ``~/.ssh/id_*.pub``.

Where the local keys cannot be known (no ``.pub``, no agent, keys named only in
``~/.ssh/config``) nothing is claimed. Without ``--identity`` a mismatch is a
warning, since ssh's own config may name another key; with it, an error.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from collector.client.connection import Api
from collector.client.output import safe
from collector.client.paging import fetch_all
from collector.sessions.pubkey import parse_public_key
from proto import api_pb2

DEFAULT_KEY_NAMES = ("id_ed25519", "id_ecdsa", "id_ecdsa_sk", "id_ed25519_sk", "id_rsa", "id_dsa")
MAX_PUB_BYTES = 64 * 1024
_ADD_KEY = "register it with `aftercare keys add {pub}`"


@dataclass(frozen=True)
class Verdict:
    """``error``: ssh would be refused, say so and stop; ``warning``: it may be."""

    error: str = ""
    warning: str = ""


def local_keys(identity: str | None, home: Path | None = None) -> dict[str, str]:
    """Fingerprints of the public keys ssh would offer, each with where it was found."""
    found: dict[str, str] = {}
    if identity:
        _add_file(found, Path(identity + ".pub"))
    for line in _agent_keys():
        _add(found, line.encode(), "the ssh-agent")
    if not identity:
        ssh_dir = (home or Path.home()) / ".ssh"
        for name in DEFAULT_KEY_NAMES:
            _add_file(found, ssh_dir / f"{name}.pub")
    return found


def check(
    client: Api,
    detail: api_pb2.SessionDetail,
    identity: str | None,
    find_keys: Callable[[str | None], dict[str, str]] = local_keys,
) -> Verdict:
    """Whether the caller's login through ``detail``'s session can succeed."""
    session = detail.session
    sid = safe(session.session_id)
    me = client.call("WhoAmI", api_pb2.WhoAmIRequest())
    if session.engineer and me.user != session.engineer:
        return Verdict(
            error=f"{sid} was requested by engineer {safe(session.engineer)}, and only they "
            f"can log in with it (you are {safe(me.user)}); request your own with "
            "`aftercare session request`"
        )
    registered = {
        key.fingerprint
        for key in fetch_all(client, "ListSshKeys", api_pb2.ListSshKeysRequest(), "keys").keys
    }
    if not registered:
        return Verdict(
            error="you have no SSH key registered, so the gateway will refuse the login: "
            + _ADD_KEY.format(pub=_suggested_pub(identity))
        )
    offered = find_keys(identity)
    if not offered or registered & offered.keys():
        return Verdict()
    listing = ", ".join(f"{fp} ({safe(where)})" for fp, where in sorted(offered.items()))
    text = (
        f"none of the keys ssh will offer is registered for you ({listing}); the gateway "
        f"will refuse the login: {_ADD_KEY.format(pub=_suggested_pub(identity))}, or pass "
        "--identity with a registered key (`aftercare keys list` shows them)"
    )
    return Verdict(error=text) if identity else Verdict(warning=text)


def _suggested_pub(identity: str | None) -> str:
    return safe(identity + ".pub") if identity else "~/.ssh/id_ed25519.pub"


def _add_file(found: dict[str, str], path: Path) -> None:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PUB_BYTES)
    except OSError:
        return
    _add(found, data, str(path))


def _add(found: dict[str, str], data: bytes, where: str) -> None:
    try:
        found.setdefault(parse_public_key(data, where).fingerprint, where)
    except ValueError:
        return


def _agent_keys() -> Iterable[str]:
    if not os.environ.get("SSH_AUTH_SOCK"):
        return []
    try:
        listing = subprocess.run(
            ["ssh-add", "-L"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return listing.stdout.splitlines() if listing.returncode == 0 else []
