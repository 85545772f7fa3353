"""The pure-Python Ed25519 verifier agrees with cryptography's (OpenSSL) on every case."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from common.ed25519 import verify

L = 2**252 + 27742317777372353535851937790883648493


def keypair() -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.generate()
    return key, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_rfc8032_test_vector_2() -> None:
    public = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
    signature = bytes.fromhex(
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
    )
    assert verify(public, b"\x72", signature)
    assert not verify(public, b"\x73", signature)


@pytest.mark.parametrize("size", [0, 1, 64, 4096])
def test_signatures_made_by_cryptography_verify(size: int) -> None:
    key, public = keypair()
    message = os.urandom(size)
    signature = key.sign(message)
    assert verify(public, message, signature)
    assert not verify(public, message + b"x", signature)
    assert not verify(keypair()[1], message, signature)
    for index in (0, 31, 32, 63):
        bent = bytearray(signature)
        bent[index] ^= 1
        assert not verify(public, message, bytes(bent))


def test_malformed_inputs_are_refused_not_raised() -> None:
    key, public = keypair()
    signature = key.sign(b"m")
    assert not verify(public[:31], b"m", signature)
    assert not verify(public, b"m", signature[:63])
    assert not verify(b"\xff" * 32, b"m", signature)  # y >= p: not a point encoding
    s = int.from_bytes(signature[32:], "little") + L  # the same S, not reduced
    if s < 2**256:
        assert not verify(public, b"m", signature[:32] + s.to_bytes(32, "little"))
