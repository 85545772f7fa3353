"""Playbook format: a valid playbook loads; every rule is reported as FILE:LINE with the
right line and a message that says what to do instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from playbooks.errors import InvalidPlaybook
from playbooks.loader import lint, load_playbook, load_playbook_bytes
from playbooks.model import BuiltinStep, ExecStep

BASE = """\
name: demo
version: 1.2.3
description: A demo playbook.
mode: read-only
parameters:
  - name: path
    type: string
    description: a directory
    default: /var
    pattern: '/[a-z/]*'
  - name: token
    type: string
    pattern: '[A-Za-z0-9]{8,64}'
    secret: true
    required: true
  - name: count
    type: int
    min: 1
    max: 50
    default: 5
steps:
  - name: list
    exec:
      argv: [ls, -l, "{{ path }}"]
      env: {API_TOKEN: "{{ token }}"}
      timeout: 10s
      output_limit: 64KiB
  - name: top
    builtin:
      function: top_processes
      args: {by: memory, limit: "{{ count }}"}
timeout: 1m
"""


def write(tmp_path: Path, text: str, name: str = "demo") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def line_of(text: str, fragment: str) -> int:
    """The 1-based number of the first line of ``text`` containing ``fragment``."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_the_base_playbook_is_valid(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    assert lint(path) == []
    playbook = load_playbook(path)
    assert (playbook.name, playbook.version, playbook.mode) == ("demo", "1.2.3", "read-only")
    assert playbook.timeout_seconds == 60
    exec_step, builtin_step = playbook.steps
    assert isinstance(exec_step, ExecStep) and isinstance(builtin_step, BuiltinStep)
    assert exec_step.argv == ("ls", "-l", "{{ path }}")
    assert exec_step.env == {"API_TOKEN": "{{ token }}"}
    assert exec_step.timeout_seconds == 10 and exec_step.output_limit_bytes == 64 * 1024
    assert builtin_step.args == {"by": "memory", "limit": "{{ count }}"}
    assert builtin_step.timeout_seconds == 30  # default
    path_param = playbook.parameter("path")
    assert path_param is not None and path_param.default == "/var"
    count = playbook.parameter("count")
    assert count is not None and (count.minimum, count.maximum, count.default) == (1, 50, 5)


# (text to replace in BASE, replacement, fragment of the line the problem is on, message part)
CASES = {
    "spliced placeholder": (
        '"{{ path }}"]',
        '"--dir={{ path }}"]',
        "--dir=",
        "splices a parameter into text; a parameter must be an entire element",
    ),
    "spliced placeholder suggests two elements": (
        '"{{ path }}"]',
        '"--dir={{ path }}"]',
        "--dir=",
        "use two elements, '--dir', '{{ path }}', or pass it in env",
    ),
    "spliced in the middle": ('"{{ path }}"]', '"a{{ path }}b"]', "a{{", "use a separate element"),
    "spliced env value": (
        '"{{ token }}"}',
        '"Bearer {{ token }}"}',
        "Bearer",
        "env.API_TOKEN 'Bearer {{ token }}' splices a parameter",
    ),
    "spliced builtin arg": ('"{{ count }}"}', '"x{{ count }}"}', "x{{", "args.limit"),
    "undeclared parameter": (
        '"{{ path }}"]',
        '"{{ pth }}"]',
        "{{ pth }}",
        "there is no parameter 'pth' (did you mean 'path'?)",
    ),
    "argv0 is a parameter": (
        'argv: [ls, -l, "{{ path }}"]',
        'argv: ["{{ path }}", -l]',
        "argv:",
        "argv[0] must be a fixed program, never a parameter",
    ),
    "relative argv0": (
        "argv: [ls,",
        "argv: [./ls,",
        "argv:",
        "must be an absolute path (/usr/bin/df) or a bare program name",
    ),
    "sh -c": ("argv: [ls, -l,", 'argv: [sh, -c, "ls -l",', "argv:", "argv runs `sh -c`"),
    "bash -ec by path": ("argv: [ls, -l,", "argv: [/bin/bash, -ec, x,", "argv:", "`bash -ec`"),
    "python -c": ("argv: [ls, -l,", "argv: [python3.11, -c, x,", "argv:", "`python3.11 -c`"),
    "perl -e": ("argv: [ls, -l,", "argv: [perl, -ne, x,", "argv:", "`perl -ne`"),
    "shell behind env": (
        "argv: [ls, -l,",
        "argv: [env, FOO=1, bash, -c, x,",
        "argv:",
        "`bash -c`",
    ),
    "shell behind find -exec": (
        "argv: [ls, -l,",
        "argv: [find, /, -exec, sh, -c, x, ;,",
        "argv:",
        "no shell in playbooks",
    ),
    "env -S": ("argv: [ls, -l,", 'argv: [env, -S, "sh x",', "argv:", "env -S splits"),
    "sudo": ("argv: [ls, -l,", "argv: [sudo, ls,", "argv:", "use `run_as`"),
    "secret in argv": (
        '"{{ path }}"]',
        '"{{ token }}"]',
        "{{ token }}",
        "the secret parameter 'token' must not be an argv element",
    ),
    "loader variable in env": ("{API_TOKEN:", "{LD_PRELOAD:", "LD_PRELOAD", "env: LD_PRELOAD"),
    "PATH in env": ("{API_TOKEN:", "{PATH:", "{PATH:", "may not set it"),
    "run_as root in a read-only playbook": (
        "      timeout: 10s\n",
        "      timeout: 10s\n      run_as: root\n",
        "run_as",
        "run_as: root needs `mode: mutating`",
    ),
    "unknown builtin": (
        "function: top_processes",
        "function: top_proceses",
        "function:",
        "unknown builtin function 'top_proceses' (did you mean 'top_processes'?)",
    ),
    "unknown builtin argument": (
        "{by: memory,",
        "{by: memory, limt: 3,",
        "args:",
        "unknown key 'limt' in args of top_processes (did you mean 'limit'?)",
    ),
    "unknown top-level key": (
        "mode: read-only\n",
        "mode: read-only\ndescripton: typo\n",
        "descripton",
        "unknown key 'descripton' in a playbook (did you mean 'description'?)",
    ),
    "unknown exec key": (
        "timeout: 10s",
        "timout: 10s",
        "timout",
        "unknown key 'timout' in exec (did you mean 'timeout'?)",
    ),
    "unknown parameter key": (
        "    secret: true\n",
        "    secrit: true\n",
        "secrit",
        "(did you mean 'secret'?)",
    ),
    "bad duration": (
        "timeout: 10s",
        "timeout: 10 seconds",
        "10 seconds",
        "invalid duration '10 seconds'",
    ),
    "bad size": ("output_limit: 64KiB", "output_limit: 64KB!", "output_limit", "invalid size"),
    "step longer than the playbook": (
        "timeout: 10s",
        "timeout: 5m",
        "timeout: 5m",
        "longer than the playbook's timeout 60s",
    ),
    "string parameter without pattern": (
        "    pattern: '/[a-z/]*'\n",
        "",
        "name: path",
        "a string parameter needs 'pattern'",
    ),
    "int parameter without bounds": ("    max: 50\n", "", "name: count", "needs 'max'"),
    "invalid regex": (
        "pattern: '/[a-z/]*'",
        "pattern: '/[a-z/*'",
        "pattern:",
        "not a valid regular expression",
    ),
    "invalid default": (
        "default: /var",
        "default: var",
        "default:",
        "default is not valid: parameter 'path' must match the pattern",
    ),
    "optional without default": (
        "    default: /var\n",
        "",
        "name: path",
        "is optional, so it needs a `default`",
    ),
    "bad version": ("version: 1.2.3", "version: 1.2", "version:", "use MAJOR.MINOR.PATCH"),
    "bad mode": ("mode: read-only", "mode: readonly", "mode:", "read-only or mutating"),
    "duplicate key": (
        "mode: read-only\n",
        "mode: read-only\nmode: mutating\n",
        "mode: mutating",
        "duplicate key 'mode' (first at line 4)",
    ),
    "exec and builtin in one step": (
        "  - name: top\n",
        "  - name: top\n    exec: {argv: [ls]}\n",
        "- name: top",
        "exactly one of `exec` or `builtin` (not both)",
    ),
    "anchors": ("args: {by:", "args: &a {by:", "args: &a", "anchors and aliases"),
    "invalid redact pattern": (
        "timeout: 1m\n",
        "timeout: 1m\nredact: ['(unclosed']\n",
        "redact",
        "a redact pattern is not a valid regular expression",
    ),
    "YAML syntax error": (
        "  - name: top\n",
        "  - name: top\n   bad: [\n",
        "bad: [",
        "YAML syntax error",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_each_rule_is_reported_on_its_line(tmp_path: Path, case: tuple[str, str, str, str]) -> None:
    old, new, fragment, message = case
    assert old in BASE
    text = BASE.replace(old, new, 1)
    path = write(tmp_path, text)
    problems = lint(path)
    expected_prefix = f"{path}:{line_of(text, fragment)}: "
    assert any(p.startswith(expected_prefix) and message in p for p in problems), problems
    with pytest.raises(InvalidPlaybook) as raised:
        load_playbook_bytes(text.encode(), "x.yaml")
    assert raised.value.problems


def test_lint_wants_the_file_named_after_the_playbook(tmp_path: Path) -> None:
    text = BASE.replace("name: demo", "name: other")
    path = write(tmp_path, text)
    assert lint(path) == [f"{path}:1: the playbook 'other' must be in a file named other.yaml"]
    assert load_playbook(path).name == "other"  # loading one file does not insist


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        BASE.replace('"{{ path }}"]', '"--dir={{ path }}"]')
        .replace("function: top_processes", "function: nope")
        .replace("timeout: 10s", "timeout: soon")
    )
    problems = lint(write(tmp_path, text))
    assert len(problems) == 3, problems
    assert [int(p.split(":")[1]) for p in problems] == sorted(
        int(p.split(":")[1]) for p in problems
    )


def test_missing_required_keys(tmp_path: Path) -> None:
    problems = lint(write(tmp_path, "name: demo\nversion: 1.0.0\n"))
    for key in ("description", "mode", "steps"):
        assert any(f"needs the key {key!r}" in p for p in problems), problems


def test_lint_a_directory(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    write(tmp_path, BASE.replace("name: demo", "name: broken").replace("1.2.3", "x"), "broken")
    (tmp_path / "old.yml").write_text(BASE)
    problems = lint(tmp_path)
    assert any(p.startswith(f"{tmp_path / 'broken.yaml'}:2: version 'x'") for p in problems)
    assert any("old.yml: playbook files end in .yaml" in p for p in problems)
    assert not any("demo.yaml" in p for p in problems)


def test_lint_an_empty_or_missing_path(tmp_path: Path) -> None:
    assert lint(tmp_path) == [f"{tmp_path}: no playbook files (*.yaml) in this directory"]
    assert lint(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such file or directory"]


def test_oversized_and_non_utf8_files_are_refused() -> None:
    with pytest.raises(InvalidPlaybook, match="file too large"):
        load_playbook_bytes(b"#" * (300 * 1024))
    with pytest.raises(InvalidPlaybook, match="not valid UTF-8"):
        load_playbook_bytes(BASE.encode() + b"\n# \xff\n")


def test_tags_and_merge_keys_are_refused() -> None:
    with pytest.raises(InvalidPlaybook, match="YAML tags are not allowed"):
        load_playbook_bytes(BASE.replace("1.2.3", "!!python/object:os.system 1.2.3").encode())
    with pytest.raises(InvalidPlaybook, match="unknown key '<<'"):
        load_playbook_bytes(BASE.replace("mode: read-only", "mode: read-only\n<<: {}").encode())


def test_run_as_root_is_allowed_in_a_mutating_playbook(tmp_path: Path) -> None:
    text = BASE.replace("mode: read-only", "mode: mutating").replace(
        "      timeout: 10s\n", "      timeout: 10s\n      run_as: root\n"
    )
    playbook = load_playbook(write(tmp_path, text))
    step = playbook.steps[0]
    assert isinstance(step, ExecStep) and step.run_as == "root"


def test_interpreters_without_inline_code_are_allowed(tmp_path: Path) -> None:
    text = BASE.replace("argv: [ls, -l,", "argv: [python3, /usr/lib/tool/report.py, -v,")
    assert lint(write(tmp_path, text)) == []
