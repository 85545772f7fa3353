"""The builtin contract (playbooks.builtins) and the agent's implementation agree: each
function exists with exactly the keyword arguments the loader lets a playbook pass, so a
playbook that lints clean never fails on an argument name at run time."""

from __future__ import annotations

import inspect

import pytest

from agent.playbook.builtins import default_builtins
from playbooks.builtins import BUILTIN_ARGS, BUILTIN_FUNCTIONS
from playbooks.loader import load_playbook
from playbooks.model import BuiltinStep
from playbooks.params import render_builtin, validate_params
from playbooks.shipped import catalogue_dir


def keyword_arguments(name: str) -> set[str]:
    signature = inspect.signature(default_builtins()[name])
    return {p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY}


def test_the_agent_implements_every_builtin() -> None:
    assert set(default_builtins()) == set(BUILTIN_FUNCTIONS)


@pytest.mark.parametrize("name", sorted(BUILTIN_FUNCTIONS))
def test_the_agent_takes_exactly_the_contracted_arguments(name: str) -> None:
    assert keyword_arguments(name) == set(BUILTIN_ARGS[name])


def test_every_shipped_builtin_step_binds_to_the_agent_function() -> None:
    functions = default_builtins()
    for path in sorted(catalogue_dir().glob("*.yaml")):
        playbook = load_playbook(path)
        values = validate_params(playbook, {})
        for step in playbook.steps:
            if isinstance(step, BuiltinStep):
                args = render_builtin(step, values)
                inspect.signature(functions[step.function]).bind_partial(**args)
