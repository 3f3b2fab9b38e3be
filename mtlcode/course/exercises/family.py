"""Checks for the exercises of chapter 3 (algorithms): the MAML family."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    _gradients,
    _mismatch,
    _params_mismatch,
    _passed,
    _seeded,
    _sinusoid_problem,
    _snapshot,
    _uniform,
    _zeros_for_none,
)
from mtlcode.learners.anil import ANIL
from mtlcode.learners.maml import MAML
from mtlcode.learners.metasgd import MetaSGD, _key
from mtlcode.learners.protonet import prototype_logits as reference_prototype_logits
from mtlcode.learners.protonet import prototypes
from mtlcode.learners.reptile import Reptile
from mtlcode.tasks import TaskBatch

__all__ = ["check_prototype_logits", "check_reptile_update", "check_anil_inner_loop", "check_metasgd_step"]


def check_prototype_logits(prototype_logits: Callable[[Tensor, Tensor, Tensor], Tensor]) -> None:
    """Check ``prototype_logits(support, support_y, query)``: a Prototypical Network's logits.

    ``support`` holds embeddings ``[n, d]`` with class labels ``support_y`` ``[n]`` in
    ``0..K-1`` (``K = support_y.max() + 1``; every class at least once, in any order), ``query``
    embeddings ``[q, d]``. The answer is ``[q, K]``: minus the squared Euclidean distance of
    each query to each class's prototype, the mean of its support embeddings. Reference:
    :func:`mtlcode.learners.protonet.prototypes` and :func:`mtlcode.learners.protonet.prototype_logits`.
    """
    exercise, cases = "prototype_logits", []
    generator = torch.Generator().manual_seed(6)
    for case, counts, dim, queries in (
        ("5 classes of 3 shots, 4-d embeddings, 7 queries", [3, 3, 3, 3, 3], 4, 7),
        ("3 classes of 2, 4 and 1 shots in shuffled order, 6-d embeddings, 2 queries", [2, 4, 1], 6, 2),
    ):
        classes = len(counts)
        labels = torch.arange(classes).repeat_interleave(torch.tensor(counts))
        labels = labels[torch.randperm(len(labels), generator=generator)]
        support = 2 * torch.randn(len(labels), dim, generator=generator, dtype=torch.float64)
        query = 2 * torch.randn(queries, dim, generator=generator, dtype=torch.float64)
        centres = prototypes(support, labels, classes)
        expected = reference_prototype_logits(query, centres)
        got = _call(exercise, case, prototype_logits, support.clone(), labels.clone(), query.clone())
        problem = _mismatch(expected, got)
        if problem:
            firsts = support[[int((labels == k).nonzero()[0]) for k in range(classes)]]
            sums = centres * torch.tensor(counts, dtype=torch.float64)[:, None]
            distance = (-expected).sqrt()
            hint = _diagnose(got, [
                (-distance, "this is minus the plain distance: the logits use its square, "
                            "-((query - prototype) ** 2).sum(-1) (torch.cdist gives the plain distance)"),
                (-expected, "the sign is flipped: the nearest prototype must get the largest logit, so the "
                            "logit is *minus* the squared distance"),
                (distance, "the sign is flipped, and the distance is not squared: the logit is minus the "
                           "squared distance"),
                (reference_prototype_logits(query, sums),
                 "the prototypes are sums of the support embeddings: divide by the number of shots of each "
                 "class (the prototype is the class *mean*)"),
                (reference_prototype_logits(query, firsts),
                 "the prototype of a class is one support example: take the mean of all of the class's examples"),
                (expected.T, f"one row per query: the logits are [queries, classes] = {tuple(expected.shape)}"),
            ], "prototype k = mean of support[support_y == k]; logit[i, k] = -|query[i] - prototype k|^2")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)


def _fine_tuned(model: nn.Module, x: Tensor, y: Tensor, lr: float, steps: int, start: Params) -> Params:
    """``steps`` plain SGD steps of size ``lr`` on the MSE of ``(x, y)`` from ``start``, as constants."""
    with torch.no_grad():
        return MAML(model, inner_lr=lr, first_order=True, loss=F.mse_loss).adapt(x, y, steps=steps, params=start)


def _reptile_hint(model: nn.Module, batch: TaskBatch, inner_lr: float, steps: int, expected: Params,
                  got: Any) -> str:
    """Name the mistake behind a wrong Reptile direction, when it is one of the usual ones."""
    theta = _snapshot(dict(model.named_parameters()))
    x = torch.cat([batch.support_x, batch.query_x], dim=1)
    y = torch.cat([batch.support_y, batch.query_y], dim=1)

    def direction(phis: list[Params]) -> Params:
        return {n: p - torch.stack([phi[n] for phi in phis]).mean(0) for n, p in theta.items()}

    chained, phi = [], theta
    for xi, yi in zip(x, y):
        phi = _fine_tuned(model, xi, yi, inner_lr, steps, phi)
        chained.append(phi)
    support_only = [_fine_tuned(model, sx, sy, inner_lr, steps, theta)
                    for sx, sy in zip(batch.support_x, batch.support_y)]
    one_step = [_fine_tuned(model, xi, yi, inner_lr, 1, theta) for xi, yi in zip(x, y)]
    two_losses = [_fine_tuned(model, xi, yi, 2 * inner_lr, steps, theta) for xi, yi in zip(x, y)]
    restart = "start every task from theta: phi_i is fine-tuned from theta, not from the previous task's phi"
    return _diagnose(got, [
        (direction(support_only), "this fine-tunes on the support set only: Reptile trains on each task's "
                                  "support and query examples together (torch.cat them)"),
        ({n: len(batch) * g for n, g in expected.items()},
         "this is the sum over the tasks: average theta - phi_i over the tasks"),
        ({n: theta[n] - len(batch) * (theta[n] - g) for n, g in expected.items()},  # theta - sum phi_i
         "this is theta - (the sum of the phi_i): average the phi_i over the tasks (mean, not sum)"),
        ({n: -g for n, g in expected.items()},
         "the sign is flipped: return theta - mean phi_i (the outer optimiser steps *against* it, towards "
         "the phi_i)"),
        (direction(chained), restart),
        (direction(chained[-1:]), restart),
        (direction(one_step), "that is one SGD step per task: take `inner_steps` steps"),
        (direction(two_losses), "your steps are twice too long: use one mean squared error over the support "
                                "and query examples together, not the sum of two losses"),
    ], "per task: phi = theta, then inner_steps times phi = phi - inner_lr * grad of the MSE on support + "
       "query at phi; return theta - (mean of the phi_i)")


def check_reptile_update(reptile_gradient: Callable[[nn.Module, TaskBatch, float, int], Params]) -> None:
    """Check ``reptile_gradient(model, batch, inner_lr, inner_steps)``: Reptile's update direction.

    For every task ``i`` of ``batch``, ``phi_i`` is the result of ``inner_steps`` plain
    (full-batch) SGD steps of size ``inner_lr``, starting from the model's parameters ``theta``,
    on the mean squared error of the task's support and query examples together. The answer is
    the dict ``{name: theta - mean_i phi_i}`` over ``model.named_parameters()``, which an outer
    optimiser uses as the gradient; the model must not change. Reference:
    :meth:`mtlcode.Reptile.meta_gradient`.
    """
    exercise, cases = "reptile_gradient", []
    generator = torch.Generator().manual_seed(7)
    for seed, tasks, shots, sizes, steps, lr_range in ((7, 3, 4, (1, 8, 8, 1), 3, (0.01, 0.05)),
                                                       (8, 4, 3, (1, 6, 10, 1), 2, (0.05, 0.1))):
        inner_lr = _uniform(generator, *lr_range)
        case = f"{tasks} tasks, {steps} steps of size {inner_lr:.4f}"
        with _seeded(seed):
            model, batch = _sinusoid_problem(tasks=tasks, shots=shots, seed=seed, sizes=sizes)
        got = _call_keeping_model(exercise, case, model, "compute the direction only; do not change the model's "
                                  "parameters (no optimiser step, no in-place update)",
                                  reptile_gradient, model, batch, inner_lr, steps)
        expected = Reptile(model, inner_lr, inner_steps=steps, loss=F.mse_loss).meta_gradient(batch)
        problem = _params_mismatch(expected, got)
        if problem:
            raise _failure(exercise, case, *problem, _reptile_hint(model, batch, inner_lr, steps, expected, got))
        cases.append(case)
    _passed(exercise, cases)


def _drifted(theta: Params, own: bool) -> Params:
    """``theta`` itself, or other parameters (leaves, as those of a later outer step would be).

    The meta-gradient is taken with respect to these starting parameters: a leaf of their own, so
    that the gradient is the same whichever process computes it (the grader's runs the student's
    function in another process, where a link from ``params`` back to ``theta`` would not exist).
    """
    if own:
        return theta
    return {n: (p + 0.1 * torch.randn_like(p)).detach().requires_grad_() for n, p in theta.items()}


def _query_gradient(model: nn.Module, adapted: Params, task: TaskBatch, wrt: Params) -> dict[str, Tensor | None]:
    """The gradient of the query MSE at ``adapted`` with respect to ``wrt`` (None: not reached)."""
    prediction = MAML(model, inner_lr=1.0, loss=F.mse_loss).predict(adapted, task.query_x)
    return _gradients(F.mse_loss(prediction, task.query_y), wrt)


def _check_anil_case(anil_adapt: Callable[..., Params], exercise: str, case: str, model: nn.Module,
                     task: TaskBatch, alpha: float, steps: int, own: bool) -> list[str]:
    theta = dict(model.named_parameters())
    params = _drifted(theta, own)

    def adapted(learner: type[MAML], steps: int, first_order: bool = False, start: Params = params) -> Params:
        return learner(model, inner_lr=alpha, first_order=first_order, loss=F.mse_loss).adapt(
            task.support_x, task.support_y, steps=steps, params=start)

    def meta_gradient(adapted_params: Params) -> Params:
        return _zeros_for_none(_query_gradient(model, adapted_params, task, params), params)

    def body(p: Params) -> Params:
        return {n: t for n, t in p.items() if not n.startswith("head.")}

    def head(p: Params) -> Params:
        return {n: t for n, t in p.items() if n.startswith("head.")}

    own_hint = ("the body's features come from the model's own parameters: compute them with `params` "
                "(functional_call(model, params, ...) or functional_call(model.body, ...)), not with model(x) "
                "or model.body(x)")
    before = _snapshot(params)
    got, (status, got_gradient) = _call(exercise, case, anil_adapt, model, params, task.support_x, task.support_y,
                                        alpha, steps, then=lambda got: (got, _attempt(meta_gradient)(got)))
    problem = _params_mismatch(before, _snapshot(params))
    if problem:
        raise _failure(exercise, f"{case}: params is left unchanged", *problem,
                       "build new tensors (p - alpha * g) in a new dict; do not update params in place")
    expected = adapted(ANIL, steps)
    problem = _params_mismatch(_snapshot(expected), got)
    if problem:
        hint = _diagnose(got, [
            (_snapshot(adapted(MAML, steps)), "the body moved too: that is MAML's inner loop; ANIL takes the "
                                              "gradient of the head's parameters only and keeps the body's"),
            (_snapshot(adapted(ANIL, 1)), "that is one step: repeat the update `steps` times"),
            (_snapshot(adapted(ANIL, steps, start=theta)),
             "these steps start from the model's own parameters: start from `params`, and compute with them "
             "(functional_call), not with model(x)"),
            ({**_snapshot(adapted(ANIL, steps, start={**body(theta), **head(params)})), **_snapshot(body(params))},
             own_hint),
        ], "one step: head entries - alpha * gradient of F.mse_loss(model's output with params, y) with respect "
           "to the head entries; body entries unchanged")
        raise _failure(exercise, case, *problem, hint)

    gradient_case = f"{case}: meta-gradient through the steps"
    if status == "error":
        raise _failure(exercise, gradient_case, "adapted parameters that depend on params", got_gradient,
                       "do not detach the parameters or compute the steps under torch.no_grad()")
    problem = _params_mismatch(meta_gradient(expected), got_gradient)
    if problem:
        hint = _diagnose(got_gradient, [(meta_gradient(adapted(ANIL, steps, first_order=True)),
                                         "this is the first-order meta-gradient: pass create_graph=True to "
                                         "torch.autograd.grad, so that the head's steps can be differentiated")],
                         "the query loss must be differentiable through every step, with respect to the body and "
                         "the head: do not detach the body's features")
        raise _failure(exercise, gradient_case, *problem, hint)
    return [case, gradient_case]


def check_anil_inner_loop(anil_adapt: Callable[[nn.Module, Params, Tensor, Tensor, float, int], Params]) -> None:
    """Check ``anil_adapt(model, params, support_x, support_y, alpha, steps)``: ANIL's inner loop.

    ``model`` computes ``model.head(model.body(x))``; ``params`` is a dict of its parameters
    (names ``body.*`` and ``head.*``), not necessarily the model's own values. The answer is the
    dict of all parameters after ``steps`` gradient steps of size ``alpha`` on the mean squared
    error of the support set that move the ``head.*`` entries only; the ``body.*`` entries are
    those of ``params``. It stays differentiable with respect to ``params`` (the meta-gradient of
    body and head flows through the head's adaptation); ``params`` must not change. Reference:
    :meth:`mtlcode.ANIL.adapt`.
    """
    exercise, cases = "anil_adapt", []
    generator = torch.Generator().manual_seed(9)
    for seed, shots, sizes, steps, own, alpha_range in ((9, 5, (1, 8, 8, 1), 2, True, (0.05, 0.15)),
                                                        (10, 4, (1, 10, 6, 1), 3, False, (0.15, 0.3))):
        alpha = _uniform(generator, *alpha_range)
        case = f"{steps} steps of size {alpha:.4f}, params " + ("= the model's own" if own else
                                                                 "other than the model's own")
        with _seeded(seed):
            model, batch = _sinusoid_problem(tasks=1, shots=shots, seed=seed, sizes=sizes)
            cases += _check_anil_case(anil_adapt, exercise, case, model, batch[0], alpha, steps, own)
    _passed(exercise, cases)


def _check_metasgd_case(metasgd_step: Callable[..., Params], exercise: str, case: str, model: nn.Module,
                        task: TaskBatch, low: float, high: float, own: bool, generator: torch.Generator) -> list[str]:
    theta = dict(model.named_parameters())
    params = _drifted(theta, own)
    learner = MetaSGD(model, inner_lr=low, loss=F.mse_loss)
    with torch.no_grad():
        for name in theta:
            learner.step_sizes[_key(name)].uniform_(low, high, generator=generator)
    reference_sizes = {name: learner.step_sizes[_key(name)] for name in theta}
    step_sizes = {name: s.detach().clone().requires_grad_() for name, s in reference_sizes.items()}

    def stepped(start: Params, sizes: Params, create_graph: bool = True, at: Params | None = None) -> Params:
        """``start - sizes * g``, the gradient ``g`` taken at ``at`` (default: at ``start``)."""
        at = start if at is None else at
        loss = F.mse_loss(learner.predict(at, task.support_x), task.support_y)
        grads = torch.autograd.grad(loss, list(at.values()), create_graph=create_graph)
        return {n: p - sizes[n] * g for (n, p), g in zip(start.items(), grads)}

    def meta_gradient(adapted: Params, sizes: Params) -> tuple[Params, list[str]]:
        wrt = {**params, **{f"step_sizes[{n}]": s for n, s in sizes.items()}}
        grads = _query_gradient(model, adapted, task, wrt)
        unused = [n for n, g in grads.items() if g is None and n.startswith("step_sizes")]
        return _zeros_for_none(grads, wrt), unused

    before_params, before_sizes = _snapshot(params), _snapshot(step_sizes)
    got, (status, gradient) = _call(exercise, case, metasgd_step, model, params, step_sizes, task.support_x,
                                    task.support_y,
                                    then=lambda got: (got, _attempt(lambda g: meta_gradient(g, step_sizes))(got)))
    for what, before, now in (("params", before_params, params), ("step_sizes", before_sizes, step_sizes)):
        problem = _params_mismatch(before, _snapshot(now))
        if problem:
            raise _failure(exercise, f"{case}: {what} is left unchanged", *problem,
                           "build new tensors (p - s * g) in a new dict; do not update in place")
    expected = learner.inner_step(params, task.support_x, task.support_y)
    problem = _params_mismatch(_snapshot(expected), got)
    if problem:
        overall = torch.cat([s.flatten() for s in reference_sizes.values()]).mean()
        hint = _diagnose(got, [
            (_snapshot(stepped(params, {n: s.mean() for n, s in reference_sizes.items()})),
             "every element of a tensor got the same step size (the mean of step_sizes[name]): multiply the "
             "gradient by step_sizes[name] element by element"),
            (_snapshot(stepped(params, {n: overall for n in theta})),
             "one scalar step size for everything: multiply each gradient by its own step_sizes[name], element "
             "by element"),
            ({n: 2 * p - e for (n, p), e in zip(_snapshot(params).items(), _snapshot(expected).values())},
             "the step goes uphill: subtract step_sizes[name] * gradient"),
            (_snapshot(stepped(params, reference_sizes, at=theta)),
             "this gradient is taken at the model's own parameters: take it at `params` "
             "(functional_call(model, params, (x,))), not with model(x)"),
        ], "new[name] = params[name] - step_sizes[name] * gradient[name], the gradient of F.mse_loss at params")
        raise _failure(exercise, case, *problem, hint)

    gradient_case = f"{case}: meta-gradient of params and step sizes"
    if status == "error":
        raise _failure(exercise, gradient_case, "a result that depends on params and step_sizes", gradient,
                       "do not detach anything or compute the step under torch.no_grad()")
    got_gradient, unused = gradient
    if unused:
        raise _failure(exercise, gradient_case, f"a gradient for {unused[0]}", "none",
                       "no gradient reaches the step sizes: use the tensors step_sizes[name] themselves (not "
                       ".detach(), .item() or a copy) in the update")
    problem = _params_mismatch(meta_gradient(expected, reference_sizes)[0], got_gradient)
    if problem:
        first_order = meta_gradient(stepped(params, reference_sizes, create_graph=False), reference_sizes)[0]
        hint = _diagnose(got_gradient, [(first_order,
                                         "the step sizes' gradient is right but that of params lacks its "
                                         "second-order term: pass create_graph=True to torch.autograd.grad")],
                         "the query loss must be differentiable through the step, with respect to params and the "
                         "step sizes")
        raise _failure(exercise, gradient_case, *problem, hint)
    return [case, gradient_case]


def check_metasgd_step(metasgd_step: Callable[[nn.Module, Params, Params, Tensor, Tensor], Params]) -> None:
    """Check ``metasgd_step(model, params, step_sizes, support_x, support_y)``: one Meta-SGD inner step.

    ``step_sizes[name]`` is shaped like ``params[name]``. The answer is the dict
    ``{name: params[name] - step_sizes[name] * g[name]}``, element by element, with ``g`` the
    gradient of the support set's mean squared error at ``params``. It stays differentiable with
    respect to both ``params`` and ``step_sizes`` (Meta-SGD meta-learns both); neither may
    change. Reference: :meth:`mtlcode.MetaSGD.inner_step`.
    """
    exercise, cases = "metasgd_step", []
    generator = torch.Generator().manual_seed(11)
    for seed, shots, sizes, own in ((11, 5, (1, 8, 8, 1), True), (12, 4, (1, 10, 6, 1), False)):
        low = _uniform(generator, 0.005, 0.03)
        high = low + _uniform(generator, 0.05, 0.15)
        case = f"step sizes in [{low:.3f}, {high:.3f}), params " + ("= the model's own" if own else
                                                                     "other than the model's own")
        with _seeded(seed):
            model, batch = _sinusoid_problem(tasks=1, shots=shots, seed=seed, sizes=sizes)
            cases += _check_metasgd_case(metasgd_step, exercise, case, model, batch[0], low, high, own, generator)
    _passed(exercise, cases)
