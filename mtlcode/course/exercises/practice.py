"""Checks for the exercises of chapter 5 (practice)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
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
    _snapshot,
    _uniform,
)
from mtlcode.learners.finetune import finetune, new_head
from mtlcode.models import MLP
from mtlcode.similarity import linear_cka

__all__ = ["check_finetune_head", "check_linear_cka"]

_FIXED_LR = 0.5  # the step size every case of check_finetune_head used to share


def check_finetune_head(finetune_head: Callable[[nn.Module, nn.Linear, Tensor, Tensor, int, float], nn.Module]) -> None:
    """Check ``finetune_head(model, head, support_x, support_y, steps, lr)``: head-only fine-tuning.

    ``model`` has a ``body`` and a ``head``; ``head`` is a fresh ``nn.Linear`` for the new
    classes. The answer is a network (``model``'s body followed by the trained head) after
    ``steps`` full-batch SGD steps of size ``lr`` on the cross-entropy of the support set, the
    body frozen; ``model`` itself must not change. Reference:
    ``mtlcode.learners.finetune.finetune(mode="head")``. The cases differ in the number of classes and
    steps, and each draws its own step size.
    """
    exercise, cases = "finetune_head", []
    generator = torch.Generator().manual_seed(5)
    with _seeded(2):
        model = MLP([4, 16, 16, 3]).double()  # stands for a network pre-trained on 3 source classes
    before = _snapshot(dict(model.named_parameters()))
    trainable = [p.requires_grad for p in model.parameters()]
    for case, steps, ways, lr_range in (("one step", 1, 5, (0.2, 0.45)), ("five steps", 5, 3, (0.55, 0.9))):
        lr = _uniform(generator, *lr_range)
        support_x = torch.randn(2 * ways, 4, generator=generator, dtype=torch.float64)
        support_y = torch.arange(ways).repeat(2)
        query_x = torch.randn(3 * ways, 4, generator=generator, dtype=torch.float64)

        def reference(steps: int, mode: str = "head", lr: float = lr, ways: int = ways,
                      support_x: Tensor = support_x, support_y: Tensor = support_y) -> nn.Module:
            with _seeded(3):  # the fresh head's initialisation is the same for both sides
                return finetune(model, support_x, support_y, steps=steps, lr=lr, mode=mode, ways=ways)

        def predictions(network: nn.Module, query_x: Tensor = query_x) -> Tensor:
            with torch.no_grad():
                return network(query_x)

        def what_it_predicts(network: Any, predictions: Callable[[nn.Module], Tensor] = predictions) -> tuple:
            # Runs where the student's function ran: the network it returned is there.
            if not isinstance(network, nn.Module):
                return False, type(network).__name__, ("error", "not a network")
            return True, type(network).__name__, _attempt(predictions)(network)

        with _seeded(3):
            head = new_head(model, ways)
        is_network, got_type, (status, got_predictions) = _call(
            exercise, case, finetune_head, model, head, support_x.clone(), support_y.clone(), steps, lr,
            then=what_it_predicts)
        problem = _params_mismatch(before, _snapshot(dict(model.named_parameters())))
        if not problem and [p.requires_grad for p in model.parameters()] != trainable:
            problem = "every parameter of model trainable, as before", "some of model's parameters frozen"
        if problem:
            raise _failure(exercise, "the pre-trained model is left unchanged", *problem,
                           "work on a copy (copy.deepcopy(model)): never assign to model.head or freeze model.body")
        if not is_network:
            raise _failure(exercise, case, "a network (an nn.Module)", got_type,
                           "return the fine-tuned network, e.g. a copy of model with the trained head")
        if status == "error":
            raise _failure(exercise, case, "query predictions", f"your network raised {got_predictions}",
                           "the returned network must take the query inputs [n, 4] and give one logit per class")
        expected = predictions(reference(steps))
        problem = _mismatch(expected, got_predictions, "query predictions")
        if problem:
            hint = _diagnose(got_predictions, [
                (predictions(reference(steps, mode="all")),
                 "these are the predictions of fine-tuning every parameter: freeze the body, train the head only"),
                (predictions(reference(0)), "the head has not been trained: take `steps` SGD steps on its parameters"),
                (predictions(reference(steps, lr=_FIXED_LR)),
                 f"these are steps of size {_FIXED_LR}, not lr = {lr:.4f}: use the argument `lr`, which "
                 "changes from case to case"),
            ], "the gradients of several steps add up unless you zero them at every step"
               if steps > 1 else "train the `head` you are given (do not make a new one) with one SGD step: "
                                 "head parameters -= lr * gradient of F.cross_entropy(head(features), y)")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    cases.insert(0, "the pre-trained model is left unchanged")
    _passed(exercise, cases)


def _as_number(got: Any) -> Any:
    """A float or a one-element tensor as a 0-d float64 tensor; anything else unchanged (and reported)."""
    if isinstance(got, bool):
        return got
    if isinstance(got, int | float):
        return torch.tensor(float(got), dtype=torch.float64)
    if isinstance(got, Tensor) and got.numel() == 1 and got.dim() <= 1 and got.is_floating_point():
        return got.detach().cpu().to(torch.float64).reshape(())
    return got


def _cka_variants(x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """The usual wrong versions of linear CKA, computed on the same activations."""

    def formula(a: Tensor, b: Tensor, square: bool = True, gram_norms: bool = True) -> Tensor:
        cross = torch.linalg.matrix_norm(b.T @ a)
        cross = cross**2 if square else cross
        if gram_norms:
            return cross / (torch.linalg.matrix_norm(a.T @ a) * torch.linalg.matrix_norm(b.T @ b))
        return cross / (torch.linalg.matrix_norm(a) ** 2 * torch.linalg.matrix_norm(b) ** 2)

    xc, yc = x - x.mean(0), y - y.mean(0)
    return {"not centred": formula(x, y),
            "rows centred": formula(x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)),
            "not squared": formula(xc, yc, square=False),
            "norms of X and Y": formula(xc, yc, gram_norms=False)}


def check_linear_cka(cka: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Check ``cka(x, y)``: linear centred kernel alignment of two activation matrices.

    ``x`` ``[n, p]`` and ``y`` ``[n, q]`` hold the activations of the same ``n`` inputs (one row
    per input) in two layers or two networks; ``p`` and ``q`` may differ. The answer is the
    number (a 0-d tensor, or a float) ``|Y^T X|_F^2 / (|X^T X|_F |Y^T Y|_F)``, where ``X`` and
    ``Y`` are ``x`` and ``y`` with every feature (column) centred over the inputs. Reference:
    :func:`mtlcode.similarity.linear_cka`. The cases differ in sizes and seeds, and their
    features have non-zero means.
    """
    exercise, cases = "linear_cka", []
    generator = torch.Generator().manual_seed(51)

    def draw(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    n1, n2, n3 = (int(torch.randint(low, high, (), generator=generator)) for low, high in
                  ((10, 16), (20, 30), (40, 60)))
    p1, q1 = int(torch.randint(3, 6, (), generator=generator)), int(torch.randint(6, 10, (), generator=generator))
    x1 = draw(n1, p1) + 5.0 * draw(p1)
    y1 = x1 @ draw(p1, q1) + 0.5 * draw(n1, q1) + 5.0 * draw(q1)  # related to x1, with noise
    rotation, _ = torch.linalg.qr(draw(6, 6))
    x2 = draw(n2, 6) + 3.0 * draw(6)
    y2 = 2.5 * x2 @ rotation + 4.0 * draw(6)  # x2 rotated, rescaled and shifted: CKA is 1
    x3 = draw(n3, 3) + 1.5 * draw(3)
    y3 = draw(n3, 9) - 2.0 * draw(9)  # unrelated to x3
    for case, x, y in ((f"{n1} inputs, {p1} and {q1} features, y a noisy linear map of x", x1, y1),
                       (f"{n2} inputs, y = x rotated, scaled by 2.5 and shifted (CKA 1)", x2, y2),
                       (f"{n3} inputs, 3 and 9 unrelated features", x3, y3)):
        expected = linear_cka(x, y)
        got = _as_number(_call(exercise, case, cka, x.clone(), y.clone()))
        problem = _mismatch(expected, got, "CKA")
        if problem:
            wrong = _cka_variants(x, y)
            hint = _diagnose(got, [
                (wrong["not centred"], "the features are not centred: subtract each column's mean over the inputs, "
                                       "x - x.mean(0) and y - y.mean(0), before the formula"),
                (wrong["rows centred"], "you centred each input (the mean over its features): centre each feature "
                                        "over the inputs instead, x - x.mean(0) (dim 0, the rows)"),
                (wrong["not squared"], "the numerator is the *squared* Frobenius norm |Y^T X|_F^2; without the "
                                       "square the index is not 1 for a rotated copy"),
                (wrong["norms of X and Y"], "the denominator uses the norms of the Gram matrices, "
                                            "|X^T X|_F |Y^T Y|_F, not |X|_F^2 |Y|_F^2"),
                (1 - expected, "this is 1 - CKA: the index is a similarity, 1 for the same representation"),
            ], "centre: X = x - x.mean(0), Y = y - y.mean(0); then "
               "torch.linalg.matrix_norm(Y.T @ X) ** 2 / (matrix_norm(X.T @ X) * matrix_norm(Y.T @ Y))")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)
