"""Checks for the exercises of chapter 8 (summary): ideas that tie the book together."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlcode.course.exercises._checking import (
    _attempt,
    _call,
    _diagnose,
    _failure,
    _mismatch,
    _params_mismatch,
    _passed,
    _seeded,
    _uniform,
)
from mtlcode.evaluation import ci95_half_width, t_quantile
from mtlcode.learners.adapters import LoRA
from mtlcode.learners.protonet import prototypes
from mtlcode.learners.ridge import ridge_logits

__all__ = ["check_lora_linear", "check_paired_difference", "check_prototype_linear_layer", "check_ridge_head"]


def _as_pair(exercise: str, case: str, got: Any, names: tuple[str, str],
             shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> dict[str, Tensor]:
    """``got`` as ``{names[0]: tensor, names[1]: tensor}`` (float64), or feedback on what it is."""
    if not isinstance(got, tuple | list) or len(got) != 2:
        what = f"a {type(got).__name__}" + (f" of length {len(got)}" if isinstance(got, tuple | list) else "")
        raise _failure(exercise, case, f"a pair ({names[0]}, {names[1]})", what,
                       f"return two values: return {names[0]}, {names[1]}")
    pair = {}
    for name, value, shape in zip(names, got, shapes):
        try:
            pair[name] = torch.as_tensor(value.detach() if isinstance(value, Tensor) else value,
                                         dtype=torch.float64).cpu()
        except (TypeError, ValueError, RuntimeError) as error:
            raise _failure(exercise, case, f"{name} as a number or a tensor", type(value).__name__,
                           f"{name} must be a float or a tensor") from error
        if not shape and pair[name].numel() == 1:
            pair[name] = pair[name].reshape(())  # a float, a 0-d tensor or a one-element tensor
    return pair


def check_prototype_linear_layer(prototype_linear_layer: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]) -> None:
    """Check ``prototype_linear_layer(support, support_y)``: a ProtoNet written as a linear layer.

    ``support`` holds embeddings ``[n, d]`` with class labels ``support_y`` ``[n]`` in
    ``0..K-1`` (``K = support_y.max() + 1``; every class at least once, in any order). The answer
    is the pair ``(weight, bias)``, ``weight`` ``[K, d]`` and ``bias`` ``[K]``, of the linear layer
    with ``query @ weight.T + bias = -|query - c_k|^2 + |query|^2``, ``c_k`` the mean embedding of
    class ``k``: ``weight[k] = 2 c_k`` and ``bias[k] = -|c_k|^2``. Reference:
    :func:`mtlcode.learners.protonet.prototypes` (and :func:`mtlcode.learners.protonet.prototype_logits` for the
    identity).
    """
    exercise, cases = "prototype_linear_layer", []
    generator = torch.Generator().manual_seed(81)
    for counts, dim in (([3, 3, 3, 3, 3], 4), ([2, 5, 1], 6), ([4, 1, 2, 3], 3)):
        classes = len(counts)
        scale = _uniform(generator, 0.5, 3.0)
        shift = _uniform(generator, -2.0, 2.0)
        case = f"{classes} classes of {counts} shots, {dim}-d embeddings around {shift:+.2f}"
        labels = torch.arange(classes).repeat_interleave(torch.tensor(counts))
        labels = labels[torch.randperm(len(labels), generator=generator)]
        support = shift + scale * torch.randn(len(labels), dim, generator=generator, dtype=torch.float64)
        got = _call(exercise, case, prototype_linear_layer, support.clone(), labels.clone())
        got = _as_pair(exercise, case, got, ("weight", "bias"), ((classes, dim), (classes,)))
        centres = prototypes(support, labels, classes)
        expected = {"weight": 2 * centres, "bias": -(centres**2).sum(-1)}
        problem = _params_mismatch(expected, got)
        if problem:
            sums = centres * torch.tensor(counts, dtype=torch.float64)[:, None]
            firsts = support[[int((labels == k).nonzero()[0]) for k in range(classes)]]
            norm = (centres**2).sum(-1)
            hint = _diagnose(got, [
                ({"weight": centres, "bias": -norm},
                 "the weights are c_k: expanding -|f - c_k|^2 = 2 c_k.f - |c_k|^2 - |f|^2 gives 2 c_k"),
                ({"weight": centres, "bias": -norm / 2},
                 "this is half of the layer: it predicts the same classes, but its logits are half the "
                 "ProtoNet's, so its softmax and loss differ; use weight 2 c_k and bias -|c_k|^2"),
                ({"weight": 2 * centres, "bias": norm}, "the bias has the wrong sign: it is -|c_k|^2"),
                ({"weight": 2 * centres, "bias": -norm.sqrt()},
                 "the bias is minus the norm of c_k: it is minus its *square*, -(c_k ** 2).sum()"),
                ({"weight": 2 * centres, "bias": torch.zeros(classes, dtype=torch.float64)},
                 "the bias is missing: -|c_k|^2 is what stays of the squared distance once -|f|^2 is dropped"),
                ({"weight": 2 * sums, "bias": -(sums**2).sum(-1)},
                 "these prototypes are sums of the support embeddings: divide by the number of shots of "
                 "each class (the prototype is the class *mean*)"),
                ({"weight": 2 * firsts, "bias": -(firsts**2).sum(-1)},
                 "the prototype of a class is one support example: take the mean of all of its examples"),
                ({"weight": 2 * centres.T, "bias": -norm},
                 f"the weight has one row per class: [classes, dim] = {(classes, dim)}, as in nn.Linear"),
            ], "c_k = mean of support[support_y == k]; weight = 2 c (one row per class), bias = -(c ** 2).sum(-1)")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)


def check_paired_difference(paired_difference: Callable[[Tensor, Tensor], tuple[float, float]]) -> None:
    """Check ``paired_difference(scores_a, scores_b)``: a paired 95% interval over test tasks.

    ``scores_a`` and ``scores_b`` are float64 tensors ``[n]``, the per-task scores of two
    methods on the *same* ``n`` tasks (task ``i`` is entry ``i`` of both), as in
    :attr:`mtlcode.evaluation.Evaluation.values`. The answer is the pair ``(mean, half_width)``
    for the differences ``d_i = a_i - b_i``: their mean and the half-width of its 95%
    t-interval, ``t_{0.975, n-1} * s / sqrt(n)`` with ``s`` the sample standard deviation of the
    ``d_i`` (divided by ``n - 1``), the interval :func:`mtlcode.evaluate` reports for one method.
    Floats or 0-d tensors are both fine. Reference: :func:`mtlcode.evaluation.ci95_half_width`
    applied to the differences.
    """
    exercise, cases = "paired_difference", []
    generator = torch.Generator().manual_seed(82)
    for n, spread in ((12, 1.0), (40, 3.0), (200, 0.3)):
        gap = _uniform(generator, -0.5, 0.5)
        noise = _uniform(generator, 0.05, 0.3)
        case = f"{n} tasks, task difficulty spread {spread}, true gap {gap:+.3f}"
        difficulty = spread * torch.rand(n, generator=generator, dtype=torch.float64)
        a = difficulty + noise * torch.randn(n, generator=generator, dtype=torch.float64)
        b = difficulty - gap + noise * torch.randn(n, generator=generator, dtype=torch.float64)
        got = _call(exercise, case, paired_difference, a.clone(), b.clone())
        got = _as_pair(exercise, case, got, ("mean", "half_width"), ((), ()))
        d = a - b
        mean, half = d.mean().item(), ci95_half_width(d)

        def pair(m: float, h: float) -> dict[str, Tensor]:
            return {"mean": torch.tensor(m, dtype=torch.float64), "half_width": torch.tensor(h, dtype=torch.float64)}

        problem = _params_mismatch(pair(mean, half), got)
        if problem:
            t, s = t_quantile(0.975, n - 1), d.std().item()
            hint = _diagnose(got, [
                (pair(mean, math.hypot(ci95_half_width(a), ci95_half_width(b))),
                 "this treats the two methods as independent (sqrt(ci_a^2 + ci_b^2)): they were scored on the "
                 "same tasks, so take the interval of the differences a_i - b_i themselves"),
                (pair(mean, ci95_half_width(a) + ci95_half_width(b)),
                 "this adds the two methods' own intervals: take the interval of the differences a_i - b_i"),
                (pair(mean, 1.96 * s / math.sqrt(n)),
                 "1.96 is the normal quantile: the interval of a mean of n numbers with their sample standard "
                 "deviation uses Student's t_{0.975, n-1} (mtlcode.evaluation.t_quantile), as mtlcode.evaluate "
                 "does"),
                (pair(mean, t_quantile(0.975, n) * s / math.sqrt(n)),
                 "the t quantile has n - 1 degrees of freedom, not n"),
                (pair(mean, t_quantile(0.95, n - 1) * s / math.sqrt(n)),
                 "the 95% interval is two-sided: 2.5% on each side, so the 0.975 quantile, not 0.95"),
                (pair(mean, t * d.std(correction=0).item() / math.sqrt(n)),
                 "the standard deviation divides by n: use the sample standard deviation (n - 1), "
                 "torch.std's default"),
                (pair(mean, s / math.sqrt(n)),
                 "this is the standard error: the 95% half-width is t_{0.975, n-1} (about 2) times it"),
                (pair(mean, t * s / n), "divide the standard deviation by sqrt(n), not by n"),
                (pair(mean, t * s),
                 "this is the spread of single tasks: divide by sqrt(n) for the spread of their mean"),
                (pair(-mean, half), "the difference is the wrong way round: a - b, not b - a"),
            ], "d = scores_a - scores_b; return d.mean(), mtlcode.evaluation.ci95_half_width(d)")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)


def check_lora_linear(lora_linear: Callable[..., Tensor]) -> None:
    """Check ``lora_linear(x, weight, bias, A, B, alpha)``: a linear layer with a LoRA update.

    ``x`` ``[n, in]``, the frozen ``weight`` ``[out, in]`` and ``bias`` ``[out]``, LoRA's factors
    ``A`` ``[r, in]`` and ``B`` ``[out, r]`` and the number ``alpha``; the answer is
    ``x (W + (alpha / r) B A)^T + b``, ``[n, out]``, differentiable with respect to ``A`` and
    ``B``. Reference: :class:`mtlcode.learners.adapters.LoRA` around an ``nn.Linear`` holding
    ``weight`` and ``bias``. The cases vary the sizes, the rank and ``alpha``; the last one
    compares the gradients with respect to ``A`` and ``B``.
    """
    exercise, cases = "lora_linear", []
    generator = torch.Generator().manual_seed(83)

    def reference(x: Tensor, weight: Tensor, bias: Tensor, a: Tensor, b: Tensor, alpha: float) -> LoRA:
        with _seeded(0):  # the initial values are overwritten; the caller's RNG is left alone
            base = nn.Linear(weight.shape[1], weight.shape[0], dtype=torch.float64)
            layer = LoRA(base, rank=a.shape[0], alpha=alpha)
        with torch.no_grad():
            base.weight.copy_(weight)
            base.bias.copy_(bias)
        with torch.no_grad():
            layer.A.copy_(a)
            layer.B.copy_(b)
        return layer

    for n, fan_in, fan_out, rank, gradient in ((5, 6, 3, 2, False), (4, 3, 7, 1, False), (6, 8, 4, 4, True)):
        alpha = _uniform(generator, 0.5, 8.0)
        case = (f"{n} inputs, {fan_in} -> {fan_out} features, rank {rank}, alpha {alpha:.2f}"
                + (": gradients with respect to A and B" if gradient else ""))
        x = torch.randn(n, fan_in, generator=generator, dtype=torch.float64)
        weight = torch.randn(fan_out, fan_in, generator=generator, dtype=torch.float64)
        bias = torch.randn(fan_out, generator=generator, dtype=torch.float64)
        a = torch.randn(rank, fan_in, generator=generator, dtype=torch.float64)
        b = torch.randn(fan_out, rank, generator=generator, dtype=torch.float64)  # B moved away from 0
        layer = reference(x, weight, bias, a, b, alpha)
        expected = layer(x).detach()
        if not gradient:
            got = _call(exercise, case, lora_linear, x.clone(), weight.clone(), bias.clone(), a.clone(),
                        b.clone(), alpha)
            problem = _mismatch(expected, got, "output")
            if problem:
                scale, delta = alpha / rank, b @ a
                hint = _diagnose(got, [
                    (x @ (weight + alpha * delta).T + bias,
                     "the update is scaled by alpha, not alpha / r: divide by the rank r = A.shape[0]"),
                    (x @ (weight + delta).T + bias, "the update B A is not scaled: multiply it by alpha / r"),
                    (x @ (weight + rank / alpha * delta).T + bias, "the scale is alpha / r, not r / alpha"),
                    (x @ (scale * delta).T + bias,
                     "the frozen weight is missing: LoRA adds (alpha / r) B A to W, it does not replace it"),
                    (x @ (weight + scale * delta).T, "the bias b is missing"),
                ], "h = x @ (weight + (alpha / r) * B @ A).T + bias, with r = A.shape[0]")
                raise _failure(exercise, case, *problem, hint)
        else:
            a_leaf, b_leaf = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
            probe = torch.randn(n, fan_out, generator=generator, dtype=torch.float64)

            def gradients(out: Tensor, a_leaf: Tensor = a_leaf, b_leaf: Tensor = b_leaf,
                          probe: Tensor = probe) -> dict[str, Tensor]:
                # Runs where the student's function ran: A and B there are these leaves.
                grads = torch.autograd.grad((out * probe).sum(), [a_leaf, b_leaf], allow_unused=True)
                return {name: torch.zeros_like(leaf) if g is None else g
                        for name, leaf, g in zip(("A", "B"), (a_leaf, b_leaf), grads)}

            status, got = _call(exercise, case, lora_linear, x.clone(), weight.clone(), bias.clone(), a_leaf,
                                b_leaf, alpha, then=_attempt(gradients))
            if status == "error":
                raise _failure(exercise, case, "an output that depends on A and B", got,
                               "compute with A and B themselves: no .detach(), no torch.no_grad()")
            out = layer(x)
            expected_grads = dict(zip(("A", "B"), torch.autograd.grad((out * probe).sum(), [layer.A, layer.B])))
            problem = _params_mismatch(expected_grads, got)
            if problem:
                zero = {"A": torch.zeros_like(a), "B": torch.zeros_like(b)}
                hint = _diagnose(got, [(zero, "no gradient reaches A or B: do not detach them")],
                                 "the output must be x @ (weight + (alpha / r) * B @ A).T + bias, "
                                 "computed from A and B")
                raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)


def check_ridge_head(ridge_head: Callable[..., Tensor]) -> None:
    """Check ``ridge_head(support, support_y, queries, lam)``: R2-D2's head in closed form.

    ``support`` ``[n, d]`` embeddings with labels ``support_y`` ``[n]`` in ``0..K-1``,
    ``queries`` ``[q, d]``, ``lam > 0`` a 0-d tensor. The answer is the logits ``[q, K]`` of the
    ridge regression of the one-hot labels on the support embeddings with a column of ones
    appended (its weight, one bias per class, is penalised like the others), applied to the
    queries with a 1 appended: ``[queries, 1] W``, ``W = argmin |[support, 1] W - Y|^2 +
    lam |W|^2``. Reference: :func:`mtlcode.learners.ridge.ridge_logits` (``alpha = 1``,
    ``beta = 0``). The last case compares the gradients of a query cross-entropy with respect to
    the support embeddings, the queries and ``lam``: the head must be differentiable, as R2-D2's
    meta-training needs.
    """
    exercise, cases = "ridge_head", []
    generator = torch.Generator().manual_seed(84)

    def expected_logits(support: Tensor, labels: Tensor, queries: Tensor, lam: Tensor) -> Tensor:
        return ridge_logits(support, labels, queries, int(labels.max()) + 1, lam.log())

    def with_ones(t: Tensor) -> Tensor:
        return torch.cat([t, torch.ones(len(t), 1, dtype=t.dtype)], dim=1)

    def ridge(features: Tensor, targets: Tensor, lam: Tensor) -> Tensor:
        eye = torch.eye(features.shape[1], dtype=features.dtype)
        return torch.linalg.solve(features.T @ features + lam * eye, features.T @ targets)

    for classes, shots, dim, lam_range, gradient in ((3, 2, 4, (0.2, 1.0), False), (5, 1, 8, (1.0, 3.0), False),
                                                     (2, 6, 3, (0.05, 0.3), False), (4, 3, 5, (0.3, 2.0), True)):
        lam = torch.tensor(_uniform(generator, *lam_range), dtype=torch.float64)
        case = (f"{classes} classes of {shots} shots, {dim}-d embeddings, lambda {lam.item():.3f}"
                + (": gradients with respect to support, queries and lambda" if gradient else ""))
        labels = torch.arange(classes).repeat(shots)
        labels = labels[torch.randperm(len(labels), generator=generator)]
        support = 0.5 + torch.randn(len(labels), dim, generator=generator, dtype=torch.float64)
        queries = 0.5 + torch.randn(2 * classes, dim, generator=generator, dtype=torch.float64)
        expected = expected_logits(support, labels, queries, lam).detach()
        if not gradient:
            got = _call(exercise, case, ridge_head, support.clone(), labels.clone(), queries.clone(), lam.clone())
            problem = _mismatch(expected, got, "logits")
            if problem:
                onehot = F.one_hot(labels, classes).double()
                centred = support - support.mean(0)
                w_c = ridge(centred, onehot - onehot.mean(0), lam)
                hint = _diagnose(got, [
                    (queries @ ridge(support, onehot, lam),
                     "the column of ones is missing: append 1 to every support and query embedding (a bias "
                     "per class)"),
                    (with_ones(queries) @ ridge(with_ones(support), 2 * onehot - 1, lam),
                     "the targets are -1/+1: R2-D2 regresses the one-hot labels (0/1)"),
                    (with_ones(queries) @ ridge(with_ones(support), onehot, lam**2),
                     "the penalty is lambda, not lambda^2"),
                    ((queries - support.mean(0)) @ w_c + onehot.mean(0),
                     "this centres the data, which leaves the bias unpenalised (the linear probe's ridge_solution); "
                     "R2-D2 appends a column of ones and penalises its weight like the others"),
                ], "W = Phi^T (Phi Phi^T + lam I)^-1 Y with Phi = [support, 1] and Y the one-hot labels; "
                   "logits = [queries, 1] @ W")
                raise _failure(exercise, case, *problem, hint)
        else:
            leaves = {"support": support.clone().requires_grad_(True), "queries": queries.clone().requires_grad_(True),
                      "lam": lam.clone().requires_grad_(True)}
            query_labels = torch.randint(classes, (len(queries),), generator=generator)

            def gradients(logits: Tensor, leaves: dict[str, Tensor] = leaves,
                          query_labels: Tensor = query_labels) -> dict[str, Tensor]:
                # Runs where the student's function ran: the three leaves there are these.
                loss = F.cross_entropy(logits, query_labels)
                grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
                return {name: torch.zeros_like(leaf) if g is None else g
                        for (name, leaf), g in zip(leaves.items(), grads)}

            status, got = _call(exercise, case, ridge_head, leaves["support"], labels.clone(), leaves["queries"],
                                leaves["lam"], then=_attempt(gradients))
            if status == "error":
                raise _failure(exercise, case, "logits that depend on support, queries and lam", got,
                               "compute the head from its inputs: no .detach(), no torch.no_grad(), no .item()")
            mine = {name: t.clone().requires_grad_(True) for name, t in
                    (("support", support), ("queries", queries), ("lam", lam))}
            logits = expected_logits(mine["support"], labels, mine["queries"], mine["lam"])
            expected_grads = dict(zip(mine, torch.autograd.grad(F.cross_entropy(logits, query_labels),
                                                                list(mine.values()))))
            problem = _params_mismatch(expected_grads, got)
            if problem:
                no_solve = dict(expected_grads, support=torch.zeros_like(support), lam=torch.zeros_like(lam))
                hint = _diagnose(got, [
                    (no_solve, "no gradient flows through the solve: the support embeddings and lambda must stay "
                               "in the graph (R2-D2 trains its body through the head)"),
                ], "the logits must be computed from support, queries and lam by differentiable operations "
                   "(torch.linalg.solve has a backward)")
                raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)
