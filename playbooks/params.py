"""Parameter values: validate what an engineer asked for, and render steps with them.

``validate_params`` is the agent's gate: every value is checked against its declared
type, bounds, choices, length and full-match pattern, and strings may never contain
NUL, newline or other control characters whatever the pattern says. The result
(defaults filled in) is what ``render_exec`` and ``render_builtin`` substitute into a
step — only where a ``{{ name }}`` placeholder is an *entire* argv element, env value
or builtin argument, so a value always stays one argv element and is never parsed by
a shell. Error messages name the parameter and what is allowed, and never contain the
value of a ``secret`` parameter.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

from playbooks.errors import InvalidParameter, InvalidPlaybook
from playbooks.model import BuiltinStep, ExecStep, Parameter, Playbook

__all__ = [
    "PLACEHOLDER",
    "check_value",
    "has_braces",
    "loggable_values",
    "placeholder",
    "render_builtin",
    "render_exec",
    "secret_values",
    "validate_params",
]

Value = str | int

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INT = re.compile(
    r"-?[0-9]{1,18}"
)  # ASCII only: int() would also take "1_0", " 5" and non-ASCII digits
_SHOWN = 80  # characters of a refused (non-secret) value quoted in an error


def placeholder(text: str) -> str | None:
    """The parameter name if ``text`` is exactly one ``{{ name }}`` placeholder, else None."""
    match = PLACEHOLDER.fullmatch(text)
    return match.group(1) if match else None


def has_braces(text: str) -> bool:
    """True if ``text`` contains ``{{`` or ``}}`` (a placeholder, whole or spliced)."""
    return "{{" in text or "}}" in text


def validate_params(playbook: Playbook, values: Mapping[str, Value]) -> dict[str, Value]:
    """Every parameter's checked value (given, or its default), keyed by name.

    Raises InvalidParameter listing every problem: unknown names, missing required
    parameters, and values that break their declaration. Int parameters come back as
    int. Values arrive as strings (CLI ``k=v``); an int is accepted for an int parameter.
    """
    problems: list[tuple[str | None, str]] = []
    for name in values:
        if playbook.parameter(name) is None:
            problems.append((None, _unknown(playbook, name)))
    result: dict[str, Value] = {}
    for param in playbook.parameters:
        if param.name in values:
            try:
                result[param.name] = check_value(param, values[param.name])
            except InvalidParameter as exc:
                problems.append((param.name, str(exc)))
        elif param.required:
            about = f": {param.description}" if param.description else ""
            problems.append((param.name, f"parameter {param.name!r} is required{about}"))
        elif param.default is not None:
            result[param.name] = param.default
    if problems:
        messages = [message for _, message in problems]
        raise InvalidParameter(
            f"{playbook.name}: " + "; ".join(messages),
            parameter=next((name for name, _ in problems if name), None),
            problems=messages,
        )
    return result


def check_value(param: Parameter, raw: Value) -> Value:
    """``raw`` converted to ``param``'s type and checked against its declaration.

    Raises InvalidParameter naming the parameter and what it allows."""
    if param.type == "int":
        return _check_int(param, raw)
    if not isinstance(raw, str):
        raise _refuse(param, raw, "must be a string")
    if param.type == "enum":
        if raw not in param.choices:
            raise _refuse(param, raw, f"must be one of: {', '.join(param.choices)}")
        return raw
    return _check_string(param, raw)


def _check_int(param: Parameter, raw: Value) -> int:
    bounds = _bounds(param)
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise _refuse(param, raw, f"must be a whole number{bounds}")
    if isinstance(raw, str) and not _INT.fullmatch(raw):
        raise _refuse(param, raw, f"must be a whole number{bounds}")
    value = int(raw)
    too_low = param.minimum is not None and value < param.minimum
    too_high = param.maximum is not None and value > param.maximum
    if too_low or too_high:
        raise _refuse(param, raw, f"must be a whole number{bounds}")
    return value


def _bounds(param: Parameter) -> str:
    low, high = param.minimum, param.maximum
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" of at least {low}"
    if high is not None:
        return f" of at most {high}"
    return ""


def _check_string(param: Parameter, raw: str) -> str:
    # Length first: a pattern is never run over an oversized input.
    if len(raw) > param.max_length:
        raise _refuse(param, raw, f"must be at most {param.max_length} characters", show=False)
    if _CONTROL.search(raw):
        raise _refuse(param, raw, "must not contain NUL, newline or other control characters")
    if param.pattern is None:  # the loader requires one; a hand-made Parameter may lack it
        raise _refuse(param, raw, "has no pattern, so no value is allowed")
    if re.fullmatch(param.pattern, raw) is None:
        raise _refuse(param, raw, f"must match the pattern {param.pattern!r} (entirely)")
    return raw


def _refuse(param: Parameter, raw: object, rule: str, *, show: bool = True) -> InvalidParameter:
    if param.secret:
        got = " (the secret value is not shown)"
    elif show:
        text = repr(raw)
        got = f", got {text[:_SHOWN]}{'...' if len(text) > _SHOWN else ''}"
    else:
        got = ""
    return InvalidParameter(f"parameter {param.name!r} {rule}{got}", parameter=param.name)


def _unknown(playbook: Playbook, name: str) -> str:
    known = [p.name for p in playbook.parameters]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    takes = f"it takes: {', '.join(known)}" if known else "it takes no parameters"
    return f"unknown parameter {name[:_SHOWN]!r}{hint}; {takes}"


def render_exec(step: ExecStep, values: Mapping[str, Value]) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of ``step`` with whole-element placeholders replaced.

    ``values`` is the result of ``validate_params``. A value becomes exactly one argv
    element or one env value, whatever characters it holds. Raises InvalidParameter
    if a placeholder has no value, InvalidPlaybook if an element splices one into text
    (the loader refuses such playbooks; this is the second line of defence)."""
    argv = [_render_text(element, values, step.name) for element in step.argv]
    if argv and has_braces(step.argv[0]):
        raise InvalidPlaybook([f"step {step.name!r}: argv[0] must not be a parameter"])
    env = {name: _render_text(text, values, step.name) for name, text in step.env.items()}
    return argv, env


def render_builtin(step: BuiltinStep, values: Mapping[str, Value]) -> dict[str, Value]:
    """The keyword arguments of ``step``'s function, placeholders replaced by typed values."""
    return {
        name: _render_value(arg, values, step.name) if isinstance(arg, str) else arg
        for name, arg in step.args.items()
    }


def _render_text(text: str, values: Mapping[str, Value], step: str) -> str:
    return str(_render_value(text, values, step))


def _render_value(text: str, values: Mapping[str, Value], step: str) -> Value:
    name = placeholder(text)
    if name is None:
        if has_braces(text):
            raise InvalidPlaybook(
                [f"step {step!r}: {text!r} splices a parameter into text; not rendered"]
            )
        return text
    if name not in values:
        raise InvalidParameter(f"step {step!r}: no value for parameter {name!r}", parameter=name)
    return values[name]


def loggable_values(playbook: Playbook, values: Mapping[str, Value]) -> dict[str, Value]:
    """``values`` with every secret parameter's value replaced by ``"<secret>"`` (for logs,
    the audit trail and run records)."""
    return {
        name: "<secret>" if (p := playbook.parameter(name)) is not None and p.secret else value
        for name, value in values.items()
    }


def secret_values(playbook: Playbook, values: Mapping[str, Value]) -> list[str]:
    """The non-empty values of secret parameters: the agent redacts them from output."""
    return [
        str(value)
        for name, value in values.items()
        if (p := playbook.parameter(name)) is not None and p.secret and str(value)
    ]
