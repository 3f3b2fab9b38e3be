"""Checks for the exercises of chapter 9 (frequently asked questions)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from mtlcode.course.exercises._checking import (
    Params,
    _call,
    _call_keeping_model,
    _diagnose,
    _failure,
    _mismatch,
    _params_mismatch,
    _passed,
    _seeded,
    _sinusoid_problem,
    _uniform,
)
from mtlcode.learners.maml import MAML
from mtlcode.models import TaskBatchNorm2d
from mtlcode.tasks import TaskBatch

__all__ = ["check_batch_norm", "check_second_order_term"]


# -- the second-order term of MAML's meta-gradient ----------------------------------------------

def _loss_gradient(model: nn.Module, params: Params, x: Tensor, y: Tensor, create_graph: bool = False) -> Params:
    """The gradient of the MSE of ``(x, y)`` at ``params`` (with its graph if ``create_graph``)."""
    loss = F.mse_loss(functional_call(model, params, (x,)), y)
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)))


def _hessian_times(model: nn.Module, at: Params, x: Tensor, y: Tensor, vector: Params) -> Params:
    """``H v``: the Hessian of the MSE of ``(x, y)`` at ``at`` times ``vector`` (a constant)."""
    at = {n: p.detach().requires_grad_() for n, p in at.items()}
    g = _loss_gradient(model, at, x, y, create_graph=True)
    dot = sum((g[n] * vector[n].detach()).sum() for n in g)
    return dict(zip(at, torch.autograd.grad(dot, list(at.values()))))


def _meta_gradient(model: nn.Module, batch: TaskBatch, alpha: float, first_order: bool) -> Params:
    """The gradient of ``MAML.meta_loss``, task by task (a first vmap call would take seconds)."""
    maml = MAML(model, inner_lr=alpha, first_order=first_order, loss=F.mse_loss, strategy="loop")
    params = maml.params()
    return dict(zip(params, torch.autograd.grad(maml.meta_loss(batch), list(params.values()))))


def _term_variants(model: nn.Module, batch: TaskBatch, alpha: float) -> dict[str, Params]:
    """Mean over tasks of ``-alpha H v`` with the usual slips in which Hessian and which ``v``."""
    theta = {n: p.detach().requires_grad_() for n, p in model.named_parameters()}
    totals: dict[str, Params] = {}
    for task in batch:
        sx, sy, qx, qy = task.support_x, task.support_y, task.query_x, task.query_y
        inner = _loss_gradient(model, theta, sx, sy)
        adapted = {n: (p - alpha * inner[n]).detach().requires_grad_() for n, p in theta.items()}
        at_adapted, at_theta = _loss_gradient(model, adapted, qx, qy), _loss_gradient(model, theta, qx, qy)
        for name, hv in (("query Hessian", _hessian_times(model, theta, qx, qy, at_adapted)),
                         ("Hessian at theta'", _hessian_times(model, adapted, sx, sy, at_adapted)),
                         ("query gradient at theta", _hessian_times(model, theta, sx, sy, at_theta))):
            total = totals.setdefault(name, {n: torch.zeros_like(p).detach() for n, p in theta.items()})
            for n in total:
                total[n] = total[n] - alpha * hv[n].detach() / len(batch)
    return totals


def check_second_order_term(second_order_term: Callable[[nn.Module, TaskBatch, float], Params]) -> None:
    """Check ``second_order_term(model, batch, alpha)``: what first-order MAML leaves out.

    For one inner step of size ``alpha`` on the mean squared error, the answer is the dict
    ``{name: tensor}`` over ``model.named_parameters()`` of the exact meta-gradient minus the
    first-order one: the mean over the tasks of ``-alpha H_i g_i``, where ``H_i`` is the Hessian
    of task ``i``'s support loss at the model's parameters ``theta`` and ``g_i`` the gradient of
    its query loss at the adapted parameters ``theta'_i = theta - alpha grad L_support(theta)``.
    The model must not change. Reference: the difference of the gradients of
    ``mtlcode.MAML(first_order=False).meta_loss`` and ``mtlcode.MAML(first_order=True).meta_loss``.
    """
    exercise, cases = "second_order_term", []
    generator = torch.Generator().manual_seed(91)
    for seed, tasks, shots, sizes, alpha_range in ((91, 1, 5, (1, 8, 8, 1), (0.02, 0.1)),
                                                   (92, 3, 4, (1, 10, 6, 1), (0.1, 0.3))):
        alpha = _uniform(generator, *alpha_range)
        case = f"{tasks} task{'s' if tasks > 1 else ''}, step size {alpha:.4f}"
        with _seeded(seed):
            model, batch = _sinusoid_problem(tasks=tasks, shots=shots, seed=seed, sizes=sizes)
        got = _call_keeping_model(exercise, case, model, "compute the term only; do not take an optimiser step or "
                                  "update in place", second_order_term, model, batch, alpha)
        exact = _meta_gradient(model, batch, alpha, first_order=False)
        first = _meta_gradient(model, batch, alpha, first_order=True)
        expected = {n: exact[n] - first[n] for n in exact}
        problem = _params_mismatch(expected, got)
        if problem:
            variants = _term_variants(model, batch, alpha)
            hint = _diagnose(got, [
                ({n: -g for n, g in expected.items()},
                 "the sign is flipped: the exact meta-gradient is (I - alpha H) g, so the term is -alpha H g"),
                ({n: g / alpha for n, g in expected.items()},
                 "alpha is missing: the term is -alpha H g (it vanishes as the step size goes to 0)"),
                ({n: -g / alpha for n, g in expected.items()},
                 "this is H g: multiply by -alpha"),
                ({n: len(batch) * g for n, g in expected.items()},
                 "this is the sum over the tasks: the meta-loss is the *mean* query loss, so average"),
                (exact, "this is the whole exact meta-gradient: subtract the first-order one"),
                (first, "this is the first-order meta-gradient, the part that stays: return what it leaves out"),
                (variants["query Hessian"],
                 "this is the Hessian of the *query* loss: the term comes from differentiating the inner "
                 "step, so it is the Hessian of the *support* loss"),
                (variants["Hessian at theta'"],
                 "this Hessian is taken at theta': the inner step theta - alpha grad L_support(theta) is "
                 "differentiated at theta"),
                (variants["query gradient at theta"],
                 "this multiplies the query gradient at theta: take the query gradient at the adapted "
                 "parameters theta'"),
            ], "per task: g = query gradient at theta' (a constant), then -alpha times the gradient of "
               "(support gradient at theta, with create_graph=True) . g; average over tasks")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)


# -- batch norm with the statistics of a chosen batch -------------------------------------------

def _normalised(x: Tensor, mean: Tensor, var: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    return weight.view(1, -1, 1, 1) * (x - mean) / (var + eps).sqrt() + bias.view(1, -1, 1, 1)


def _statistics(reference: Tensor, dims: tuple[int, ...], correction: int = 0) -> tuple[Tensor, Tensor]:
    return reference.mean(dims, keepdim=True), reference.var(dims, keepdim=True, correction=correction)


def check_batch_norm(batch_norm: Callable[[Tensor, Tensor, Tensor, Tensor, float], Tensor]) -> None:
    """Check ``batch_norm(x, reference, weight, bias, eps)``: batch norm on a chosen batch's statistics.

    ``x`` is ``[n, C, H, W]`` and ``reference`` ``[m, C, H, W]``; ``weight`` and ``bias`` are
    ``[C]``. For each channel ``c``, take the mean and the variance (divided by the number of
    values, not one less) of ``reference[:, c]`` over its ``m * H * W`` values; the answer, shaped
    like ``x``, is ``weight[c] * (x[:, c] - mean) / sqrt(variance + eps) + bias[c]``.
    ``batch_norm(x, x, ...)`` is then what MAML's batch norm does (the batch's own statistics), and
    ``batch_norm(query, support, ...)`` normalises queries with the support set's statistics.
    Reference: :class:`mtlcode.models.TaskBatchNorm2d` where ``reference`` is ``x``, a float64
    formula in this module otherwise.
    """
    exercise, cases = "batch_norm", []
    generator = torch.Generator().manual_seed(93)

    def images(n: int, channels: int, size: int, offsets: Tensor, scales: Tensor) -> Tensor:
        noise = torch.randn(n, channels, size, size, generator=generator, dtype=torch.float64)
        return offsets.view(1, -1, 1, 1) + scales.view(1, -1, 1, 1) * noise

    for what, n, m, channels, size in (("its own statistics", 4, None, 3, 5),
                                       ("the statistics of 5 other images", 6, 5, 2, 4),
                                       ("the statistics of 10 other images", 1, 10, 4, 3)):
        eps = _uniform(generator, 0.01, 0.2)
        offsets = 2 * torch.randn(channels, generator=generator, dtype=torch.float64)
        scales = 0.2 + 2 * torch.rand(channels, generator=generator, dtype=torch.float64)
        weight = 0.5 + torch.rand(channels, generator=generator, dtype=torch.float64)
        bias = torch.randn(channels, generator=generator, dtype=torch.float64)
        x = images(n, channels, size, offsets, scales)
        reference = x if m is None else images(m, channels, size, offsets, scales)
        case = f"{n} image{'s' if n > 1 else ''} of {channels} channels with {what}, eps {eps:.3f}"
        given_x = x.clone()
        given_reference = given_x if m is None else reference.clone()
        got = _call(exercise, case, batch_norm, given_x, given_reference, weight.clone(), bias.clone(), eps)
        if m is None:
            layer = TaskBatchNorm2d(channels, eps=eps).double()
            with torch.no_grad():
                layer.weight.copy_(weight)
                layer.bias.copy_(bias)
                expected = layer(x)
        else:
            expected = _normalised(x, *_statistics(reference, (0, 2, 3)), weight, bias, eps)
        problem = _mismatch(expected, got)
        if problem:
            mean, var = _statistics(reference, (0, 2, 3))
            mistakes = [
                (_normalised(x, *_statistics(reference, (0, 2, 3), correction=1), weight, bias, eps),
                 "this variance divides by (number of values - 1): batch norm divides by the number of values "
                 "(var(..., correction=0), or unbiased=False)"),
                (_normalised(x, *_statistics(reference, (0, 1, 2, 3)), weight, bias, eps),
                 "these statistics pool all channels: take one mean and one variance per channel, over "
                 "dims (0, 2, 3)"),
                (weight.view(1, -1, 1, 1) * (x - mean) / (var.sqrt() + eps) + bias.view(1, -1, 1, 1),
                 "eps is added to the standard deviation: add it to the variance, inside the square root"),
                (_normalised(x, mean, var, torch.ones_like(weight), torch.zeros_like(bias), eps),
                 "weight and bias are not applied: scale by weight[c] and add bias[c] after normalising"),
                (_normalised(x, mean, var, bias, weight, eps), "weight and bias are swapped"),
            ]
            if m is not None:
                mistakes.insert(0, (_normalised(x, *_statistics(x, (0, 2, 3)), weight, bias, eps),
                                    "these are x's own statistics: take the mean and variance of `reference`"))
            if reference.shape == x.shape:
                mistakes += [
                    (_normalised(x, *_statistics(reference, (2, 3)), weight, bias, eps),
                     "these statistics are per image (instance norm): batch norm averages over the images too, "
                     "dims (0, 2, 3)"),
                    (_normalised(x, *_statistics(reference, (1, 2, 3)), weight, bias, eps),
                     "these statistics are per image over all channels (layer norm): batch norm takes them per "
                     "channel over all images, dims (0, 2, 3)"),
                ]
            hint = _diagnose(got, mistakes, "mean and var of reference over dims (0, 2, 3), keepdim=True, "
                                            "correction=0; weight * (x - mean) / sqrt(var + eps) + bias, with "
                                            "weight and bias viewed as [1, C, 1, 1]")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)
