"""Redaction of secrets in playbook output: default rules, extras, chunk boundaries, bounds."""

from __future__ import annotations

import random
import time

import pytest

from agent.playbook import Redactor, RedactPatternError, secret_values
from agent.playbook.redact import HOLD, MAX_LINE
from playbooks.model import Parameter, Playbook

PEM = (
    b"-----BEGIN RSA PRIVATE KEY-----\n"
    b"MIIEowIBAAKCAQEAxyz0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH\n"
    b"T0pzZWNyZXRrZXltYXRlcmlhbGhlcmU=\n"
    b"-----END RSA PRIVATE KEY-----\n"
)


def redact(text: bytes, redactor: Redactor | None = None) -> tuple[bytes, int]:
    return (redactor or Redactor()).redact(text)


def in_pieces(data: bytes, sizes: list[int], redactor: Redactor | None = None) -> tuple[bytes, int]:
    """Feed ``data`` cut at the given piece sizes (the rest as one piece)."""
    stream = (redactor or Redactor()).stream()
    out, position = [], 0
    for size in sizes:
        out.append(stream.feed(data[position : position + size]))
        position += size
    out += [stream.feed(data[position:]), stream.finish()]
    return b"".join(out), stream.redactions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"password=hunter2 next", b"password=[REDACTED] next"),
        (b"DB_PASSWORD=hunter2", b"DB_PASSWORD=[REDACTED]"),
        (b"passwd: hunter2", b"passwd: [REDACTED]"),
        (b'{"password": "hunter 2", "user": "bob"}', b'{"password": "[REDACTED]", "user": "bob"}'),
        (b"password: 'single quoted'", b"password: '[REDACTED]'"),
        (b"token=abc123&page=2", b"token=[REDACTED]&page=2"),
        (b"X-Auth-Token: abc123", b"X-Auth-Token: [REDACTED]"),
        (b"api_key = 0123abcd", b"api_key = [REDACTED]"),
        (b"apikey: 0123abcd", b"apikey: [REDACTED]"),
        (b"client_secret=s3cr3t", b"client_secret=[REDACTED]"),
        (b"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG", b"aws_secret_access_key = [REDACTED]"),
        (b"Authorization: Bearer eyJhbGciOi.abc-def_ghi", b"Authorization: Bearer [REDACTED]"),
        (b"Authorization: Basic dXNlcjpwYXNz", b"Authorization: Basic [REDACTED]"),
        (b"key AKIAIOSFODNN7EXAMPLE used", b"key [REDACTED] used"),
        (b"ghp_" + b"a" * 36, b"[REDACTED]"),
        (b"github_pat_" + b"B" * 30, b"[REDACTED]"),
        (b"xoxb-1234567890-abcdefghij", b"[REDACTED]"),
        (b"postgres://app:hunter2@db:5432/x", b"postgres://app:[REDACTED]@db:5432/x"),
        (b"mysql --password=hunter2 -u root", b"mysql --password=[REDACTED] -u root"),
    ],
)
def test_default_rules(text: bytes, expected: bytes) -> None:
    assert redact(text) == (expected, 1)


@pytest.mark.parametrize(
    "text",
    [
        b"Filesystem Size Used Avail Use% Mounted on",
        b"nginx.service loaded active running",
        b"root:x:0:0:root:/root:/bin/bash",
        b"PWD=/root OLDPWD=/",
        b"passwd files systemd",
    ],
)
def test_ordinary_output_is_untouched(text: bytes) -> None:
    assert redact(text) == (text, 0)


def test_private_key_block_is_removed_whole() -> None:
    text = b"before\n" + PEM + b"after\n"
    assert redact(text) == (b"before\n[REDACTED]\nafter\n", 1)


@pytest.mark.parametrize(
    "header",
    [b"PRIVATE KEY", b"EC PRIVATE KEY", b"OPENSSH PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"],
)
def test_every_private_key_flavour(header: bytes) -> None:
    text = b"-----BEGIN " + header + b"-----\nabc\n-----END " + header + b"-----\n"
    assert redact(text) == (b"[REDACTED]\n", 1)


def test_private_key_inside_one_json_line() -> None:
    text = b'{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n"}\n'
    out, count = redact(text)
    assert b"MIIE" not in out
    assert out == b'{"private_key": "[REDACTED]\\n"}\n'
    assert count == 1


def test_unterminated_private_key_is_never_emitted() -> None:
    out, count = redact(b"ok\n-----BEGIN PRIVATE KEY-----\nMIIEsecret\nmore secret")
    assert out == b"ok\n[REDACTED]"
    assert count == 1


def test_public_certificates_are_kept() -> None:
    cert = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    assert redact(cert) == (cert, 0)


def test_every_split_point_gives_the_same_result() -> None:
    data = b"line one password=hunter2\nthen " + PEM + b"token: abc123 and ghp_" + b"z" * 40 + b"\n"
    whole = redact(data)
    assert b"hunter2" not in whole[0] and b"abc123" not in whole[0] and b"MIIE" not in whole[0]
    for cut in range(1, len(data)):
        assert in_pieces(data, [cut]) == whole, cut


def test_random_chunking_gives_the_same_result() -> None:
    rng = random.Random(4)
    data = b"".join(
        rng.choice([b"ordinary words here\n", b"password=p%d\n" % i, PEM, b"x" * 50])
        for i in range(300)
    )
    whole = redact(data)
    for _ in range(50):
        sizes = [rng.randint(1, 300) for _ in range(40)]
        assert in_pieces(data, sizes) == whole


def test_extra_patterns_and_secret_literals() -> None:
    redactor = Redactor().extended([r"ticket-\d+", rb"(?i)serial: (\w+)"], ["s3cret-value"])
    out, count = redact(b"ticket-42 serial: XYZ123 param s3cret-value.\n", redactor)
    assert out == b"[REDACTED] serial: [REDACTED] param [REDACTED].\n"
    assert count == 3


def test_already_redacted_text_is_not_counted_twice() -> None:
    redactor = Redactor(literals=["hunter2"])
    assert redact(b"password=hunter2\n", redactor) == (b"password=[REDACTED]\n", 1)


@pytest.mark.parametrize(
    ("pattern", "problem"), [("(unclosed", "does not compile"), ("x*", "empty")]
)
def test_bad_patterns_are_refused(pattern: str, problem: str) -> None:
    with pytest.raises(RedactPatternError, match=problem):
        Redactor([pattern])


def test_memory_is_bounded_on_a_line_without_newlines() -> None:
    stream = Redactor().stream()
    emitted = 0
    for _ in range(200):
        emitted += len(stream.feed(b"z" * 16384))
        assert len(stream._pending) <= MAX_LINE + 16384
    emitted += len(stream.finish())
    assert emitted == 200 * 16384


def test_secret_across_a_long_line_flush_point_is_found() -> None:
    filler = b"a " * (MAX_LINE // 2 - 3)
    data = filler + b"password=hunter2 " + b"b " * HOLD
    for cut in (len(filler) + 3, len(filler) + 12):  # inside "password", inside the value
        out, count = in_pieces(data, [cut, 10])
        assert b"hunter2" not in out
        assert count == 1


def test_long_lines_of_word_characters_cost_linear_time() -> None:
    """8x the input costs well under 64x the CPU (a quadratic scan would); no wall-clock limit."""

    def cpu_seconds(n: int) -> float:
        started = time.process_time()
        redact(b"a." * n + b"\n" + b"x" * (2 * n) + b"\n")
        return time.process_time() - started

    small = max(cpu_seconds(12_500), 0.01)
    assert cpu_seconds(100_000) / small < 24


def test_secret_values_picks_secret_parameters() -> None:
    playbook = Playbook(
        name="p",
        version="1.0.0",
        description="",
        mode="read-only",
        parameters=(
            Parameter("user", "string"),
            Parameter("token", "string", secret=True),
            Parameter("empty", "string", secret=True),
        ),
    )
    values = {"user": "bob", "token": "abc", "empty": "", "other": "x"}
    assert secret_values(playbook, values) == ("abc",)


def test_odbc_pwd_but_not_the_working_directory() -> None:
    assert redact(b"Server=db;Uid=app;Pwd=hunter2;") == (b"Server=db;Uid=app;Pwd=[REDACTED];", 1)
    assert redact(b"PWD=/root\n") == (b"PWD=/root\n", 0)
