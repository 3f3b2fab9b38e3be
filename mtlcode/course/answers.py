"""Answers as plain data: what the student's process sends back to the grader, and how it is read.

The student's side (:mod:`mtlcode.course.grading_worker`) turns a function's result into plain data
(:func:`plain`: tensors, numbers, strings, lists, tuples, dicts; a network as its parameters) and
records what the call did to its arguments (:func:`plain_state`). The grader reads both with
``torch.load(weights_only=True)`` and rebuilds what a check expects (:func:`rebuild`,
:func:`restore_arguments`): plain tensors, never the student's own objects.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

__all__ = ["ReturnedModule", "plain", "plain_state", "rebuild", "restore_arguments"]

MODULE, UNSUPPORTED = "__mtlcode_module__", "__mtlcode_unsupported__"  # markers no answer holds by chance


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as plain data: tensors detached on the CPU, containers rebuilt, a module as its parameters.

    Anything else becomes a marker naming its type, which the check reports as a wrong answer.
    """
    if depth > 20:
        return {UNSUPPORTED: "a structure nested too deeply"}
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list):
        items = [plain(v, depth + 1) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, int | str) else k: plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, nn.Module):  # a trained network: its class name and parameters
        return {MODULE: type(value).__name__,
                "parameters": {n: p.detach().cpu().clone() for n, p in value.named_parameters()}}
    return {UNSUPPORTED: type(value).__name__}


def plain_state(value: Any, depth: int = 0) -> Any:
    """What a call may have changed in an argument: tensors' values, a module's parameters, a generator's state.

    The grader copies it back into its own arguments, so a check that looks for an argument changed
    in place (``params`` updated instead of copied) sees what the student's function did.
    """
    if depth > 20:
        return None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, torch.Generator):
        return {"generator": value.get_state()}
    if isinstance(value, nn.Module):
        return {"parameters": {n: p.detach().cpu().clone() for n, p in value.named_parameters()},
                "requires_grad": {n: p.requires_grad for n, p in value.named_parameters()}}
    if isinstance(value, tuple | list):
        return [plain_state(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: plain_state(v, depth + 1) for k, v in value.items() if isinstance(k, str)}
    return None




class ReturnedModule(nn.Module):
    """A network the student's function returned, as the grader sees it: its parameters, by name."""

    def __init__(self, class_name: str, parameters: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.class_name = class_name
        self._returned = {name: nn.Parameter(value, requires_grad=False) for name, value in parameters.items()}

    def named_parameters(self, *args: Any, **kwargs: Any):  # noqa: ANN201 (as nn.Module's)
        yield from self._returned.items()

    def forward(self, *args: Any) -> torch.Tensor:
        raise TypeError(f"the returned {self.class_name} ran in the student's process; a check computes what it "
                        "needs of it there (_call(..., then=...))")


def _unsupported(name: str) -> object:
    """An object whose type has the name of what the student returned, for the check's message."""
    safe = re.sub(r"\W", "_", str(name))[:60] or "object"
    return type(safe if safe.isidentifier() else "object", (), {})()


def rebuild(value: Any, depth: int = 0) -> Any:
    """What a check compares: the answer of :func:`plain` with its markers turned back into objects."""
    if depth > 20:
        return None
    if isinstance(value, dict):
        if MODULE in value and isinstance(value.get("parameters"), dict):
            return ReturnedModule(str(value[MODULE]), {str(k): v for k, v in value["parameters"].items()
                                                       if isinstance(v, torch.Tensor)})
        if UNSUPPORTED in value:
            return _unsupported(value[UNSUPPORTED])
        return {k: rebuild(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [rebuild(v, depth + 1) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def _copy_into(tensor: torch.Tensor, value: Any) -> None:
    if isinstance(value, torch.Tensor) and not torch.equal(tensor.detach().cpu(), value):
        tensor.data = value.to(tensor.device)  # .data: shapes may differ, and the check must see the change


def restore_arguments(arguments: list[Any], states: Any, depth: int = 0) -> None:
    """Copy what the call did to its arguments (:func:`plain_state`) into the grader's own arguments."""
    if depth > 20 or states is None:
        return
    if isinstance(arguments, torch.Tensor):
        _copy_into(arguments, states)
    elif isinstance(arguments, torch.Generator) and isinstance(states, dict):
        arguments.set_state(states["generator"])
    elif isinstance(arguments, nn.Module) and isinstance(states, dict):
        flags = states.get("requires_grad", {})
        for name, parameter in arguments.named_parameters():
            _copy_into(parameter, states.get("parameters", {}).get(name))
            if isinstance(flags.get(name), bool):
                parameter.requires_grad_(flags[name])
    elif isinstance(arguments, list | tuple) and isinstance(states, list):
        for argument, state in zip(arguments, states):
            restore_arguments(argument, state, depth + 1)
    elif isinstance(arguments, dict) and isinstance(states, dict):
        for key, argument in arguments.items():
            restore_arguments(argument, states.get(key), depth + 1)
