"""Checks for the exercises of chapter 4 (mathematics): MAML's optimum in closed form."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlcode.course.exercises._checking import _call, _diagnose, _failure, _mismatch, _passed, _seeded, _uniform
from mtlcode.learners.maml import MAML
from mtlcode.models import MLP
from mtlcode.tasks import TaskBatch

__all__ = ["check_linear_maml_optimum"]


def _linear_tasks(generator: torch.Generator, tasks: int, dim: int, shots: int, queries: int) -> TaskBatch:
    """Linear regression tasks in float64, each with its own input scale (and so curvature)."""
    def draw(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    scale = 0.4 + torch.rand(tasks, 1, 1, generator=generator, dtype=torch.float64)  # in [0.4, 1.4)
    weights, biases = draw(tasks, dim, 1), draw(tasks, 1, 1)
    x_s, x_q = scale * draw(tasks, shots, dim), scale * draw(tasks, queries, dim)
    y_s = x_s @ weights + biases + 0.1 * draw(tasks, shots, 1)
    y_q = x_q @ weights + biases + 0.1 * draw(tasks, queries, 1)
    return TaskBatch(x_s, y_s, x_q, y_q)


def _reference(tasks: TaskBatch, alpha: float, steps: int) -> Tensor:
    """The minimiser of ``mtlcode.MAML``'s meta-loss for a linear model, found without a formula.

    For a linear model and the squared error the meta-loss is a quadratic function of the
    parameters, so its gradient is affine, ``G theta - b``: one gradient at zero and one at each
    unit vector give ``G`` and ``b`` exactly (up to rounding), and the optimum solves ``G theta = b``.
    """
    dim = tasks.support_x.shape[-1]
    model = MLP([dim, 1]).double()  # no hidden layer: head.weight [1, d] and head.bias [1]
    maml = MAML(model, inner_lr=alpha, inner_steps=steps, loss=F.mse_loss, strategy="loop")
    params = [model.head.weight, model.head.bias]

    def gradient_at(theta: Tensor) -> Tensor:
        with torch.no_grad():
            model.head.weight.copy_(theta[:dim].reshape(1, dim))
            model.head.bias.copy_(theta[dim:])
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(maml.meta_loss(tasks), params)])

    at_zero = gradient_at(torch.zeros(dim + 1, dtype=torch.float64))
    columns = [gradient_at(unit) - at_zero for unit in torch.eye(dim + 1, dtype=torch.float64)]
    return torch.linalg.solve(torch.stack(columns, dim=1), -at_zero)


def _closed_form(tasks: TaskBatch, alpha: float, steps: int, factor: float = 2.0, mean: bool = True,
                 accumulate: bool = True) -> Tensor:
    """The closed form, and with one flag changed, a typical slip (for the hints)."""
    def normal_equations(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        design = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)
        scale = factor / x.shape[-2] if mean else factor
        return scale * design.mT @ design, scale * design.mT @ y

    a_s, r_s = normal_equations(tasks.support_x, tasks.support_y)
    a_q, r_q = normal_equations(tasks.query_x, tasks.query_y)
    step = torch.eye(a_s.shape[-1], dtype=a_s.dtype) - alpha * a_s
    linear, offset = torch.eye(a_s.shape[-1], dtype=a_s.dtype).expand_as(step), torch.zeros_like(r_s)
    for _ in range(steps):
        linear, offset = step @ linear, (step @ offset if accumulate else 0) + alpha * r_s
    lhs = (linear.mT @ a_q @ linear).sum(0)
    rhs = (linear.mT @ (r_q - a_q @ offset)).sum(0)
    return torch.linalg.solve(lhs, rhs).squeeze(-1)


def _joint(tasks: TaskBatch) -> Tensor:
    """Least squares on all examples of all tasks pooled: the optimum of joint training."""
    pooled = TaskBatch(tasks.support_x, tasks.support_y, torch.cat([tasks.support_x, tasks.query_x], 1),
                       torch.cat([tasks.support_y, tasks.query_y], 1))
    return _closed_form(pooled, 0.0, 0)


def check_linear_maml_optimum(linear_maml_optimum: Callable[[TaskBatch, float, int], Tensor]) -> None:
    """Check ``linear_maml_optimum(tasks, alpha, steps)``: MAML's optimal initialisation, in closed form.

    ``tasks`` is a :class:`~mtlcode.tasks.TaskBatch` of ``B`` regression tasks, inputs
    ``[B, k, d]`` and targets ``[B, k, 1]`` (the support and query sets may differ in size). The
    model is linear with a bias, ``f(x) = w^T x + b``, the loss the mean squared error, and the
    inner loop ``steps`` gradient steps of size ``alpha`` on the support set. The answer is the
    vector ``[d + 1]``, ``w`` then ``b``, that minimises MAML's meta-objective, the mean over the
    tasks of the query loss after the inner loop. Reference: the minimiser of
    ``mtlcode.MAML(MLP([d, 1]), alpha, inner_steps=steps).meta_loss``, found from its gradients.
    """
    exercise, cases = "linear_maml_optimum", []
    generator = torch.Generator().manual_seed(4)
    for seed, tasks, dim, shots, queries, steps, alpha_range in ((4, 3, 1, 5, 7, 1, (0.1, 0.3)),
                                                                  (5, 5, 3, 6, 4, 2, (0.05, 0.15)),
                                                                  (6, 4, 2, 4, 8, 3, (0.05, 0.1))):
        alpha = _uniform(generator, *alpha_range)
        case = (f"{tasks} tasks, {dim}-d inputs, {steps} step{'s' if steps > 1 else ''} of size {alpha:.4f}, "
                f"{shots} support and {queries} query examples")
        with _seeded(seed):
            batch = _linear_tasks(torch.Generator().manual_seed(seed), tasks, dim, shots, queries)
            expected = _reference(batch, alpha, steps)
            got = _call(exercise, case, linear_maml_optimum, batch, alpha, steps)
            problem = _mismatch(expected, got)
            if problem:
                raise _failure(exercise, case, *problem, _hint(batch, alpha, steps, expected, got))
        cases.append(case)
    _passed(exercise, cases)


def _hint(batch: TaskBatch, alpha: float, steps: int, expected: Tensor, got: object) -> str:
    """Name the slip behind a wrong optimum, when it is one of the usual ones."""
    dim = batch.support_x.shape[-1]
    if isinstance(got, Tensor) and tuple(got.shape) == (dim,):
        return (f"{dim} numbers for {dim}-d inputs: the model has a bias too; append a column of ones to the "
                "inputs and return the weights, then the bias (d + 1 numbers)")
    if isinstance(got, Tensor) and tuple(got.shape) == (dim + 1, 1):
        return "return a vector of shape (d + 1,), not a column: .squeeze(-1)"
    return _diagnose(got, [
        (_joint(batch), "this is joint training, least squares on all examples pooled (the loss *at* theta): "
                        "MAML minimises the query loss *after* the inner steps"),
        (_closed_form(batch, 0.0, steps), "this is least squares on the query sets, as if alpha were 0: the "
                                          "inner steps must change the parameters before the query loss"),
        (_closed_form(batch, alpha, 1), "this is the optimum for one inner step: with m steps the adapted "
                                        "parameters are M^m theta + alpha (I + M + ... + M^(m-1)) r_S"),
        (_closed_form(batch, alpha, steps, accumulate=False),
         "the offset does not add up over the steps: each step maps theta' to M theta' + alpha r_S, so after "
         "m steps the offset is alpha (I + M + ... + M^(m-1)) r_S, not alpha r_S"),
        (_closed_form(batch, alpha, steps, factor=1.0),
         "the factor 2 is missing: the gradient of the mean squared error (1/k)|X theta - y|^2 is "
         "(2/k) X^T (X theta - y), so A = (2/k) X^T X and r = (2/k) X^T y"),
        (_closed_form(batch, alpha, steps, mean=False),
         "these are sums over the examples: the loss is the *mean* squared error, so divide X^T X and X^T y by "
         "the number k of examples of each set (support and query sets differ in size)"),
        (torch.cat([expected[dim:], expected[:dim]]), "the bias comes first: return the weights w, then the bias b"),
    ], "per task, A = (2/k) X^T X and r = (2/k) X^T y with X = [x, 1]; theta' = N theta + c after the steps; "
       "solve sum_i N_i^T A_Q N_i theta = sum_i N_i^T (r_Q - A_Q c_i)")
