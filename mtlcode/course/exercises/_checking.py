"""What every check shares: reporting, comparing in float64, seeded inputs, small shared problems."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlcode.learners.maml import MAML
from mtlcode.models import MLP
from mtlcode.tasks import Sinusoid, TaskBatch

Params = dict[str, Tensor]
RTOL, ATOL = 1e-6, 1e-8  # float64 inputs: a right answer agrees far better than this


# -- reporting ---------------------------------------------------------------------------------

def _failure(exercise: str, case: str, expected: str, got: str, hint: str) -> AssertionError:
    """Print the feedback for a failed case and return the error to raise."""
    print(f"✗ {exercise}: case '{case}' failed\n"
          f"    expected: {expected}\n"
          f"    got:      {got}\n"
          f"    hint:     {hint}")
    return AssertionError(f"{exercise}: case '{case}' failed: expected {expected}, got {got}")


def _passed(exercise: str, cases: list[str]) -> None:
    print(f"✓ {exercise}: all {len(cases)} cases passed")
    for case in cases:
        print(f"    ✓ {case}")


class StudentFunction:
    """A student's function that runs in another process: the grader's (:mod:`mtlcode.course.grading`).

    ``call(args, then)`` computes ``then(function(*args))`` in that process and returns it as plain
    data (tensors, numbers, strings, lists, tuples, dicts), having copied back into ``args`` what the
    call changed in them. The expected answers stay in the checking process.
    """

    def call(self, args: tuple[Any, ...], then: Callable[[Any], Any] | None) -> Any:
        raise NotImplementedError


class StudentError(Exception):
    """The student's function raised this (its ``Type: message``), in the student's process."""


def _call(exercise: str, case: str, fn: Callable[..., Any], *args: Any,
          then: Callable[[Any], Any] | None = None) -> Any:
    """Call the student's function; an error other than NotImplementedError becomes feedback.

    ``then(result)``, when given, is what the check needs of the result that only the process that
    holds it can compute (a gradient through it, the predictions of a returned network). It runs
    where the student's function runs, so it must not use the check's expected answers.
    """
    try:
        if isinstance(fn, StudentFunction):
            return fn.call(args, then)
        got = fn(*args)
        return got if then is None else then(got)
    except NotImplementedError:
        raise
    except Exception as error:
        raised = str(error) if isinstance(error, StudentError) else f"{type(error).__name__}: {error}"
        raise _failure(exercise, case, "a result", raised,
                       "your function raised this error on this case; the traceback below shows where") from error


def _attempt(compute: Callable[[Any], Any]) -> Callable[[Any], tuple[str, Any]]:
    """``compute`` as a ``then`` that reports its error instead of raising: ``("ok", value)`` or ``("error", text)``."""

    def attempt(got: Any) -> tuple[str, Any]:
        try:
            return "ok", compute(got)
        except Exception as error:
            return "error", f"{type(error).__name__}: {error}"

    return attempt


def _call_keeping_model(exercise: str, case: str, model: nn.Module, hint: str, fn: Callable[..., Any],
                        *args: Any) -> Any:
    """:func:`_call`, then fail with ``hint`` if the call changed ``model``'s parameters."""
    theta = dict(model.named_parameters())
    before = _snapshot(theta)
    got = _call(exercise, case, fn, *args)
    problem = _params_mismatch(before, _snapshot(theta))
    if problem:
        raise _failure(exercise, f"{case}: theta is left unchanged", *problem, hint)
    return got


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed the global RNG for the duration of a check, then restore the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# -- comparing ---------------------------------------------------------------------------------

def _mismatch(expected: Tensor, got: Any, name: str = "") -> tuple[str, str] | None:
    """None when ``got`` matches ``expected``, else ``(expected, got)`` described for a person."""
    label = f"{name} " if name else ""
    if not isinstance(got, Tensor):
        return f"{label}a tensor of shape {tuple(expected.shape)}", f"{type(got).__name__}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"{label}shape {tuple(expected.shape)}", f"shape {tuple(got.shape)}"
    got = got.detach().cpu().to(expected.dtype)
    if torch.allclose(got, expected, rtol=RTOL, atol=ATOL):
        return None
    i = int((got - expected).abs().argmax())
    index = list(torch.unravel_index(torch.tensor(i), expected.shape)) if expected.dim() else []
    where = f"{label}[{', '.join(str(int(k)) for k in index)}]" if index else label.strip() or "value"
    return f"{where} = {expected.flatten()[i].item():.6g}", f"{where} = {got.flatten()[i].item():.6g}"


def _same(expected: Tensor, got: Any) -> bool:
    return _mismatch(expected, got) is None


def _params_mismatch(expected: Params, got: Any) -> tuple[str, str] | None:
    """Like :func:`_mismatch` for parameter dicts ``{name: tensor}``."""
    if not isinstance(got, dict):
        return f"a dict {{name: tensor}} with keys {list(expected)}", type(got).__name__
    if set(got) != set(expected):
        return f"keys {list(expected)}", f"keys {list(got)}"
    for name, tensor in expected.items():
        problem = _mismatch(tensor, got[name], name)
        if problem:
            return problem
    return None


def _same_params(expected: Params, got: Any) -> bool:
    return _params_mismatch(expected, got) is None


def _diagnose(got: Any, mistakes: list[tuple[Any, str]], default: str) -> str:
    """The hint of the first known mistake whose result equals ``got``, else ``default``."""
    for value, hint in mistakes:
        same = _same_params(value, got) if isinstance(value, dict) else _same(value, got)
        if same:
            return hint
    return default


def _snapshot(params: Params) -> Params:
    return {name: p.detach().clone() for name, p in params.items()}


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    """A number drawn uniformly from ``[low, high)``: step sizes differ from case to case."""
    return low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()


def _gradients(loss: Tensor, inputs: Params) -> dict[str, Tensor | None]:
    """``{name: d loss / d inputs[name]}``, None where the loss does not depend on that input."""
    grads = torch.autograd.grad(loss, list(inputs.values()), allow_unused=True)
    return dict(zip(inputs, grads))


def _zeros_for_none(grads: dict[str, Tensor | None], like: Params) -> Params:
    return {name: torch.zeros_like(like[name]) if g is None else g for name, g in grads.items()}


# -- shared small problems ---------------------------------------------------------------------

def _sinusoid_problem(tasks: int, shots: int, seed: int,
                      sizes: tuple[int, ...] = (1, 8, 8, 1)) -> tuple[nn.Module, TaskBatch]:
    """A small float64 MLP and sinusoid tasks, the same for every call with the same seed."""
    torch.manual_seed(seed)
    model = MLP(list(sizes)).double()
    batch = Sinusoid().sample(tasks, shots, shots, generator=torch.Generator().manual_seed(seed))
    return model, batch.to("cpu", dtype=torch.float64)


def _meta_gradient(model: nn.Module, batch: TaskBatch, alpha: float, first_order: bool = False,
                   inner_steps: int = 1) -> Params:
    """The reference: gradient of ``MAML.meta_loss`` with respect to the model's parameters."""
    maml = MAML(model, inner_lr=alpha, inner_steps=inner_steps, first_order=first_order, loss=F.mse_loss)
    params = maml.params()
    return dict(zip(params, torch.autograd.grad(maml.meta_loss(batch), list(params.values()))))
