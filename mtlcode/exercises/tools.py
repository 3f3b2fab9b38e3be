"""Checks for the exercises of chapter 7 (tools)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlcode.exercises._checking import (
    Params,
    _call,
    _diagnose,
    _failure,
    _params_mismatch,
    _passed,
    _seeded,
    _sinusoid_problem,
)
from mtlcode.maml import MAML

__all__ = ["check_batched_inner_step"]


def check_batched_inner_step(batched_inner_step: Callable[[nn.Module, Params, Tensor, Tensor, float], Params]) -> None:
    """Check ``batched_inner_step(model, params, support_x, support_y, alpha)``.

    ``support_x`` and ``support_y`` are shaped ``[tasks, shots, 1]``. The answer is one inner
    step per task, all tasks at once: a dict whose tensors gain a leading task dimension, entry
    ``i`` being ``params - alpha * grad L_i(params)`` for the mean squared error of task ``i``.
    Reference: :meth:`mtlcode.MAML.inner_step` applied to the tasks one by one.
    """
    exercise, cases = "batched_inner_step", []
    alpha = 0.05
    with _seeded(5):
        model, batch = _sinusoid_problem(tasks=5, shots=4, seed=5)
    params = {name: p.detach() for name, p in model.named_parameters()}
    maml = MAML(model, inner_lr=alpha, loss=F.mse_loss)

    def one_by_one(sx: Tensor, sy: Tensor) -> Params:
        steps = [maml.inner_step(params, x, y) for x, y in zip(sx, sy)]
        return {name: torch.stack([s[name] for s in steps]).detach() for name in params}

    for case, tasks in (("5 tasks", batch), ("1 task", batch[:1])):
        expected = one_by_one(tasks.support_x, tasks.support_y)
        got = _call(exercise, case, batched_inner_step, model, params, tasks.support_x, tasks.support_y, alpha)
        problem = _params_mismatch(expected, got)
        if problem:
            pooled = maml.inner_step(params, tasks.support_x.flatten(0, 1), tasks.support_y.flatten(0, 1))
            hint = _diagnose(got, [
                ({n: p.detach().expand_as(expected[n]) for n, p in pooled.items()},
                 "every task got the same step, from the loss of all tasks pooled: vmap over the tasks "
                 "(in_dims=(None, 0, 0)) so that each task gets its own gradient"),
                ({n: 2 * params[n] - e for n, e in expected.items()},
                 "the step goes uphill: subtract alpha * gradient"),
                ({n: (params[n] - e) / alpha for n, e in expected.items()},
                 "these are the gradients: return the parameters after the step, params - alpha * gradient"),
            ], "per task: params - alpha * grad(loss)(params, x_i, y_i); vmap does all tasks at once")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)
