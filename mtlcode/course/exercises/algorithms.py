"""Checks for the exercises of chapter 3 (algorithms): MAML's inner loop and meta-gradients."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlcode.course.exercises._checking import (
    Params,
    _attempt,
    _call,
    _call_keeping_model,
    _diagnose,
    _failure,
    _meta_gradient,
    _params_mismatch,
    _passed,
    _seeded,
    _sinusoid_problem,
    _snapshot,
    _uniform,
)
from mtlcode.learners.maml import MAML
from mtlcode.tasks import TaskBatch

__all__ = ["check_inner_loop", "check_first_order_meta_gradient", "check_meta_gradient"]

# Step sizes a solution might write in place of its `alpha` argument: the chapter's ALPHA, and
# the value these checks once used for every case. The checks draw their step sizes at random
# (a different one per case), so a fixed number fails, and the hint says so.
_FIXED_STEP_SIZES = (0.01, 0.05)


def _fixed_step_hint(alpha: float, fixed: float) -> str:
    return (f"these are steps of size {fixed}, not alpha = {alpha:.4f}: use the argument `alpha`, not a "
            "fixed number (every case draws its own step size)")


def check_inner_loop(inner_loop: Callable[[nn.Module, Params, Tensor, Tensor, float, int], Params]) -> None:
    """Check ``inner_loop(model, params, support_x, support_y, alpha, steps)``: MAML's inner loop.

    The answer is the dict of adapted parameters after ``steps`` gradient steps of size ``alpha``
    on the mean squared error of the support set, differentiable with respect to ``params`` (the
    second-order meta-gradient flows through it). ``params`` must not change. Each case draws
    its own ``alpha`` in a range, so the function must use its argument. Reference:
    :meth:`mtlcode.MAML.adapt`.
    """
    exercise, cases = "inner_loop", []
    # A step size of its own for each call, drawn in a range: a fixed number in place of `alpha` fails.
    generator = torch.Generator().manual_seed(0)
    alphas = {steps: _uniform(generator, *bounds) for steps, bounds in ((1, (0.02, 0.04)), (3, (0.06, 0.09)),
                                                                         (2, (0.1, 0.15)))}
    with _seeded(0):
        model, batch = _sinusoid_problem(tasks=1, shots=5, seed=0)
    task = batch[0]
    theta = dict(model.named_parameters())
    maml = MAML(model, inner_lr=alphas[1], loss=F.mse_loss)

    def adapted(steps: int, alpha: float, first_order: bool = False) -> Params:
        learner = MAML(model, inner_lr=alpha, first_order=first_order, loss=F.mse_loss)
        return learner.adapt(task.support_x, task.support_y, steps=steps, params=theta)

    case = "theta is left unchanged"
    before = _snapshot(theta)
    got = _call(exercise, case, inner_loop, model, theta, task.support_x, task.support_y, alphas[1], 1)
    problem = _params_mismatch(before, _snapshot(theta))
    if problem:
        raise _failure(exercise, case, *problem, "build new tensors (p - alpha * g); do not update params in place")
    cases.append(case)

    for case, steps in (("one step", 1), ("three steps", 3)):
        alpha = alphas[steps]
        if steps != 1:
            got = _call(exercise, case, inner_loop, model, theta, task.support_x, task.support_y, alpha, steps)
        expected = {name: p.detach() for name, p in adapted(steps, alpha).items()}
        problem = _params_mismatch(expected, got)
        if problem:
            gradient_at_theta = {name: theta[name] - steps * (theta[name] - p)
                                 for name, p in adapted(1, alpha).items()}
            hint = _diagnose(got, [
                (_snapshot(gradient_at_theta), "every step used the gradient at theta: take each step's gradient "
                                               "at the parameters of the previous step"),
                (_snapshot(adapted(1, alpha)), "that is one step: repeat the update `steps` times"),
                *((_snapshot(adapted(steps, fixed)), _fixed_step_hint(alpha, fixed)) for fixed in _FIXED_STEP_SIZES),
            ], "one step is params - alpha * gradient of F.mse_loss(functional_call(model, params, (x,)), y)")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)

    case = "meta-gradient through two steps"
    alpha = alphas[2]

    def meta_gradient(params: Params) -> Params:
        loss = F.mse_loss(maml.predict(params, task.query_x), task.query_y)
        grads = torch.autograd.grad(loss, list(theta.values()), allow_unused=True)
        return {name: torch.zeros_like(p) if g is None else g for (name, p), g in zip(theta.items(), grads)}

    # The gradient through the student's steps is taken where they ran (then=...).
    status, got_gradient = _call(exercise, case, inner_loop, model, theta, task.support_x, task.support_y, alpha, 2,
                                 then=_attempt(meta_gradient))
    if status == "error":
        raise _failure(exercise, case, "adapted parameters that depend on theta", got_gradient,
                       "do not detach the parameters or compute the step under torch.no_grad()")
    problem = _params_mismatch(meta_gradient(adapted(2, alpha)), got_gradient)
    if problem:
        hint = _diagnose(got_gradient, [
            (meta_gradient(adapted(2, alpha, first_order=True)),
             "this is the first-order meta-gradient: pass create_graph=True to torch.autograd.grad, so that the "
             "step itself can be differentiated"),
            *((meta_gradient(adapted(2, fixed)), _fixed_step_hint(alpha, fixed)) for fixed in _FIXED_STEP_SIZES),
        ], "the query loss must be differentiable through every inner step")
        raise _failure(exercise, case, *problem, hint)
    cases.append(case)
    _passed(exercise, cases)


def _check_meta_gradient(exercise: str, fn: Callable[[nn.Module, TaskBatch, float], Params], first_order: bool,
                         default_hint: str) -> None:
    """Shared by the first- and second-order meta-gradient checks."""
    cases = []
    generator = torch.Generator().manual_seed(1)  # a step size per case, drawn in a range
    with _seeded(1):
        model, batch = _sinusoid_problem(tasks=4, shots=5, seed=1)
    for case, tasks, bounds in (("one task", batch[:1], (0.02, 0.04)), ("four tasks", batch, (0.06, 0.12))):
        alpha = _uniform(generator, *bounds)
        got = _call_keeping_model(exercise, case, model, "compute the gradient only; do not take an optimiser step",
                                  fn, model, tasks, alpha)
        expected = _meta_gradient(model, tasks, alpha, first_order=first_order)
        problem = _params_mismatch(expected, got)
        if problem:
            exact = _meta_gradient(model, tasks, alpha)
            first = _meta_gradient(model, tasks, alpha, first_order=True)
            hint = _diagnose(got, [
                ({n: g * len(tasks) for n, g in expected.items()},
                 "this is the sum over the tasks: the meta-loss is the *mean* query loss, so average"),
                (first if not first_order else exact,
                 "this is the first-order meta-gradient: keep the graph of the inner gradient "
                 "(create_graph=True)" if not first_order else
                 "this is the second-order meta-gradient: treat the inner gradient as a constant "
                 "(no create_graph, or .detach() it)"),
                (_meta_gradient(model, tasks, alpha, inner_steps=0),
                 "this is the query gradient at theta: take it at the adapted parameters theta'"),
                ({n: 2 * first[n] - exact[n] for n in exact},
                 "the sign of the Hessian term is flipped: (I - alpha H) times the query gradient"),
                *((_meta_gradient(model, tasks, fixed, first_order=first_order), _fixed_step_hint(alpha, fixed))
                  for fixed in _FIXED_STEP_SIZES),
            ], default_hint)
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)


def check_first_order_meta_gradient(fomaml_gradient: Callable[[nn.Module, TaskBatch, float], Params]) -> None:
    """Check ``fomaml_gradient(model, batch, alpha)``: the first-order MAML meta-gradient.

    The answer is a dict ``{name: gradient}`` for ``model.named_parameters()``: the gradient of
    the mean over tasks of the query loss (mean squared error) after one inner step of size
    ``alpha``, with the inner gradient treated as a constant. Each case draws its own ``alpha``
    in a range. Reference: ``mtlcode.MAML(first_order=True).meta_loss``.
    """
    _check_meta_gradient("fomaml_gradient", fomaml_gradient, first_order=True,
                         default_hint="per task: theta' = theta - alpha * (support gradient, as a constant); "
                                      "then the query gradient at theta'; average over tasks")


def check_meta_gradient(meta_gradient: Callable[[nn.Module, TaskBatch, float], Params]) -> None:
    """Check ``meta_gradient(model, batch, alpha)``: the exact (second-order) MAML meta-gradient.

    Same contract as :func:`check_first_order_meta_gradient`, but the gradient flows through
    the inner step: ``(I - alpha H) grad L_query(theta')`` per task, averaged. Reference:
    ``mtlcode.MAML(first_order=False).meta_loss``.
    """
    _check_meta_gradient("meta_gradient", meta_gradient, first_order=False,
                         default_hint="per task: (I - alpha H) times the query gradient at theta', with H the "
                                      "Hessian of the support loss at theta; average over tasks")
