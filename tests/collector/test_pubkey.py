"""OpenSSH public keys on the client: parsing, refusing what is not one, fingerprints."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from collector.sessions.pubkey import (
    fingerprint,
    normalize_fingerprint,
    parse_public_key,
)

# Made with ssh-keygen -t ed25519 -C erin@laptop; fingerprint from ssh-keygen -lf.
ED25519 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJap3+7PJ1MViK1Fuf2RmkrRJ8snMYje8yOhyYDHdoj7 erin@laptop"
)
ED25519_FP = "SHA256:Lzphpjgr6Inja0sZ6FO1WH5xo4ypNhd4HHLYrg45bjk"
ECDSA = (
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBK3uFo6cutYIU6hztDkV"
    "zVedQLD+4crmbFXgm8fW4WIjbGFrKl62TCIO/59LfwR1HAI4wF0YEKCFUHuceIUa5u0="
)
ECDSA_FP = "SHA256:NzT8yLendbko73IGliSIyi2sKf4itDx/V05jHXxCizQ"

PRIVATE_KEYS: dict[
    str, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
] = {
    "ed25519-openssh": ed25519.Ed25519PrivateKey.generate(),
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ecdsa": ec.generate_private_key(ec.SECP384R1()),
}


def public_line(name: str, comment: str = "") -> str:
    key = PRIVATE_KEYS[name].public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return str(line.decode()) + (f" {comment}" if comment else "")


def test_parses_a_pub_file_with_its_comment_and_fingerprint() -> None:
    key = parse_public_key((ED25519 + "\n").encode())
    assert key.key_type == "ssh-ed25519"
    assert key.comment == "erin@laptop"
    assert key.fingerprint == ED25519_FP
    assert key.line() == ED25519


def test_ecdsa_without_comment() -> None:
    key = parse_public_key(ECDSA.encode())
    assert (key.key_type, key.comment, key.fingerprint) == ("ecdsa-sha2-nistp256", "", ECDSA_FP)
    assert key.line() == ECDSA


def test_comment_with_spaces_blank_lines_and_hash_comments_are_kept_apart() -> None:
    data = f"# my laptop\n\n  {ED25519} and more words  \n\n".encode()
    key = parse_public_key(data)
    assert key.comment == "erin@laptop and more words"
    assert key.fingerprint == ED25519_FP


@pytest.mark.parametrize("name", sorted(PRIVATE_KEYS))
def test_generated_keys_of_every_common_type(name: str) -> None:
    key = parse_public_key(public_line(name, "me@host").encode())
    blob = base64.b64decode(key.blob_base64)
    assert key.fingerprint == fingerprint(blob)
    assert key.comment == "me@host"


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
@pytest.mark.parametrize("name", sorted(PRIVATE_KEYS))
def test_fingerprint_matches_ssh_keygen(name: str, tmp_path: Path) -> None:
    path = tmp_path / "key.pub"
    path.write_text(public_line(name) + "\n")
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert parse_public_key(path.read_bytes()).fingerprint == out.split()[1]


@pytest.mark.parametrize(
    "encoding_format",
    [
        (serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH),
        (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8),
        (serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL),
    ],
    ids=["openssh", "pkcs8", "traditional"],
)
def test_private_keys_are_refused_with_advice(
    encoding_format: tuple[serialization.Encoding, serialization.PrivateFormat],
) -> None:
    encoding, fmt = encoding_format
    key = PRIVATE_KEYS["rsa"]
    data = key.private_bytes(encoding, fmt, serialization.NoEncryption())
    with pytest.raises(ValueError, match="is a private key: never share it") as info:
        parse_public_key(data, "~/.ssh/id_rsa")
    assert "~/.ssh/id_rsa" in str(info.value)
    assert ".pub" in str(info.value)


def test_putty_private_key_is_refused() -> None:
    data = b"PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n"
    with pytest.raises(ValueError, match="private key"):
        parse_public_key(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"# only a comment\n\n", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff", "binary data"),
        (b"hello world\n", "not an OpenSSH public key: it starts with 'hello'"),
        (b'from="10.0.0.1" ' + ED25519.encode(), "key options before the type are not accepted"),
        (b"ssh-ed25519\n", "has no key data"),
        (b"ssh-ed25519 not*base64 me\n", "not valid base64"),
        ((ED25519 + "\n" + ECDSA + "\n").encode(), "holds 2 lines; add one public key at a time"),
        (b"---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----\n", "RFC 4716"),
    ],
)
def test_garbage_is_refused_clearly(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_public_key(data, "key.pub")
    assert message in str(info.value)
    assert "key.pub" in str(info.value)


def test_truncated_or_mismatched_key_data_is_refused() -> None:
    key_type, blob, comment = ED25519.split()
    raw = base64.b64decode(blob)
    cut = base64.b64encode(raw[:-5]).decode()
    with pytest.raises(ValueError, match="damaged"):
        parse_public_key(f"{key_type} {cut} {comment}".encode())
    with pytest.raises(ValueError, match="not a ssh-rsa key"):
        parse_public_key(f"ssh-rsa {blob} {comment}".encode())
    extra = base64.b64encode(raw + b"\x00\x00\x00\x01x").decode()
    with pytest.raises(ValueError, match="damaged"):
        parse_public_key(f"{key_type} {extra}".encode())


def test_normalize_fingerprint() -> None:
    assert normalize_fingerprint(ED25519_FP) == ED25519_FP
    assert normalize_fingerprint(" " + ED25519_FP.removeprefix("SHA256:")) == ED25519_FP
    for bad in ("MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48", "SHA256:short", ""):
        with pytest.raises(ValueError, match="not a SHA256 fingerprint"):
            normalize_fingerprint(bad)
