"""Reading asciicast v2 recordings: parsing, timed replay, and the typed-line reconstruction."""

from __future__ import annotations

import json
import re

import pytest

from common.asciicast import Event, TypedLine, parse_cast, play, typed_entries, typed_lines

HEADER = {"version": 2, "width": 80, "height": 24, "timestamp": 1_700_000_000}


def cast(*events: object, header: object = HEADER) -> bytes:
    lines = [json.dumps(header)] + [json.dumps(e) for e in events]
    return ("\n".join(lines) + "\n").encode()


def inputs(*chunks: str) -> list[Event]:
    return [(float(n), "i", chunk) for n, chunk in enumerate(chunks)]


# -- parse_cast ------------------------------------------------------------------------


def test_parse_reads_header_and_events() -> None:
    header, events = parse_cast(cast([0.5, "o", "$ "], [1, "i", "ls\r"], [1.25, "r", "100x30"]))
    assert header["width"] == 80
    assert events == [(0.5, "o", "$ "), (1.0, "i", "ls\r"), (1.25, "r", "100x30")]
    assert all(isinstance(t, float) for t, _, _ in events)


def test_parse_accepts_header_only_and_blank_lines() -> None:
    assert parse_cast(cast()) == (HEADER, [])
    data = cast([0.1, "o", "a"]) + b"\n\n"
    assert parse_cast(data)[1] == [(0.1, "o", "a")]


def test_parse_keeps_unicode_and_escapes() -> None:
    _, events = parse_cast(cast([0.1, "o", "\x1b[1mgrüß\x1b[0m \u2603"]))
    assert events[0][2] == "\x1b[1mgrüß\x1b[0m \u2603"


def test_parse_drops_a_partial_last_line_of_a_live_recording() -> None:
    data = cast([0.1, "o", "a"]) + b'[0.2, "o", "b'
    assert parse_cast(data)[1] == [(0.1, "o", "a")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty recording"),
        (b"\n\n", "empty recording"),
        (b"hello world\n", "line 1: the asciicast header is not JSON"),
        (b'[0.1, "o", "x"]\n[0.2, "o", "y"]\n', "missing asciicast header"),
        (b'"just a string"\n', "not a JSON object"),
        (json.dumps({"version": 1, "stdout": []}).encode() + b"\n", "version 1 is not supported"),
        (json.dumps({"version": 3, "term": {}}).encode() + b"\n", "version 3 is not supported"),
        (json.dumps({"width": 80}).encode() + b"\n", "version None is not supported"),
        (cast([0.1, "o", "a"]) + b"not json\n", "line 3: not JSON"),
        (cast([0.1, "o"]), "line 2: an event must be [time, code, data]"),
        (cast({"t": 1}), "line 2: an event must be"),
        (cast(["soon", "o", "a"]), "line 2: the event time 'soon'"),
        (cast([True, "o", "a"]), "line 2: the event time True"),
        (cast([-1, "o", "a"]), "line 2: the event time -1"),
        (cast([0.1, "o", 5]), "line 2: the event code and data must be strings"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
    ],
)
def test_parse_refuses_malformed_input(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_cast(data)


def test_a_broken_line_in_the_middle_is_an_error_even_without_final_newline() -> None:
    data = cast([0.1, "o", "a"]) + b"garbage\n" + b'[0.3, "o", "c"]'
    with pytest.raises(ValueError, match="line 3"):
        parse_cast(data)


# -- play ------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.log: list[tuple[str, object]] = []

    def write(self, text: str) -> None:
        self.log.append(("write", text))

    def sleep(self, seconds: float) -> None:
        self.log.append(("sleep", round(seconds, 6)))


def test_play_writes_output_with_its_timing_and_skips_other_events() -> None:
    events: list[Event] = [
        (0.0, "o", "$ "),
        (0.5, "i", "l"),
        (1.0, "o", "ls\r\n"),
        (1.5, "r", "100x30"),
        (2.0, "m", "marker"),
        (2.5, "o", "file\r\n"),
    ]
    out = Recorder()
    play(events, out.write, out.sleep, speed=1.0, max_wait=None)
    assert out.log == [
        ("write", "$ "),
        ("sleep", 0.5),
        ("sleep", 0.5),
        ("write", "ls\r\n"),
        ("sleep", 0.5),
        ("sleep", 0.5),
        ("sleep", 0.5),
        ("write", "file\r\n"),
    ]


def test_play_caps_idle_time_and_applies_speed() -> None:
    events: list[Event] = [(1.0, "o", "a"), (61.0, "o", "b"), (61.5, "o", "c")]
    out = Recorder()
    play(events, out.write, out.sleep, speed=2.0, max_wait=2.0)
    assert out.log == [
        ("sleep", 0.5),  # 1 s at double speed
        ("write", "a"),
        ("sleep", 1.0),  # 60 s idle, capped at 2 s, at double speed
        ("write", "b"),
        ("sleep", 0.25),
        ("write", "c"),
    ]


def test_play_with_zero_max_wait_never_sleeps_and_tolerates_time_going_back() -> None:
    out = Recorder()
    play([(5.0, "o", "a"), (4.0, "o", "b"), (6.0, "o", "c")], out.write, out.sleep, max_wait=0)
    assert out.log == [("write", "a"), ("write", "b"), ("write", "c")]


def test_play_refuses_a_non_positive_speed() -> None:
    with pytest.raises(ValueError, match="speed"):
        play([], print, print, speed=0)


# -- typed lines -----------------------------------------------------------------------


def test_enter_ends_lines_cr_lf_and_crlf() -> None:
    assert typed_lines(inputs("uptime\r", "df -h\n", "free -m\r\n", "who\r")) == [
        (0.0, "uptime"),
        (1.0, "df -h"),
        (2.0, "free -m"),
        (3.0, "who"),
    ]


def test_input_split_across_events_is_joined_and_timed_at_enter() -> None:
    assert typed_lines(inputs("u", "pt", "im", "e", "\r")) == [(4.0, "uptime")]


def test_several_lines_in_one_event() -> None:
    assert typed_lines(inputs("ls\rpwd\r")) == [(0.0, "ls"), (0.0, "pwd")]


def test_backspace_deletes_one_character() -> None:
    assert typed_lines(inputs("lss\x7f -l\r", "cd /tmpp\x08\r", "\x7f\x7fok\r")) == [
        (0.0, "ls -l"),
        (1.0, "cd /tmp"),
        (2.0, "ok"),
    ]


def test_ctrl_u_clears_the_line() -> None:
    assert typed_lines(inputs("rm -rf /\x15echo safe\r")) == [(0.0, "echo safe")]


def test_ctrl_w_deletes_a_word() -> None:
    assert typed_lines(inputs("systemctl restart nginx \x17status nginx\r")) == [
        (0.0, "systemctl restart status nginx")
    ]


def test_ctrl_c_discards_the_line() -> None:
    assert typed_lines(inputs("rm -rf /var/log", "\x03", "ls\r")) == [(2.0, "ls")]


def test_arrow_keys_are_dropped_and_mark_the_line_uncertain() -> None:
    entries = typed_entries(inputs("ls\x1b[A\x1b[B -l\r", "\x1bOA\r", "ok\r"))
    assert entries == [
        TypedLine(0.0, "ls -l", True),
        TypedLine(1.0, "", True),  # history recall then Enter: something ran
        TypedLine(2.0, "ok", False),
    ]
    assert typed_lines(inputs("\x1b[A\r")) == []


def test_escape_sequences_split_across_events() -> None:
    assert typed_lines(inputs("ab", "\x1b", "[", "1;5", "D", "c\r")) == [(5.0, "abc")]


def test_function_keys_delete_key_and_osc_are_dropped() -> None:
    data = "x\x1b[3~y\x1b[15~\x1b]0;title\x07\x1b]1;t\x1b\\z\x1bfw\r"
    assert typed_entries(inputs(data)) == [TypedLine(0.0, "xyzw", True)]


def test_bracketed_paste_keeps_the_text_and_stays_certain() -> None:
    assert typed_entries(inputs("\x1b[200~echo pasted\x1b[201~\r")) == [
        TypedLine(0.0, "echo pasted", False)
    ]


def test_tab_completion_is_marked_uncertain() -> None:
    assert typed_entries(inputs("cat /etc/hostn\t\r")) == [TypedLine(0.0, "cat /etc/hostn", True)]


def test_other_control_characters_are_ignored() -> None:
    entries = typed_entries(inputs("\x0cls\x04\r", "a\x01b\x12\r"))
    assert entries == [TypedLine(0.0, "ls", False), TypedLine(1.0, "ab", True)]


def test_blank_lines_are_left_out_and_text_is_stripped() -> None:
    assert typed_lines(inputs("\r", "   \r", "  ls  \r")) == [(2.0, "ls")]


def test_only_input_events_count_and_unfinished_lines_are_left_out() -> None:
    events: list[Event] = [
        (0.0, "o", "$ ls\r\n"),
        (0.5, "i", "pwd\r"),
        (0.6, "r", "80x24"),
        (1.0, "i", "half typed"),
    ]
    assert typed_lines(events) == [(0.5, "pwd")]


def test_unicode_input() -> None:
    assert typed_lines(inputs("echo grüß \u2603\r")) == [(0.0, "echo grüß \u2603")]


def test_reconstruction_from_a_parsed_file() -> None:
    data = cast(
        [0.1, "o", "$ "],
        [1.0, "i", "u"],
        [1.1, "i", "ptime"],
        [1.2, "o", "uptime"],
        [1.5, "i", "\r"],
        [1.6, "o", "\r\n 10:00 up 1 day\r\n$ "],
    )
    assert typed_lines(parse_cast(data)[1]) == [(1.5, "uptime")]
