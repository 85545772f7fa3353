"""What an ``exec`` step may run: the program, no inline code, no privilege tools, and
which environment variables a playbook may set.

Pure functions over strings, used by the loader (each problem becomes a
``FILE:LINE: message``) and usable by the agent as a last check before it spawns a
process. The rules:

- argv[0] is a plain absolute path (``/usr/bin/df``) or a bare program name (``df``,
  looked up in the agent's fixed PATH) — never relative, never a parameter;
- no code given as text to a shell or interpreter: ``sh -c``, ``bash -ec``,
  ``python3 -c``, ``perl -e``, ``node -e``, ``php -r``, ``script -c``, ``env -S`` …,
  also behind wrappers (``env``, ``nice``, ``timeout``, ``busybox``, ``xargs`` …) or
  anywhere in argv (``find -exec sh -c``);
- no privilege tools (``sudo``, ``su``, ``doas``, ``pkexec`` …): a step states
  ``run_as`` instead, so the customer's policy sees it;
- env never sets variables that change which code a program loads or how it parses
  its input (``LD_*``, ``PATH``, ``BASH_ENV``, ``PYTHON*``, ``IFS`` …).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

__all__ = ["env_name_problem", "inline_code_problem", "program_problem"]

_BARE_PROGRAM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_DENIED = re.compile(
    r"LD_\w*|DYLD_\w*|BASH_ENV|ENV|BASH_FUNC_\w*|SHELLOPTS|BASHOPTS|PS4|IFS|PATH|CDPATH"
    r"|PYTHON\w*|PERL5\w*|PERLLIB|RUBYOPT|RUBYLIB|NODE_OPTIONS|NODE_PATH|GCONV_PATH"
    r"|LOCPATH|NLSPATH|GLIBC_TUNABLES|MALLOC_\w*|HOSTALIASES|LOCALDOMAIN|RES_OPTIONS"
    r"|GIT_\w*|LESSOPEN|LESSCLOSE|EDITOR|VISUAL|PAGER"
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_SHELLS = _words("sh bash dash zsh ksh mksh pdksh oksh ash csh tcsh fish yash posh rbash")
_INTERPRETERS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"python[0-9.]*|pypy[0-9.]*"), "python"),
    (re.compile(r"perl[0-9.]*"), "perl"),
    (re.compile(r"ruby[0-9.]*|irb"), "ruby"),
    (re.compile(r"node|nodejs|deno|bun"), "node"),
    (re.compile(r"php[0-9.]*"), "php"),
    (re.compile(r"lua[0-9.]*|luajit"), "lua"),
    (re.compile(r"script|flock"), "command"),  # `script -c CMD`, `flock -c CMD` use a shell
]
# Interpreter kind -> the arguments that make it run code given inline.
_INLINE_CODE: dict[str, re.Pattern[str]] = {
    "shell": re.compile(r"-[A-Za-z]*c[A-Za-z]*|--command|--init-file|--rcfile"),
    "python": re.compile(r"-[A-Za-z]*c[A-Za-z]*"),
    "perl": re.compile(r"-[A-Za-z0-9]*[eE][A-Za-z0-9]*"),
    "ruby": re.compile(r"-[A-Za-z0-9]*e[A-Za-z0-9]*"),
    "node": re.compile(r"-[A-Za-z]*[ep][A-Za-z]*|--eval|--print"),
    "php": re.compile(r"-[A-Za-z]*r[A-Za-z]*|--run"),
    "lua": re.compile(r"-[A-Za-z]*e[A-Za-z]*"),
    "command": re.compile(r"-[A-Za-z]*c[A-Za-z]*|--command"),
}
_PRIVILEGE_TOOLS = _words("sudo su doas pkexec runuser setpriv sg newgrp")
# Programs that run the rest of their argv as another program.
_WRAPPERS = _words(
    "env nice ionice nohup setsid timeout stdbuf busybox chrt taskset unshare nsenter "
    "chroot xargs time strace ltrace"
)
_ENV_SPLIT = re.compile(r"-[A-Za-z]*S.*|--split-string(=.*)?")


def program_problem(program: str) -> str | None:
    """Why ``program`` (argv[0], placeholders already refused) cannot run, or None."""
    if program.startswith("/"):
        parts = program.split("/")
        if ".." in parts or "." in parts or _CONTROL_OR_SPACE.search(program):
            return f"argv[0] {program!r} must be a plain absolute path"
        return None
    if not _BARE_PROGRAM.fullmatch(program):
        return (
            f"argv[0] {program!r} must be an absolute path (/usr/bin/df) or a bare program "
            f"name (df) looked up in the agent's fixed PATH"
        )
    return None


def inline_code_problem(argv: Sequence[str]) -> tuple[int, str] | None:
    """(index of the offending element, why) if ``argv`` runs code given as text or a
    privilege tool; None if it does not.

    Wrappers are looked through to find the program that really runs; an interpreter
    anywhere in argv (``find -exec sh -c``) is checked for its inline-code flag."""
    index = 0
    while index < len(argv):
        base = posixpath.basename(argv[index])
        if base in _PRIVILEGE_TOOLS:
            return index, f"{base} is not allowed: use `run_as` to run a step as another user"
        if base not in _WRAPPERS:
            break
        if base == "env":
            split = next((i for i in range(index + 1, len(argv)) if _env_split(argv[i])), None)
            if split is not None:
                return split, "env -S splits a string into arguments like a shell: use argv"
        index = _next_program(argv, index + 1)
    for index, element in enumerate(argv):
        found = _inline_flag(argv, index, _interpreter_kind(element))
        if found is not None:
            return found
    return None


def env_name_problem(name: str) -> str | None:
    """Why a playbook may not set the environment variable ``name``, or None."""
    if not _ENV_NAME.fullmatch(name):
        return f"env: {name!r} is not a valid variable name"
    if _ENV_DENIED.fullmatch(name):
        return (
            f"env: {name} changes which code programs load or how they run; a playbook may "
            f"not set it (the agent sets a fixed, scrubbed environment)"
        )
    return None


def _env_split(arg: str) -> bool:
    return _ENV_SPLIT.fullmatch(arg) is not None


def _interpreter_kind(program: str) -> str | None:
    base = posixpath.basename(program)
    if base in _SHELLS:
        return "shell"
    return next((kind for pattern, kind in _INTERPRETERS if pattern.fullmatch(base)), None)


def _next_program(argv: Sequence[str], start: int) -> int:
    """Index of the first element from ``start`` that names an interpreter, privilege
    tool or wrapper (``len(argv)`` if none): a wrapper's own options are skipped."""
    for index in range(start, len(argv)):
        base = posixpath.basename(argv[index])
        if base in _PRIVILEGE_TOOLS or base in _WRAPPERS or _interpreter_kind(argv[index]):
            return index
    return len(argv)


def _inline_flag(argv: Sequence[str], index: int, kind: str | None) -> tuple[int, str] | None:
    if kind is None:
        return None
    flag_index = next(
        (i for i in range(index + 1, len(argv)) if _INLINE_CODE[kind].fullmatch(argv[i])), None
    )
    if flag_index is None:
        return None
    program = posixpath.basename(argv[index])
    return flag_index, (
        f"argv runs `{program} {argv[flag_index]}`: code given as text to a shell or "
        f"interpreter is not allowed (no shell in playbooks); run the program directly "
        f"with its arguments as separate argv elements, or ask for a builtin"
    )
