"""Parameter values: the agent's gate. Injection attempts against the shipped patterns
are refused with a message naming the parameter; a value that is accepted stays one
argv element whatever it contains; secrets never appear in an error."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from playbooks.errors import InvalidParameter, InvalidPlaybook
from playbooks.loader import load_playbook, load_playbook_bytes
from playbooks.model import BuiltinStep, ExecStep, Playbook
from playbooks.params import (
    loggable_values,
    render_builtin,
    render_exec,
    secret_values,
    validate_params,
)
from playbooks.shipped import catalogue_dir

INJECTIONS = [
    "; rm -rf /",
    "/var; rm -rf /",
    "$(reboot)",
    "/var/$(reboot)",
    "`reboot`",
    "/var/`reboot`",
    "/var\n/etc",
    "/var\r/etc",
    "/var\x00/etc",
    "../../etc/shadow",
    "/var/../../etc/shadow",
    "/..",
    "/../etc/shadow",
    "/./etc",
    "/var/.",
    "--option-injection",
    "-rf",
    "/var /etc",
    "/var|cat",
    "/var&&reboot",
    "/var>/etc/passwd",
    "",
]


def shipped(name: str) -> Playbook:
    return load_playbook(catalogue_dir() / f"{name}.yaml")


def exec_step(playbook: Playbook, name: str) -> ExecStep:
    step = next(s for s in playbook.steps if s.name == name)
    assert isinstance(step, ExecStep)
    return step


def builtin_step(playbook: Playbook, name: str) -> BuiltinStep:
    step = next(s for s in playbook.steps if s.name == name)
    assert isinstance(step, BuiltinStep)
    return step


@pytest.mark.parametrize("value", INJECTIONS)
def test_path_injections_are_refused(value: str) -> None:
    with pytest.raises(InvalidParameter) as raised:
        validate_params(shipped("disk-usage"), {"path": value})
    assert raised.value.parameter == "path"
    assert "parameter 'path'" in str(raised.value)


@pytest.mark.parametrize("value", ["/", "/var", "/var/lib/docker", "/srv/data.v2/x-y_z", "/a/..b"])
def test_real_paths_are_accepted(value: str) -> None:
    values = validate_params(shipped("disk-usage"), {"path": value})
    assert values["path"] == value


@pytest.mark.parametrize(
    "value",
    [*INJECTIONS, "example.com; reboot", "-oProxyCommand=reboot", "exa mple.com", "a" * 300],
)
def test_hostname_injections_are_refused(value: str) -> None:
    with pytest.raises(InvalidParameter, match="parameter 'hostname'"):
        validate_params(shipped("network"), {"hostname": value})


@pytest.mark.parametrize(
    "value", [*INJECTIONS[:-1], "nginx.service;reboot", "--help", "../x.service", "nginx"]
)
def test_unit_injections_are_refused(value: str) -> None:
    with pytest.raises(InvalidParameter, match="parameter 'unit'"):
        validate_params(shipped("service-status"), {"unit": value})


@pytest.mark.parametrize("value", ["24h; reboot", "$(reboot)", "-1d", "1d\n", "0d", "10000d"])
def test_duration_string_injections_are_refused(value: str) -> None:
    with pytest.raises(InvalidParameter, match="parameter 'since'"):
        validate_params(shipped("recent-errors"), {"since": value})


def test_the_error_says_what_is_allowed() -> None:
    with pytest.raises(InvalidParameter) as raised:
        validate_params(shipped("disk-usage"), {"path": "; rm -rf /"})
    message = str(raised.value)
    assert "must match the pattern" in message and "'; rm -rf /'" in message


# A playbook whose pattern is deliberately permissive: what reaches argv is still one element.
PERMISSIVE = """\
name: echo
version: 1.0.0
description: Echo a note.
mode: read-only
parameters:
  - name: note
    type: string
    pattern: '[\\s\\S]*'
    required: true
  - name: key
    type: string
    pattern: '[A-Za-z0-9]{8,32}'
    secret: true
    required: true
  - name: level
    type: enum
    choices: [info, warn]
    default: info
  - name: count
    type: int
    min: -5
    max: 10
    default: 1
steps:
  - name: print
    exec:
      argv: [printf, "%s|", "{{ note }}", "{{ level }}", "{{ count }}"]
  - name: top
    builtin:
      function: top_processes
      args: {by: "{{ level }}", limit: "{{ count }}"}
"""


def permissive() -> Playbook:
    return load_playbook_bytes(PERMISSIVE.encode(), "echo.yaml")


def test_an_accepted_value_stays_one_argv_element(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    playbook = permissive()
    monkeypatch.chdir(tmp_path)  # a short relative marker keeps the note under 256 characters
    marker = Path("pwned")
    note = f"a b; touch {marker} $(touch {marker}) `touch {marker}` && reboot | cat > x"
    values = validate_params(playbook, {"note": note, "key": "abcdefgh1", "count": "3"})
    argv, env = render_exec(exec_step(playbook, "print"), values)
    assert argv == ["printf", "%s|", note, "info", "3"]
    assert env == {}
    result = subprocess.run(argv, capture_output=True, text=True, check=True)  # no shell
    assert result.stdout == f"{note}|info|3|"
    assert not marker.exists()


@pytest.mark.parametrize(
    "value", ["line1\nline2", "nul\x00byte", "cr\rlf", "tab\there", "\x1b[31m"]
)
def test_control_characters_are_refused_even_if_the_pattern_allows_them(value: str) -> None:
    with pytest.raises(InvalidParameter, match="must not contain NUL, newline or other control"):
        validate_params(permissive(), {"note": value, "key": "abcdefgh1"})


def test_strings_longer_than_max_length_are_refused() -> None:
    with pytest.raises(InvalidParameter, match="at most 256 characters"):
        validate_params(permissive(), {"note": "x" * 257, "key": "abcdefgh1"})


@pytest.mark.parametrize("value", ["11", "-6", "1_0", " 5", "5 ", "\u0665", "0x10", "1e3", "", "x"])
def test_int_values_must_be_plain_whole_numbers_in_bounds(value: str) -> None:
    with pytest.raises(InvalidParameter, match=r"parameter 'count' must be a whole number from -5"):
        validate_params(permissive(), {"note": "n", "key": "abcdefgh1", "count": value})


def test_ints_come_back_as_int_and_negative_numbers_in_bounds_pass() -> None:
    values = validate_params(permissive(), {"note": "n", "key": "abcdefgh1", "count": "-5"})
    assert values["count"] == -5
    assert validate_params(permissive(), {"note": "n", "key": "abcdefgh", "count": 7})["count"] == 7


def test_enum_values_must_be_a_choice() -> None:
    with pytest.raises(InvalidParameter, match="must be one of: info, warn, got 'error'"):
        validate_params(permissive(), {"note": "n", "key": "abcdefgh1", "level": "error"})


def test_unknown_and_missing_parameters_are_all_reported() -> None:
    with pytest.raises(InvalidParameter) as raised:
        validate_params(permissive(), {"nots": "x", "count": "99"})
    problems = raised.value.problems
    assert any("unknown parameter 'nots' (did you mean 'note'?)" in p for p in problems)
    assert any("parameter 'note' is required" in p for p in problems)
    assert any("parameter 'key' is required" in p for p in problems)
    assert any("parameter 'count' must be a whole number" in p for p in problems)
    assert raised.value.parameter == "note"


@pytest.mark.parametrize(
    "secret", ["hunter2;rm", "hunter2-and-more-than-32-characters-long!!", "hun\nter2"]
)
def test_a_secret_value_is_never_in_the_error(secret: str) -> None:
    with pytest.raises(InvalidParameter) as raised:
        validate_params(permissive(), {"note": "n", "key": secret})
    assert "hunter2" not in str(raised.value)
    assert "hunter2" not in repr(raised.value.problems)
    assert "secret value is not shown" in str(raised.value) or "at most" in str(raised.value)


def test_secrets_are_masked_for_logs_and_listed_for_redaction() -> None:
    playbook = permissive()
    values = validate_params(playbook, {"note": "n", "key": "s3cretvalue"})
    assert loggable_values(playbook, values)["key"] == "<secret>"
    assert loggable_values(playbook, values)["note"] == "n"
    assert secret_values(playbook, values) == ["s3cretvalue"]


def test_defaults_are_filled_in() -> None:
    values = validate_params(shipped("disk-usage"), {})
    assert values == {"path": "/", "depth": 3, "limit": 25}


def test_render_builtin_keeps_types() -> None:
    playbook = permissive()
    values = validate_params(playbook, {"note": "n", "key": "abcdefgh1", "count": "4"})
    assert render_builtin(builtin_step(playbook, "top"), values) == {"by": "info", "limit": 4}


def test_render_of_the_shipped_disk_usage() -> None:
    playbook = shipped("disk-usage")
    values = validate_params(playbook, {"path": "/var/log", "depth": "2"})
    args = render_builtin(builtin_step(playbook, "largest directories"), values)
    assert args == {"path": "/var/log", "depth": 2, "limit": 25}


def test_render_refuses_a_spliced_element_in_a_hand_made_step() -> None:
    step = ExecStep("bad", ("ls", "--dir={{ p }}"))
    with pytest.raises(InvalidPlaybook, match="splices a parameter"):
        render_exec(step, {"p": "/"})
    with pytest.raises(InvalidPlaybook, match="argv\\[0\\] must not be a parameter"):
        render_exec(ExecStep("bad", ("{{ p }}",)), {"p": "/bin/sh"})


def test_render_refuses_a_placeholder_without_value() -> None:
    with pytest.raises(InvalidParameter, match="no value for parameter 'p'"):
        render_exec(ExecStep("s", ("ls", "{{ p }}")), {})


def test_env_values_are_rendered_whole() -> None:
    step = ExecStep("s", ("tool",), env={"TOKEN": "{{ key }}", "LANG": "C"})
    argv, env = render_exec(step, {"key": "a b;c"})
    assert argv == ["tool"] and env == {"TOKEN": "a b;c", "LANG": "C"}
