"""The committed generated code matches proto/*.proto (regenerate with `make proto`)."""

from __future__ import annotations

from pathlib import Path

from proto.generate import PROTO_DIR, generate


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    generate(tmp_path)
    generated = sorted((tmp_path / "proto").iterdir())
    assert generated, "protoc produced nothing"
    stale = [
        f.name
        for f in generated
        if not (PROTO_DIR / f.name).exists() or (PROTO_DIR / f.name).read_bytes() != f.read_bytes()
    ]
    assert not stale, f"stale generated files {stale}: run `make proto` and commit the result"
