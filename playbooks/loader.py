"""Playbook files: parse and validate YAML into ``Playbook`` records, every problem as
``FILE:LINE: message``.

``load_playbook_bytes(data, source)`` / ``load_playbook(path)`` return a Playbook or
raise InvalidPlaybook listing *all* problems; ``lint(path)`` (a file or a directory of
``*.yaml`` files) returns that list instead, for ``aftercare-vendor lint PATH``;
``load_catalogue_files(directory)`` reads a catalogue for signing, keeping each file's
exact bytes next to the playbook parsed from them.

Files are composed (not constructed) with PyYAML's safe loader so every key and value
keeps its line; anchors and aliases are refused (a signed playbook reads as written).
The rules beyond the schema (docs/playbooks.md, "Rules enforced at load"):

- a ``{{ name }}`` placeholder names a declared parameter and is an *entire* argv
  element, env value or builtin argument — never spliced into text;
- argv[0] is a fixed absolute path or bare program name, never a parameter;
- no inline-code interpreters (``sh -c``, ``python -c``, ``perl -e``, ``env -S`` …) and
  no privilege tools (``sudo``, ``su`` …: use ``run_as``);
- env never sets loader or interpreter variables (``LD_PRELOAD``, ``PATH`` …);
- a secret parameter reaches a program only through env (argv is visible in ``ps``);
- ``run_as: root`` needs ``mode: mutating``;
- builtin functions and their argument names come from ``playbooks.builtins``;
- string parameters need a full-match ``pattern``, int parameters ``min`` and ``max``,
  optional parameters a ``default`` (which must itself be valid);
- unknown keys are errors, with a suggestion.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from common.durations import parse_size
from playbooks.builtins import BUILTIN_ARGS, BUILTIN_FUNCTIONS
from playbooks.errors import InvalidParameter, InvalidPlaybook
from playbooks.exec_policy import env_name_problem, inline_code_problem, program_problem
from playbooks.model import BuiltinStep, ExecStep, Mode, Parameter, ParamType, Playbook, Step
from playbooks.params import PLACEHOLDER, check_value, has_braces, placeholder
from playbooks.semver import SEMVER_HELP, is_semver
from playbooks.yamlnodes import Entries, Invalid, NodeReader, attempt, by_line, suggest

__all__ = [
    "BUILTIN_ARGS",
    "BUILTIN_FUNCTIONS",
    "MAX_PLAYBOOK_BYTES",
    "LoadedPlaybook",
    "check_playbook_bytes",
    "lint",
    "load_catalogue_files",
    "load_playbook",
    "load_playbook_bytes",
    "playbook_files",
]

MAX_PLAYBOOK_BYTES = 256 * 1024
MAX_STEP_TIMEOUT = 3600.0
MAX_RUN_TIMEOUT = 6 * 3600.0
MAX_OUTPUT_LIMIT = 64 * 1024 * 1024
MAX_STRING_LENGTH = 65536
DEFAULT_RUN_TIMEOUT = 300.0
DEFAULT_STEP_TIMEOUT = 30.0
DEFAULT_OUTPUT_LIMIT = 256 * 1024

_TOP_KEYS = (
    "name",
    "version",
    "description",
    "mode",
    "collects",
    "needs",
    "parameters",
    "steps",
    "redact",
    "timeout",
)
_TOP_REQUIRED = ("name", "version", "description", "mode", "steps")
_PARAM_KEYS = (
    "name",
    "type",
    "description",
    "required",
    "default",
    "pattern",
    "min",
    "max",
    "choices",
    "max_length",
    "secret",
)
_PARAM_ONLY_FOR: dict[str, ParamType] = {
    "pattern": "string",
    "max_length": "string",
    "secret": "string",
    "min": "int",
    "max": "int",
    "choices": "enum",
}
_STEP_KEYS = ("name", "exec", "builtin")
_EXEC_KEYS = ("argv", "env", "timeout", "output_limit", "run_as", "optional")
_BUILTIN_KEYS = ("function", "args", "timeout", "output_limit")
_MODES: tuple[Mode, ...] = ("read-only", "mutating")
_TYPES: tuple[ParamType, ...] = ("string", "int", "enum")

_PLAYBOOK_NAME = re.compile(r"[a-z][a-z0-9-]*")
_PARAM_NAME = re.compile(r"[a-z][a-z0-9_]*")
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_ROOT_USERS = frozenset({"root"})

_T = TypeVar("_T")


@dataclass(frozen=True)
class LoadedPlaybook:
    """A catalogue file: its path, its exact bytes, and the playbook parsed from them."""

    path: Path
    data: bytes
    playbook: Playbook


def load_playbook_bytes(data: bytes, source: str = "<playbook>") -> Playbook:
    """The playbook in ``data``; ``source`` names it in messages (``SOURCE:LINE: ...``).

    Raises InvalidPlaybook listing every problem."""
    playbook, problems = check_playbook_bytes(data, source)
    if playbook is None:
        raise InvalidPlaybook(problems)
    return playbook


def load_playbook(path: Path) -> Playbook:
    """The playbook in the file at ``path``; InvalidPlaybook lists every problem.

    Unlike ``lint``, the file name need not match the playbook name."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidPlaybook([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    return load_playbook_bytes(data, str(path))


def check_playbook_bytes(
    data: bytes, source: str, *, expected_name: str | None = None
) -> tuple[Playbook | None, list[str]]:
    """(playbook or None, problems) for ``data``. With ``expected_name`` (a file's stem),
    a playbook of another name is a problem: catalogue files are named ``NAME.yaml``."""
    reader = _Reader(source)
    root = reader.compose(data)
    playbook = None if root is None else _PlaybookReader(reader, root, expected_name).read()
    problems = by_line(reader.problems)
    return (playbook if not problems else None), problems


def playbook_files(directory: Path) -> list[Path]:
    """The ``*.yaml`` files of ``directory`` (not recursive), in name order."""
    return sorted(p for p in Path(directory).iterdir() if p.suffix == ".yaml" and p.is_file())


def lint(path: Path) -> list[str]:
    """Every problem in the playbook file, or the ``*.yaml`` files of the directory, at
    ``path``, each ``FILE:LINE: message``; empty if all are valid."""
    problems: list[str] = []
    for _, _, file_problems in _check_path(Path(path)):
        problems.extend(file_problems)
    return problems


def load_catalogue_files(directory: Path) -> list[LoadedPlaybook]:
    """Every playbook of the catalogue ``directory`` with its exact bytes, in name order.

    Raises InvalidPlaybook listing every problem of every file (the signer refuses to
    sign a catalogue with any)."""
    loaded: list[LoadedPlaybook] = []
    problems: list[str] = []
    for file, data, file_problems in _check_path(Path(directory), directory_only=True):
        problems.extend(file_problems)
        if not file_problems and data is not None:
            playbook = load_playbook_bytes(data, str(file))
            loaded.append(LoadedPlaybook(file, data, playbook))
    if problems:
        raise InvalidPlaybook(problems)
    return loaded


def _check_path(
    path: Path, *, directory_only: bool = False
) -> Iterator[tuple[Path, bytes | None, list[str]]]:
    """(file, its bytes or None, its problems) for the file or directory ``path``."""
    if path.is_dir():
        files = playbook_files(path)
        for other in sorted(p for p in path.iterdir() if p.suffix == ".yml"):
            yield other, None, [f"{other}: playbook files end in .yaml: rename it"]
        if not files:
            yield path, None, [f"{path}: no playbook files (*.yaml) in this directory"]
    elif directory_only:
        yield path, None, [f"{path}: not a directory"]
        return
    elif not path.exists():
        yield path, None, [f"{path}: no such file or directory"]
        return
    else:
        files = [path]
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            yield file, None, [f"{file}: cannot read: {exc.strerror or exc}"]
            continue
        _, problems = check_playbook_bytes(data, str(file), expected_name=file.stem)
        yield file, data, problems


def _value_node(entries: Entries, key: str) -> Node | None:
    pair = entries.get(key)
    return None if pair is None else pair[1]


class _Reader(NodeReader):
    """Reads YAML nodes of one file, reporting problems as ``SOURCE:LINE: message``."""

    # -- the document ----------------------------------------------------------------

    def compose(self, data: bytes) -> Node | None:
        if len(data) > MAX_PLAYBOOK_BYTES:
            self.problem(1, f"file too large ({len(data)} bytes; at most {MAX_PLAYBOOK_BYTES})")
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            self.problem(line, "not valid UTF-8 text")
            return None
        return self.compose_text(
            text,
            empty="empty playbook: expected a mapping with name, version, steps, ...",
            check=self._plain,
            unplaced_line=1,
        )

    def _plain(self, text: str) -> bool:
        """False (and reported) if the YAML uses anchors, aliases or explicit tags."""
        ok = True
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1 if event.start_mark is not None else 1
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                self.problem(line, "anchors and aliases (&, *) are not allowed: write it out")
                ok = False
            tag = getattr(event, "tag", None)
            if tag is not None and tag != "!":
                self.problem(line, f"YAML tags are not allowed (found {tag!r})")
                ok = False
        return ok

    # -- mappings and sizes (NodeReader has the other readers) -----------------------

    def mapping(
        self,
        node: Node,
        what: str,
        allowed: Collection[str] | None,
        required: Collection[str] = (),
    ) -> Entries:
        """The mapping's entries; unknown (not in ``allowed``; None allows any key),
        duplicate and missing keys are reported (missing ones then raise Invalid)."""
        if not isinstance(node, MappingNode):
            raise self.error(node, f"{what} must be a mapping, got {self.describe(node)}")
        entries: Entries = {}
        for key_node, value_node in node.value:
            key = attempt(self.key, key_node)
            if key is None:
                continue
            if key in entries:
                first = entries[key][0].start_mark.line + 1
                self.error(key_node, f"duplicate key {key!r} (first at line {first})")
            elif allowed is not None and key not in allowed:
                self.error(key_node, f"unknown key {key!r} in {what}{suggest(key, allowed)}")
            else:
                entries[key] = (cast(ScalarNode, key_node), value_node)
                self.key_of[id(value_node)] = key_node
        missing = [key for key in required if key not in entries]
        for key in missing:  # reported on the line that names the mapping, if any
            self.error(self.key_of.get(id(node), node), f"{what} is missing the key {key!r}")
        if missing:
            raise Invalid(what)
        return entries

    def size(self, node: Node, what: str) -> int:
        value = self.scalar(node)
        try:
            size = parse_size(cast(str | int, value))
        except ValueError as exc:
            raise self.error(node, f"{what}: {exc}") from exc
        if not 0 < size <= MAX_OUTPUT_LIMIT:
            raise self.error(node, f"{what} must be more than 0 and at most 64MiB")
        return size


class _PlaybookReader:
    """Reads one playbook document; every field is read (and reported) independently."""

    def __init__(self, reader: _Reader, root: Node, expected_name: str | None) -> None:
        self.r = reader
        self.root = root
        self.expected_name = expected_name
        self.entries: Entries = {}
        self.params: dict[str, Parameter] = {}  # valid parameters
        self.declared: set[str] = set()  # every parameter name seen (valid or not)
        self.mode: Mode | None = None
        self.run_timeout = DEFAULT_RUN_TIMEOUT

    def field(self, key: str, read: Callable[[Node], _T]) -> _T | None:
        """``read`` applied to the value of ``key``; None if absent or reported."""
        pair = self.entries.get(key)
        return None if pair is None else attempt(lambda: read(pair[1]))

    def read(self) -> Playbook | None:
        try:
            self.entries = self.r.mapping(self.root, "a playbook", _TOP_KEYS)
        except Invalid:
            return None
        for key in _TOP_REQUIRED:
            if key not in self.entries:
                self.r.error(self.root, f"a playbook needs the key {key!r}")
        name = self.field("name", self.read_name)
        version = self.field("version", self.read_version)
        description = self.field("description", lambda n: self.r.string(n, "description"))
        self.mode = self.field("mode", self.read_mode)
        collects = self.field("collects", lambda n: self.r.string(n, "collects", empty=True))
        needs = self.field("needs", lambda n: self.r.string(n, "needs", empty=True))
        parameters = self.field("parameters", self.read_parameters) or ()
        timeout = self.field(
            "timeout", lambda n: self.r.duration(n, "timeout", maximum=MAX_RUN_TIMEOUT)
        )
        self.run_timeout = timeout or DEFAULT_RUN_TIMEOUT
        redact = self.field("redact", self.read_redact) or ()
        steps = self.field("steps", self.read_steps)
        if self.r.problems or name is None or version is None or description is None:
            return None
        if self.mode is None or steps is None:
            return None
        return Playbook(
            name=name,
            version=version,
            description=description.strip(),
            mode=self.mode,
            parameters=parameters,
            steps=steps,
            redact=redact,
            timeout_seconds=self.run_timeout,
            collects=(collects or "").strip(),
            needs=(needs or "").strip(),
        )

    # -- top-level fields ------------------------------------------------------------

    def read_name(self, node: Node) -> str:
        hint = "use lower case letters, digits and -, starting with a letter"
        name = self.r.pattern(node, "name", _PLAYBOOK_NAME, hint)
        if self.expected_name is not None and name != self.expected_name:
            raise self.r.error(node, f"the playbook {name!r} must be in a file named {name}.yaml")
        return name

    def read_version(self, node: Node) -> str:
        text = self.r.word(node, "version")
        if not is_semver(text):
            raise self.r.error(node, f"version {text!r} is not valid: {SEMVER_HELP}")
        return text

    def read_mode(self, node: Node) -> Mode:
        value = self.r.scalar(node)
        if value not in _MODES:
            raise self.r.error(
                node, f"mode must be read-only or mutating, got {self.r.describe(node)}"
            )
        return value

    def read_redact(self, node: Node) -> tuple[str, ...]:
        items = self.r.sequence(node, "redact")
        found = (attempt(self.r.regex, i, "a redact pattern") for i in items)
        return tuple(pattern for pattern in found if pattern is not None)

    # -- parameters ------------------------------------------------------------------

    def read_parameters(self, node: Node) -> tuple[Parameter, ...]:
        result: list[Parameter] = []
        for item in self.r.sequence(node, "parameters"):
            param = attempt(_ParameterReader(self.r, item, self).read)
            if param is not None:
                result.append(param)
                self.params[param.name] = param
        return tuple(result)

    # -- steps -----------------------------------------------------------------------

    def read_steps(self, node: Node) -> tuple[Step, ...]:
        items = self.r.sequence(node, "steps")
        if not items:
            raise self.r.error(node, "steps must list at least one step")
        names: dict[str, int] = {}
        steps: list[Step] = []
        for item in items:
            step = attempt(self.read_step, item, names)
            if step is not None:
                steps.append(step)
        return tuple(steps)

    def read_step(self, node: Node, names: dict[str, int]) -> Step:
        entries = self.r.mapping(node, "a step", _STEP_KEYS, ("name",))
        name_node = entries["name"][1]
        name = self.r.string(name_node, "step name")
        if name in names:
            self.r.error(name_node, f"duplicate step name {name!r} (first at line {names[name]})")
        names.setdefault(name, name_node.start_mark.line + 1)
        kinds = [key for key in ("exec", "builtin") if key in entries]
        if len(kinds) != 1:
            problem = "not both" if kinds else "one is needed"
            raise self.r.error(node, f"a step has exactly one of `exec` or `builtin` ({problem})")
        if kinds == ["exec"]:
            return _ExecReader(self.r, self, name).read(entries["exec"][1])
        return self.read_builtin(name, entries["builtin"][1])

    def read_builtin(self, name: str, node: Node) -> BuiltinStep:
        entries = self.r.mapping(node, "builtin", _BUILTIN_KEYS, ("function",))
        function_node = entries["function"][1]
        function = self.r.string(function_node, "builtin function")
        if function not in BUILTIN_FUNCTIONS:
            raise self.r.error(
                function_node,
                f"unknown builtin function {function!r}{suggest(function, BUILTIN_FUNCTIONS)}"
                " (see docs/playbooks.md for the list)",
            )
        args = attempt(lambda: self.read_args(function, _value_node(entries, "args")))
        timeout = attempt(lambda: self.step_timeout(_value_node(entries, "timeout")))
        output_limit = attempt(lambda: self.output_limit(_value_node(entries, "output_limit")))
        if args is None or timeout is None or output_limit is None:
            raise Invalid("builtin")
        return BuiltinStep(name, function, args, timeout, output_limit)

    def read_args(self, function: str, node: Node | None) -> dict[str, str | int]:
        if node is None:
            return {}
        before = len(self.r.problems)
        entries = self.r.mapping(node, f"args of {function}", BUILTIN_ARGS[function])
        result: dict[str, str | int] = {}
        for key, (_, value_node) in entries.items():
            value = attempt(self.arg_value, value_node, f"args.{key}")
            if value is not None:
                result[key] = value
        if len(self.r.problems) > before:
            raise Invalid("args")
        return result

    def arg_value(self, node: Node, what: str) -> str | int:
        value = self.r.scalar(node)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if not isinstance(value, str):
            raise self.r.error(
                node, f"{what} must be a string or a whole number, got {self.r.describe(node)}"
            )
        self.check_placeholder(node, value, what, secret_ok=True)
        return value

    def step_timeout(self, node: Node | None) -> float:
        if node is None:
            return min(DEFAULT_STEP_TIMEOUT, self.run_timeout)
        seconds = self.r.duration(node, "timeout", maximum=MAX_STEP_TIMEOUT)
        if seconds > self.run_timeout:
            raise self.r.error(
                node,
                f"timeout {seconds:g}s is longer than the playbook's timeout "
                f"{self.run_timeout:g}s: shorten it or raise the playbook's `timeout`",
            )
        return seconds

    def output_limit(self, node: Node | None) -> int:
        return DEFAULT_OUTPUT_LIMIT if node is None else self.r.size(node, "output_limit")

    # -- placeholders ----------------------------------------------------------------

    def check_placeholder(self, node: Node, text: str, what: str, *, secret_ok: bool) -> None:
        """Report a spliced or undeclared placeholder in ``text`` (the value of ``what``)."""
        if not has_braces(text):
            return
        name = placeholder(text)
        if name is None:
            raise self.r.error(node, _spliced_message(text, what))
        if name not in self.declared:
            hint = suggest(name, self.declared)
            raise self.r.error(
                node, f"{what} uses {{{{ {name} }}}}, but there is no parameter {name!r}{hint}"
            )
        param = self.params.get(name)
        if param is not None and param.secret and not secret_ok:
            raise self.r.error(
                node,
                f"the secret parameter {name!r} must not be an argv element (every user on "
                f"the host can read argv in ps): pass it in env",
            )


class _ParameterReader:
    """Reads one entry of ``parameters``."""

    def __init__(self, reader: _Reader, node: Node, playbook: _PlaybookReader) -> None:
        self.r = reader
        self.node = node
        self.playbook = playbook
        self.entries: Entries = {}

    def value(self, key: str, read: Callable[[Node], _T]) -> _T | None:
        pair = self.entries.get(key)
        return None if pair is None else attempt(lambda: read(pair[1]))

    def read(self) -> Parameter:
        self.entries = self.r.mapping(self.node, "a parameter", _PARAM_KEYS, ("name", "type"))
        name_node = self.entries["name"][1]
        hint = "use lower case letters, digits and _, starting with a letter"
        name = self.r.pattern(name_node, "parameter name", _PARAM_NAME, hint)
        if name in self.playbook.declared:
            raise self.r.error(name_node, f"duplicate parameter {name!r}")
        self.playbook.declared.add(name)
        kind = self.read_type()
        before = len(self.r.problems)
        self.check_applicable(kind)
        param = self.build(name, kind)
        if len(self.r.problems) > before:
            raise Invalid(name)
        return self.with_default(param)

    def read_type(self) -> ParamType:
        node = self.entries["type"][1]
        value = self.r.scalar(node)
        if value not in _TYPES:
            raise self.r.error(
                node, f"type must be string, int or enum, got {self.r.describe(node)}"
            )
        return value

    def check_applicable(self, kind: ParamType) -> None:
        for key, only in _PARAM_ONLY_FOR.items():
            if key in self.entries and kind != only:
                self.r.error(self.entries[key][0], f"{key!r} applies to {only} parameters only")
        for key in _PARAM_NEEDS[kind]:
            if key not in self.entries:
                article = "a" if kind == "string" else "an"
                self.r.error(
                    self.key_line(), f"{article} {kind} parameter needs {key!r}{_WHY_NEEDED[key]}"
                )

    def key_line(self) -> Node:
        return self.entries["name"][0]

    def build(self, name: str, kind: ParamType) -> Parameter:
        r = self.r
        minimum = self.value("min", lambda n: r.integer(n, "min"))
        maximum = self.value("max", lambda n: r.integer(n, "max"))
        if minimum is not None and maximum is not None and minimum > maximum:
            r.error(self.entries["max"][1], f"max ({maximum}) is less than min ({minimum})")
        return Parameter(
            name=name,
            type=kind,
            description=(self.value("description", lambda n: r.string(n, "description")) or ""),
            required=bool(self.value("required", lambda n: r.boolean(n, "required"))),
            pattern=self.value("pattern", lambda n: r.regex(n, "pattern")),
            minimum=minimum,
            maximum=maximum,
            choices=self.value("choices", self.read_choices) or (),
            max_length=self.value("max_length", self.read_max_length) or 256,
            secret=bool(self.value("secret", lambda n: r.boolean(n, "secret"))),
        )

    def read_choices(self, node: Node) -> tuple[str, ...]:
        items = self.r.sequence(node, "choices")
        if not items:
            raise self.r.error(node, "choices must list at least one value")
        choices: list[str] = []
        for item in items:
            choice = self.r.word(item, "a choice")
            if not choice or _CONTROL_OR_SPACE.search(choice):
                self.r.error(item, f"choice {choice!r} must be non-empty, without spaces")
            elif choice in choices:
                self.r.error(item, f"duplicate choice {choice!r}")
            else:
                choices.append(choice)
        return tuple(choices)

    def read_max_length(self, node: Node) -> int:
        value = self.r.integer(node, "max_length")
        if not 1 <= value <= MAX_STRING_LENGTH:
            raise self.r.error(node, f"max_length must be from 1 to {MAX_STRING_LENGTH}")
        return value

    def with_default(self, param: Parameter) -> Parameter:
        pair = self.entries.get("default")
        if pair is None:
            if not param.required:
                self.r.error(
                    self.key_line(),
                    f"parameter {param.name!r} is optional, so it needs a `default` "
                    f"(or `required: true`)",
                )
                raise Invalid(param.name)
            return param
        node = pair[1]
        if param.required:
            raise self.r.error(node, "a required parameter has no `default`: remove one")
        if param.secret:
            raise self.r.error(node, "a secret parameter has no `default` (it would be public)")
        raw: str | int = (
            self.r.integer(node, "default") if param.type == "int" else self.r.word(node, "default")
        )
        try:
            value = check_value(param, raw)
        except InvalidParameter as exc:
            raise self.r.error(node, f"default is not valid: {exc}") from exc
        return dataclasses.replace(param, default=value)


_PARAM_NEEDS: dict[ParamType, tuple[str, ...]] = {
    "string": ("pattern",),
    "int": ("min", "max"),
    "enum": ("choices",),
}
_WHY_NEEDED = {
    "pattern": " (a full-match regular expression of the values allowed)",
    "min": " (the smallest value allowed)",
    "max": " (the largest value allowed)",
    "choices": " (the list of values allowed)",
}


class _ExecReader:
    """Reads the ``exec`` mapping of one step."""

    def __init__(self, reader: _Reader, playbook: _PlaybookReader, name: str) -> None:
        self.r = reader
        self.playbook = playbook
        self.name = name

    def read(self, node: Node) -> ExecStep:
        entries = self.r.mapping(node, "exec", _EXEC_KEYS, ("argv",))
        pb, r = self.playbook, self.r

        def get(key: str, read: Callable[[Node], _T]) -> _T | None:
            pair = entries.get(key)
            return None if pair is None else attempt(lambda: read(pair[1]))

        before = len(r.problems)
        argv = get("argv", self.read_argv)
        env = get("env", self.read_env) or {}
        timeout = attempt(lambda: pb.step_timeout(_value_node(entries, "timeout")))
        limit = attempt(lambda: pb.output_limit(_value_node(entries, "output_limit")))
        run_as = get("run_as", self.read_run_as)
        optional = bool(get("optional", lambda n: r.boolean(n, "optional")))
        if len(r.problems) > before or argv is None or timeout is None or limit is None:
            raise Invalid("exec")
        return ExecStep(self.name, argv, env, timeout, limit, run_as, optional)

    def read_argv(self, node: Node) -> tuple[str, ...]:
        items = self.r.sequence(node, "argv")
        if not items:
            raise self.r.error(node, "argv must list the program and its arguments")
        texts = [attempt(self.r.word, n, f"argv[{i}]") for i, n in enumerate(items)]
        if any(text is None for text in texts):
            raise Invalid("argv")
        argv = [cast(str, text) for text in texts]
        before = len(self.r.problems)
        attempt(self.check_program, items[0], argv[0])
        for index, (item, text) in enumerate(zip(items[1:], argv[1:], strict=True), start=1):
            what = f"argv[{index}]"
            attempt(self.playbook.check_placeholder, item, text, what, secret_ok=False)
        problem = inline_code_problem(argv)
        if problem is not None:
            self.r.error(items[problem[0]], problem[1])
        if len(self.r.problems) > before:
            raise Invalid("argv")
        return tuple(argv)

    def check_program(self, node: Node, program: str) -> None:
        if has_braces(program):
            raise self.r.error(
                node,
                "argv[0] must be a fixed program, never a parameter: a parameter "
                "may not choose what runs",
            )
        problem = program_problem(program)
        if problem is not None:
            raise self.r.error(node, problem)

    def read_env(self, node: Node) -> dict[str, str]:
        entries = self.r.mapping(node, "env", None)
        env: dict[str, str] = {}
        for key, (key_node, value_node) in entries.items():
            problem = env_name_problem(key)
            if problem is not None:
                self.r.error(key_node, problem)
                continue
            value = attempt(self.env_value, value_node, key)
            if value is not None:
                env[key] = value
        return env

    def env_value(self, node: Node, key: str) -> str:
        text = self.r.word(node, f"env.{key}")
        self.playbook.check_placeholder(node, text, f"env.{key}", secret_ok=True)
        return text

    def read_run_as(self, node: Node) -> str:
        hint = "use a user name (lower case letters, digits, _ and -)"
        user = self.r.pattern(node, "run_as", _USER_NAME, hint)
        if user in _ROOT_USERS and self.playbook.mode == "read-only":
            raise self.r.error(
                node,
                "run_as: root needs `mode: mutating`: a read-only playbook never gains root "
                "(mutating playbooks need the customer's approval for every run)",
            )
        return user


def _spliced_message(text: str, what: str) -> str:
    match = PLACEHOLDER.search(text)
    name = match.group(1) if match else "name"
    whole = f"'{{{{ {name} }}}}'"
    if match and text[: match.start()].endswith("=") and not text[match.end() :]:
        option = text[: match.start() - 1]
        fix = f"use two elements, '{option}', {whole}"
    else:
        fix = f"use a separate element {whole}"
    return (
        f"{what} {text!r} splices a parameter into text; a parameter must be an entire "
        f"element (its value is never parsed or joined): {fix}, or pass it in env"
    )
