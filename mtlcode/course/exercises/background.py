"""Checks for the exercises of chapter 1 (background)."""

from __future__ import annotations

import copy
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
    _mismatch,
    _params_mismatch,
    _passed,
    _seeded,
    _snapshot,
    _uniform,
)
from mtlcode.evaluation import task_metric
from mtlcode.learners.finetune import finetune
from mtlcode.models import MLP

__all__ = ["check_gradient_descent", "check_task_mse"]


def _task_mse_hint(predictions: Tensor, targets: Tensor, got: Any) -> str:
    """Name the mistake behind a wrong per-task MSE, when it is one of the usual ones."""
    errors = predictions - targets
    per_task = "one number per task: square the errors, then average over every dimension except the first one"
    if isinstance(got, Tensor) and got.dim() == 0:
        return f"this is one number for all tasks together; {per_task} (the tasks)"
    if isinstance(got, Tensor) and tuple(got.shape) != (len(predictions),):
        return f"{per_task}: the points and the outputs alike, so that the result is shaped [tasks]"
    return _diagnose(got, [
        ((errors ** 2).mean(dim=1)[:, 0],
         "this is the error of the first output only: average over every dimension except the first "
         "(the points and the outputs)"),
        ((errors ** 2).flatten(1).mean(dim=1).sqrt(),
         "this is the root mean squared error: leave out the square root"),
        (errors.abs().flatten(1).mean(dim=1), "this is the mean absolute error: square the errors instead"),
        ((errors ** 2).flatten(1).sum(dim=1), "this is the sum of the squared errors: average them (mean, not sum)"),
        (errors.flatten(1).mean(dim=1) ** 2,
         "this squares the mean error, so that errors of opposite signs cancel: square each error first, "
         "then average"),
    ], f"{per_task} (the tasks)")


def check_task_mse(task_mse: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Check ``task_mse(predictions, targets)``: the mean squared error of every task.

    Both inputs are shaped ``[tasks, points, outputs]``; the answer has one number per task,
    shaped ``[tasks]``. Reference: :func:`mtlcode.evaluation.task_metric`.
    """
    exercise, cases = "task_mse", []
    generator = torch.Generator().manual_seed(0)
    tasks, points = (int(n) for n in torch.randint(2, 7, (2,), generator=generator))
    for case, shape in (("4 tasks of 6 points", (4, 6, 1)), ("1 task of 3 points with 2 outputs", (1, 3, 2)),
                        (f"{tasks} tasks of {points} points with 3 outputs", (tasks, points, 3))):
        predictions = torch.randn(*shape, generator=generator, dtype=torch.float64)
        targets = torch.randn(*shape, generator=generator, dtype=torch.float64)
        expected = task_metric(predictions, targets)
        got = _call(exercise, case, task_mse, predictions.clone(), targets.clone())
        problem = _mismatch(expected, got)
        if problem:
            raise _failure(exercise, case, *problem, _task_mse_hint(predictions, targets, got))
        cases.append(case)
    _passed(exercise, cases)


def _descended(net: nn.Module, x: Tensor, y: Tensor, steps: int, lr: float, *, sign: float = 1.0,
               accumulate: bool = False) -> Params:
    """The parameters after ``steps`` steps ``w <- w - sign * lr * g``, written out by hand.

    With ``accumulate`` the gradients are never reset, so that step ``t`` uses the sum of the
    first ``t`` gradients: what a loop without ``zero_grad`` computes.
    """
    params = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters()}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for _ in range(steps):
        loss = F.mse_loss(functional_call(net, params, (x,)), y)
        grads = torch.autograd.grad(loss, list(params.values()))
        with torch.no_grad():
            for (name, p), g in zip(params.items(), grads):
                total[name] = total[name] + g if accumulate else g
                p -= sign * lr * total[name]
    return _snapshot(params)


def _trained(net: nn.Module, x: Tensor, y: Tensor, steps: int, lr: float, adam: bool = False) -> Params:
    """The reference (plain SGD, :func:`mtlcode.learners.finetune.finetune`), or the same steps with Adam."""
    if not adam:
        tuned = finetune(net, x, y, steps=steps, lr=lr, mode="all", loss=F.mse_loss)
        return _snapshot(dict(tuned.named_parameters()))
    tuned = copy.deepcopy(net)
    optimizer = torch.optim.Adam(tuned.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.mse_loss(tuned(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return _snapshot(dict(tuned.named_parameters()))


def check_gradient_descent(gradient_descent: Callable[[nn.Module, Tensor, Tensor, int, float], nn.Module]) -> None:
    """Check ``gradient_descent(net, x, y, steps, lr)``: plain full-batch gradient descent.

    The answer is a trained *copy* of ``net`` after ``steps`` steps ``w <- w - lr * gradient``
    of ``F.mse_loss(net(x), y)``, every parameter trained at every step; ``net`` itself must
    not change. Reference: :func:`mtlcode.learners.finetune.finetune` with ``mode="all"``, which takes
    these steps with ``torch.optim.SGD``.
    """
    exercise, cases = "gradient_descent", []
    generator = torch.Generator().manual_seed(11)
    for seed, points, sizes, steps, lr_range in ((11, 5, (1, 12, 12, 1), 4, (0.005, 0.02)),
                                                 (12, 8, (2, 10, 3), 3, (0.02, 0.06)),
                                                 (13, 4, (1, 6, 6, 1), 6, (0.01, 0.03))):
        lr = _uniform(generator, *lr_range)
        case = f"{points} points, network {list(sizes)}, {steps} steps of size {lr:.4f}"
        with _seeded(seed):
            net = MLP(list(sizes)).double()
            x = 5 * (2 * torch.rand(points, sizes[0], dtype=torch.float64) - 1)
            y = 2 * torch.randn(points, sizes[-1], dtype=torch.float64)
        before = _snapshot(dict(net.named_parameters()))
        got = _call(exercise, case, gradient_descent, net, x.clone(), y.clone(), steps, lr)
        problem = _params_mismatch(before, _snapshot(dict(net.named_parameters())))
        if problem:
            raise _failure(exercise, f"{case}: net is left unchanged", *problem,
                           "train a copy (trained = copy.deepcopy(net)) and return it; the starting network must "
                           "stay as it was, so that it can start the next task too")
        if not isinstance(got, nn.Module):
            raise _failure(exercise, case, "a network (an nn.Module)", type(got).__name__,
                           "return the trained copy of net")
        got_params = _snapshot(dict(got.named_parameters()))
        expected = _trained(net, x, y, steps, lr)
        problem = _params_mismatch(expected, got_params)
        if problem:
            hint = _diagnose(got_params, [
                (before, "the network has not changed: take `steps` steps on the copy's parameters and return "
                         "that copy"),
                (_descended(net, x, y, steps, lr, accumulate=True),
                 "the gradients add up from step to step: call optimizer.zero_grad() (or set p.grad = None) "
                 "before every loss.backward()"),
                (_trained(net, x, y, steps, lr * y.numel()),
                 "your steps are too long by the number of values in y: use the mean squared error "
                 "(F.mse_loss), not the sum of the squared errors"),
                (_descended(net, x, y, steps, lr, sign=-1.0),
                 "the step goes uphill: subtract lr * gradient (w - lr * g), do not add it"),
                (_trained(net, x, y, steps - 1, lr), f"that is {steps - 1} steps: take exactly `steps` steps"),
                (_trained(net, x, y, steps + 1, lr), f"that is {steps + 1} steps: take exactly `steps` steps"),
                (_trained(net, x, y, steps, lr, adam=True),
                 "that is Adam: plain gradient descent is torch.optim.SGD(params, lr=lr), without momentum"),
            ], "at every step: loss = F.mse_loss(trained(x), y); zero the gradients; loss.backward(); "
               "w <- w - lr * w.grad for every parameter w")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)
