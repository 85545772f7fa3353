"""OpenSSH public keys as the client reads them: parse, check and fingerprint (no I/O).

``aftercare keys add`` checks a key file here before sending it, so a private key or
a stray file is refused on the engineer's machine, with a message saying what to give
instead. Fingerprints are those ``ssh-keygen -l`` prints: "SHA256:" and the unpadded
base64 of the SHA-256 of the key blob.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

__all__ = ["PublicKey", "fingerprint", "normalize_fingerprint", "parse_public_key"]

# Key type → the SSH strings of its blob after the type name (RFC 4253, 5656, PROTOCOL.u2f).
_BLOB_FIELDS: dict[str, int] = {
    "ssh-ed25519": 1,  # key
    "ssh-rsa": 2,  # e, n
    "ecdsa-sha2-nistp256": 2,  # curve, point
    "ecdsa-sha2-nistp384": 2,
    "ecdsa-sha2-nistp521": 2,
    "sk-ssh-ed25519@openssh.com": 2,  # key, application
    "sk-ecdsa-sha2-nistp256@openssh.com": 3,  # curve, point, application
    "ssh-dss": 4,  # p, q, g, y
}
_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
_PRIVATE_MARKERS = ("PRIVATE KEY-----", "PuTTY-User-Key-File")


@dataclass(frozen=True)
class PublicKey:
    """One OpenSSH public key."""

    key_type: str  # e.g. "ssh-ed25519"
    blob_base64: str
    comment: str
    fingerprint: str  # "SHA256:..."

    def line(self) -> str:
        """The key as one authorized_keys line."""
        return " ".join(p for p in (self.key_type, self.blob_base64, self.comment) if p)


def fingerprint(blob: bytes) -> str:
    """The SHA256 fingerprint of a key blob, as ``ssh-keygen -l`` prints it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return "SHA256:" + digest.rstrip("=")


def normalize_fingerprint(text: str) -> str:
    """``text`` as a "SHA256:..." fingerprint (the prefix may be left out); raises
    ValueError for anything else, e.g. an MD5 fingerprint."""
    value = text.strip()
    if not value.startswith("SHA256:"):
        value = "SHA256:" + value
    if not _FINGERPRINT.match(value):
        raise ValueError(
            f"{text!r} is not a SHA256 fingerprint; give it as `aftercare keys list` or "
            "`ssh-keygen -lf KEY.pub` prints it (SHA256:...)"
        )
    return value


def parse_public_key(data: bytes, source: str = "the key") -> PublicKey:
    """Read one OpenSSH public key (the contents of a ``.pub`` file). Blank lines and
    ``#`` comments are skipped. Raises ValueError naming ``source`` for a private key,
    another key format, several keys, an unknown type or a damaged key."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{source} is not an OpenSSH public key (binary data)") from None
    if any(marker in text for marker in _PRIVATE_MARKERS):
        raise ValueError(
            f"{source} is a private key: never share it. Give its public half instead "
            "(the .pub file next to it, or the output of `ssh-keygen -y -f PRIVATE_KEY`)"
        )
    if "BEGIN SSH2 PUBLIC KEY" in text:
        raise ValueError(
            f"{source} is an RFC 4716 (SSH2) public key; convert it with "
            "`ssh-keygen -i -f FILE` and add the output"
        )
    lines = [ln.strip() for ln in text.splitlines()]
    keys = [ln for ln in lines if ln and not ln.startswith("#")]
    if not keys:
        raise ValueError(f"{source} is empty: expected one OpenSSH public key line")
    if len(keys) > 1:
        raise ValueError(f"{source} holds {len(keys)} lines; add one public key at a time")
    return _parse_line(keys[0], source)


def _parse_line(line: str, source: str) -> PublicKey:
    fields = line.split(None, 2)
    key_type = fields[0]
    if key_type not in _BLOB_FIELDS:
        known = ", ".join(_BLOB_FIELDS)
        raise ValueError(
            f"{source} is not an OpenSSH public key: it starts with {key_type[:40]!r}, "
            f"not a key type ({known}); key options before the type are not accepted"
        )
    if len(fields) < 2:
        raise ValueError(f"{source}: the {key_type} key has no key data")
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{source}: the key data is not valid base64 (truncated?)") from None
    _check_blob(blob, key_type, source)
    comment = fields[2].strip() if len(fields) > 2 else ""
    return PublicKey(key_type, fields[1], comment, fingerprint(blob))


def _check_blob(blob: bytes, key_type: str, source: str) -> None:
    damaged = ValueError(f"{source}: the {key_type} key data is damaged (truncated or edited?)")
    strings: list[bytes] = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise damaged
        size = int.from_bytes(blob[offset : offset + 4], "big")
        offset += 4
        if offset + size > len(blob):
            raise damaged
        strings.append(blob[offset : offset + size])
        offset += size
    if not strings or strings[0] != key_type.encode():
        raise ValueError(f"{source}: the key data is not a {key_type} key (type mismatch)")
    if len(strings) != 1 + _BLOB_FIELDS[key_type]:
        raise damaged
