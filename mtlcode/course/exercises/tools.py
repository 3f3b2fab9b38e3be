"""Checks for the exercises of chapter 7 (tools): per-task and per-example gradients with ``torch.func``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from mtlcode.course.exercises._checking import (
    Params,
    _call,
    _diagnose,
    _failure,
    _params_mismatch,
    _passed,
    _seeded,
    _sinusoid_problem,
    _uniform,
)
from mtlcode.learners.maml import MAML
from mtlcode.models import MLP

__all__ = ["check_batched_inner_step", "check_per_example_gradients"]


def _step_ratio(params: Params, expected: Params, got: Any) -> float | None:
    """``c`` when ``got`` is ``params - c * alpha * grad`` for one number ``c``, else None."""
    if not isinstance(got, dict) or set(got) != set(expected):
        return None
    if any(not isinstance(got[n], Tensor) or got[n].shape != e.shape for n, e in expected.items()):
        return None
    taken = torch.cat([(params[n] - got[n].detach().cpu().double()).flatten() for n in expected])
    wanted = torch.cat([(params[n] - e).flatten() for n, e in expected.items()])
    return float(taken @ wanted / (wanted @ wanted))


def check_batched_inner_step(batched_inner_step: Callable[[nn.Module, Params, Tensor, Tensor, float], Params]) -> None:
    """Check ``batched_inner_step(model, params, support_x, support_y, alpha)``.

    ``support_x`` and ``support_y`` are shaped ``[tasks, shots, 1]``. The answer is one inner
    step per task, all tasks at once: a dict whose tensors gain a leading task dimension, entry
    ``i`` being ``params - alpha * grad L_i(params)`` for the mean squared error of task ``i``.
    Reference: :meth:`mtlcode.MAML.inner_step` applied to the tasks one by one. The step size
    ``alpha`` is drawn anew for every case.
    """
    exercise, cases = "batched_inner_step", []
    generator = torch.Generator().manual_seed(5)
    with _seeded(5):
        model, batch = _sinusoid_problem(tasks=5, shots=4, seed=5)
    with _seeded(9):
        wide, other = _sinusoid_problem(tasks=3, shots=7, seed=9, sizes=(1, 6, 10, 1))

    for case, net, tasks in (("5 tasks", model, batch), ("1 task", model, batch[:1]),
                             ("3 tasks of 7 shots, a 1-6-10-1 network", wide, other)):
        alpha = _uniform(generator, 0.02, 0.3)
        params = {name: p.detach() for name, p in net.named_parameters()}
        maml = MAML(net, inner_lr=alpha, loss=F.mse_loss)
        steps = [maml.inner_step(params, x, y) for x, y in zip(tasks.support_x, tasks.support_y)]
        expected = {name: torch.stack([s[name] for s in steps]).detach() for name in params}
        got = _call(exercise, case, batched_inner_step, net, params, tasks.support_x, tasks.support_y, alpha)
        problem = _params_mismatch(expected, got)
        if problem:
            pooled = maml.inner_step(params, tasks.support_x.flatten(0, 1), tasks.support_y.flatten(0, 1))
            start = {n: p.expand_as(expected[n]) for n, p in params.items()}
            ratio = _step_ratio(start, expected, got)
            ratio = 1.0 if ratio is None else ratio
            hint = _diagnose(got, [
                ({n: p.detach().expand_as(expected[n]) for n, p in pooled.items()},
                 "every task got the same step, from the loss of all tasks pooled: vmap over the tasks "
                 "(in_dims=(None, 0, 0)) so that each task gets its own gradient"),
                ({n: 2 * start[n] - e for n, e in expected.items()},
                 "the step goes uphill: subtract alpha * gradient"),
                ({n: (start[n] - e) / alpha for n, e in expected.items()},
                 "these are the gradients: return the parameters after the step, params - alpha * gradient"),
                ({n: start[n] - ratio * (start[n] - e) for n, e in expected.items()},
                 f"the step has the right direction but size {alpha * ratio:.4g}, not this case's "
                 f"alpha = {alpha:.4g}: use the argument alpha, not a fixed number"),
            ], "per task: params - alpha * grad(loss)(params, x_i, y_i); vmap does all tasks at once")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)


def _one_example_at_a_time(model: nn.Module, params: Params, x: Tensor, y: Tensor) -> Params:
    """The reference: ``torch.autograd.grad`` of each example's mean squared error, in a loop."""
    theta = {name: p.clone().requires_grad_() for name, p in params.items()}
    per_example = []
    for xi, yi in zip(x, y):
        loss = F.mse_loss(functional_call(model, theta, (xi[None],)), yi[None])
        per_example.append(torch.autograd.grad(loss, list(theta.values())))
    return {name: torch.stack([g[k] for g in per_example]) for k, name in enumerate(theta)}


def _input_gradients(model: nn.Module, params: Params, x: Tensor, y: Tensor) -> Tensor:
    """Each example's loss differentiated with respect to its input ``x_i`` instead of ``params``."""
    x = x.clone().requires_grad_()
    losses = ((functional_call(model, params, (x,)) - y) ** 2).mean(1)
    return torch.autograd.grad(losses.sum(), x)[0]


def check_per_example_gradients(per_example_gradients: Callable[[nn.Module, Params, Tensor, Tensor], Params]) -> None:
    """Check ``per_example_gradients(model, params, x, y)``: one gradient per example.

    ``x`` is ``[examples, inputs]`` and ``y`` ``[examples, outputs]``; ``params`` is a dict
    ``{name: tensor}`` of ``model``'s parameters. The answer is a dict
    ``{name: tensor [examples, *shape]}`` whose entry ``i`` is the gradient, with respect to
    ``params``, of ``F.mse_loss`` on example ``i`` alone (the mean over that example's outputs).
    Reference: ``torch.autograd.grad`` of each example's loss, one example at a time. The cases
    differ in the network's sizes, the number of examples and the seed.
    """
    exercise, cases = "per_example_gradients", []
    for seed, sizes, examples in ((11, (1, 8, 8, 1), 10), (12, (3, 6, 2), 7), (13, (2, 5, 4, 3), 4)):
        case = f"{examples} examples, a {'-'.join(map(str, sizes))} network"
        generator = torch.Generator().manual_seed(seed)
        with _seeded(seed):
            model = MLP(list(sizes)).double()
        params = {name: p.detach() for name, p in model.named_parameters()}
        x = 2 * torch.randn(examples, sizes[0], generator=generator, dtype=torch.float64)
        y = torch.randn(examples, sizes[-1], generator=generator, dtype=torch.float64)
        expected = _one_example_at_a_time(model, params, x, y)
        got = _call(exercise, case, per_example_gradients, model, params, x.clone(), y.clone())
        problem = _params_mismatch(expected, got)
        if problem:
            mean_loss = {n: g.mean(0) for n, g in expected.items()}
            hint = _diagnose(got, [
                ({n: g.expand_as(expected[n]) for n, g in mean_loss.items()},
                 "every example got the same gradient, that of the mean loss of all examples: vmap the "
                 "gradient of one example's loss over the examples (in_dims=(None, 0, 0))"),
                (mean_loss, "this is the gradient of the mean loss, one tensor per parameter: keep one "
                            "gradient per example, stacked along a new first dimension"),
                ({n: g.sum(0) for n, g in expected.items()},
                 "this is the gradient of the summed loss, one tensor per parameter: keep one gradient per "
                 "example, stacked along a new first dimension"),
                ({n: g / examples for n, g in expected.items()},
                 "each gradient is divided by the number of examples: the loss of one example is its own "
                 "mean squared error, not its share of the mean over the batch"),
                ({n: sizes[-1] * g for n, g in expected.items()},
                 "the loss of one example sums its squared errors over the outputs: take their mean "
                 "(F.mse_loss), which divides the gradient by the number of outputs"),
                (_input_gradients(model, params, x, y),
                 "these are gradients with respect to the inputs x: grad differentiates with respect to "
                 "its function's first argument, so make params the first argument"),
            ], "per example: grad(loss)(params, x_i, y_i) with loss = F.mse_loss(prediction, y_i); "
               "vmap(..., in_dims=(None, 0, 0)) does all examples at once")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)
