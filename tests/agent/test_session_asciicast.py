"""asciicast v2 writer: a valid header, one event per line, whole characters, an exact digest."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from common.asciicast import CastWriter, RecordingSummary
from tests.fakes import FakeClock


def lines(path: Path) -> list[object]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_round_trip_header_and_events(tmp_path: Path) -> None:
    clock = FakeClock(100.0)
    path = tmp_path / "a.cast"
    cast = CastWriter(
        path,
        width=120,
        height=40,
        title="db-1",
        command="uptime",
        env={"TERM": "xterm-256color", "SHELL": "/bin/bash"},
        clock=clock,
        started_unix=1_700_000_000.9,
    )
    clock.now += 0.5
    assert cast.output(b"hello\r\n") == (0.5, "hello\r\n")
    clock.now += 1.0000004
    assert cast.resize(100, 30) == (1.5, "100x30")
    cast.close()
    header, *events = lines(path)
    assert header == {
        "version": 2,
        "width": 120,
        "height": 40,
        "timestamp": 1_700_000_000,
        "title": "db-1",
        "command": "uptime",
        "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"},
    }
    assert events == [[0.5, "o", "hello\r\n"], [1.5, "r", "100x30"]]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_header_leaves_out_what_is_not_set(tmp_path: Path) -> None:
    path = tmp_path / "b.cast"
    CastWriter(path, width=80, height=24).close()
    [header] = lines(path)
    assert isinstance(header, dict)
    assert set(header) == {"version", "width", "height", "timestamp"}
    assert isinstance(header["timestamp"], int)


def test_a_character_split_across_chunks_comes_out_whole(tmp_path: Path) -> None:
    path = tmp_path / "c.cast"
    cast = CastWriter(path, width=80, height=24)
    euro = "€".encode()  # three bytes
    assert cast.output(b"price " + euro[:1]) is not None
    assert cast.output(euro[1:2]) is None  # nothing decodable yet
    event = cast.output(euro[2:] + b"!")
    assert event is not None and event[1] == "€!"
    cast.close()
    texts = [e[2] for e in lines(path)[1:]]  # type: ignore[index]
    assert "".join(texts) == "price €!"


def test_a_dangling_partial_character_is_flushed_as_replacement_at_close(tmp_path: Path) -> None:
    path = tmp_path / "d.cast"
    cast = CastWriter(path, width=80, height=24)
    cast.output(b"ok \xe2\x82")
    cast.output(b"\xff")  # invalid: replaced, not dropped silently
    cast.close()
    text = "".join(e[2] for e in lines(path)[1:])  # type: ignore[index]
    assert text.startswith("ok ") and "\ufffd" in text


def test_input_is_ignored_unless_recorded(tmp_path: Path) -> None:
    plain = CastWriter(tmp_path / "e.cast", width=80, height=24)
    assert plain.input(b"secret\r") is None
    plain.close()
    assert len(lines(tmp_path / "e.cast")) == 1
    recorded = CastWriter(tmp_path / "f.cast", width=80, height=24, record_input=True)
    assert recorded.input(b"ls\r") is not None
    recorded.close()
    assert lines(tmp_path / "f.cast")[1][1:] == ["i", "ls\r"]  # type: ignore[index]


def test_input_and_output_decode_separately(tmp_path: Path) -> None:
    path = tmp_path / "g.cast"
    cast = CastWriter(path, width=80, height=24, record_input=True)
    e_acute = "é".encode()
    assert cast.output(e_acute[:1]) is None
    typed = cast.input(b"x")
    assert typed is not None and typed[1] == "x"
    assert cast.output(e_acute[1:]) is not None
    cast.close()
    assert [e[1:] for e in lines(path)[1:]] == [["i", "x"], ["o", "é"]]  # type: ignore[index]


def test_times_never_go_backwards(tmp_path: Path) -> None:
    clock = FakeClock(100.0)
    path = tmp_path / "h.cast"
    cast = CastWriter(path, width=80, height=24, clock=clock)
    clock.now += 2
    cast.output(b"a")
    clock.now -= 1  # a clock that steps back must not reorder the events
    cast.output(b"b")
    cast.close()
    times = [e[0] for e in lines(path)[1:]]  # type: ignore[index]
    assert times == sorted(times) == [2.0, 2.0]


def test_close_is_idempotent_and_its_digest_is_the_files(tmp_path: Path) -> None:
    path = tmp_path / "i.cast"
    cast = CastWriter(path, width=80, height=24)
    cast.output(b"some output\r\n")
    summary = cast.close()
    data = path.read_bytes()
    assert summary == RecordingSummary(hashlib.sha256(data).hexdigest(), len(data))
    assert cast.close() == summary
    assert cast.output(b"late") is None
    assert path.read_bytes() == data


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "j.cast"
    path.write_text("keep")
    with pytest.raises(FileExistsError):
        CastWriter(path, width=80, height=24)
    assert path.read_text() == "keep"


def test_every_event_is_on_disk_before_close(tmp_path: Path) -> None:
    path = tmp_path / "k.cast"
    cast = CastWriter(path, width=80, height=24)
    cast.output(b"live")
    assert lines(path)[-1][1:] == ["o", "live"]  # type: ignore[index]
    cast.close()
