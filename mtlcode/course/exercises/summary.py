"""Checks for the exercises of chapter 8 (summary): ideas that tie the book together."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mtlcode.course.exercises._checking import (
    _call,
    _diagnose,
    _failure,
    _params_mismatch,
    _passed,
    _uniform,
)
from mtlcode.evaluation import ci95_half_width, t_quantile
from mtlcode.learners.protonet import prototypes

__all__ = ["check_paired_difference", "check_prototype_linear_layer"]


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
