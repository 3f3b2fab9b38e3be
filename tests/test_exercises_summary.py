"""The checks of chapter 8 (summary): the book's solutions pass, the typical mistakes are named.

As in ``test_exercises.py``, the reference solutions are read from the book's ``solution``
cells, and most wrong answers are that code with one slip put in (a string replacement).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from exercise_support import assert_fails, case_names, first_case, mutated, reference

from mtlcode import Evaluation, evaluate
from mtlcode.course import exercises
from mtlcode.evaluation import ci95_half_width
from mtlcode.learners.finetune import ridge_solution
from mtlcode.learners.protonet import prototype_logits, prototypes
from mtlcode.tasks import TaskBatch

BOOK = Path(__file__).resolve().parents[1] / "book"


def test_the_linear_layer_gives_the_protonet_logits_up_to_one_number_per_query():
    g = torch.Generator().manual_seed(0)
    support = torch.randn(9, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([2, 0, 1, 1, 0, 2, 2, 1, 0])
    query = torch.randn(6, 4, generator=g, dtype=torch.float64)
    weight, bias = reference("prototype_linear_layer")(support, labels)
    logits = prototype_logits(query, prototypes(support, labels, 3))
    torch.testing.assert_close(query @ weight.T + bias - (query**2).sum(-1, keepdim=True), logits)


def test_prototype_linear_layer_mistakes(capsys):
    check, name = exercises.check_prototype_linear_layer, "prototype_linear_layer"
    case = first_case(check, name, capsys)
    result = "return 2 * centres, -(centres**2).sum(-1)"
    assert_fails(check, mutated(name, (result, "return centres, -(centres**2).sum(-1)")), case,
                 "the weights are c_k", capsys)
    assert_fails(check, mutated(name, (result, "return centres, -(centres**2).sum(-1) / 2")), case,
                 "half of the layer", capsys)
    assert_fails(check, mutated(name, (result, "return 2 * centres, (centres**2).sum(-1)")), case,
                 "wrong sign", capsys)
    assert_fails(check, mutated(name, (result, "return 2 * centres, -centres.norm(dim=-1)")), case,
                 "minus its *square*", capsys)
    assert_fails(check, mutated(name, (result, "return 2 * centres, torch.zeros(len(centres))")), case,
                 "the bias is missing", capsys)
    assert_fails(check, mutated(name, (result, "return 2 * centres.T, -(centres**2).sum(-1)")), case,
                 "one row per class", capsys)
    assert_fails(check, mutated(name, ("support[support_y == k].mean(0)", "support[support_y == k].sum(0)")),
                 case, "divide by the number of shots", capsys)
    assert_fails(check, mutated(name, ("support[support_y == k].mean(0)", "support[support_y == k][0]")),
                 case, "one support example", capsys)
    assert_fails(check, mutated(name, (result, "return 2 * centres")), case, "a pair (weight, bias)", capsys)


def test_paired_difference_agrees_with_mtlcode_evaluate_on_one_method():
    """The check's interval is the one mtlcode.evaluate reports, applied to the differences."""
    scores = torch.rand(30, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = reference("paired_difference")(scores, torch.zeros_like(scores))
    result: Evaluation = evaluate(lambda sx, sy, qx: qx, _tasks_with_scores(scores))
    assert ours[0] == pytest.approx(result.mean, rel=1e-9) and ours[1] == pytest.approx(result.ci95, rel=1e-9)


def _tasks_with_scores(scores: torch.Tensor) -> TaskBatch:
    """Regression tasks on which predicting the query inputs (zeros) scores exactly ``scores`` (MSE)."""
    n = len(scores)
    zeros = torch.zeros(n, 1, 1, dtype=torch.float64)
    return TaskBatch(zeros, zeros, zeros, scores.sqrt().reshape(n, 1, 1))  # (0 - sqrt(s))^2 = s


def test_paired_difference_mistakes(capsys):
    check, name = exercises.check_paired_difference, "paired_difference"
    case = first_case(check, name, capsys)
    half = "ci95_half_width(differences)"

    def by_hand(quantile: str, spread: str, divisor: str) -> Callable:
        formula = f"{quantile} * {spread} / {divisor}"
        return mutated(name, (half, formula), ("from mtlcode.evaluation import ci95_half_width",
                                               "import math\nfrom mtlcode.evaluation import t_quantile"))

    n = "len(differences)"
    t, s, root = f"t_quantile(0.975, {n} - 1)", "differences.std().item()", f"math.sqrt({n})"
    assert_fails(check, by_hand("1.96", s, root), case, "normal quantile", capsys)
    assert_fails(check, by_hand(f"t_quantile(0.975, {n})", s, root), case, "degrees of freedom", capsys)
    assert_fails(check, by_hand(f"t_quantile(0.95, {n} - 1)", s, root), case, "two-sided", capsys)
    assert_fails(check, by_hand(t, "differences.std(correction=0).item()", root), case, "divides by n", capsys)
    assert_fails(check, by_hand("1", s, root), case, "standard error", capsys)
    assert_fails(check, by_hand(t, s, n), case, "sqrt(n), not by n", capsys)
    assert_fails(check, by_hand(t, s, "1"), case, "spread of single tasks", capsys)
    assert by_hand(t, s, root)(torch.ones(3).double(), torch.tensor([0.0, 1, 2]).double())[1] == pytest.approx(
        ci95_half_width(torch.tensor([1.0, 0, -1])))  # the formula by hand is right
    assert_fails(check, mutated(name, ("differences = scores_a - scores_b", "differences = scores_b - scores_a")),
                 case, "wrong way round", capsys)

    def unpaired(scores_a, scores_b):
        return (scores_a.mean() - scores_b.mean()).item(), math.hypot(ci95_half_width(scores_a),
                                                                      ci95_half_width(scores_b))

    assert_fails(check, unpaired, case, "as independent", capsys)

    def added(scores_a, scores_b):
        return (scores_a - scores_b).mean().item(), ci95_half_width(scores_a) + ci95_half_width(scores_b)

    assert_fails(check, added, case, "adds the two methods' own intervals", capsys)


def test_lora_linear_agrees_with_the_lora_module_at_initialisation():
    """With B = 0 (LoRA's start) the layer is the frozen one, whatever A is."""
    g = torch.Generator().manual_seed(2)
    x, weight, bias = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((4, 3), (5, 3), (5,)))
    a = torch.randn(2, 3, generator=g, dtype=torch.float64)
    out = reference("lora_linear")(x, weight, bias, a, torch.zeros(5, 2, dtype=torch.float64), 4.0)
    torch.testing.assert_close(out, x @ weight.T + bias)


def test_lora_linear_mistakes(capsys):
    check, name = exercises.check_lora_linear, "lora_linear"
    cases = case_names(check, name, capsys)
    update = "(alpha / rank) * B @ A"
    assert_fails(check, mutated(name, (update, "alpha * B @ A")), cases[0], "not alpha / r", capsys)
    assert_fails(check, mutated(name, (update, "B @ A")), cases[0], "is not scaled", capsys)
    assert_fails(check, mutated(name, (update, "(rank / alpha) * B @ A")), cases[0], "not r / alpha", capsys)
    assert_fails(check, mutated(name, ("(weight + (alpha", "((alpha")), cases[0], "frozen weight is missing",
                 capsys)
    assert_fails(check, mutated(name, (".T + bias", ".T")), cases[0], "bias b is missing", capsys)
    assert_fails(check, mutated(name, (update, "(alpha / rank) * B.detach() @ A.detach()")), cases[-1],
                 "compute with A and B themselves", capsys)


def test_ridge_head_agrees_with_the_primal_form_and_with_r2d2():
    g = torch.Generator().manual_seed(3)
    support, queries = torch.randn(6, 9, generator=g, dtype=torch.float64), torch.randn(4, 9, generator=g,
                                                                                        dtype=torch.float64)
    labels, lam = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor(0.7, dtype=torch.float64)
    phi = torch.cat([support, torch.ones(6, 1, dtype=torch.float64)], 1)
    primal = torch.linalg.solve(phi.T @ phi + lam * torch.eye(10, dtype=torch.float64),
                                phi.T @ torch.nn.functional.one_hot(labels, 3).double())
    expected = torch.cat([queries, torch.ones(4, 1, dtype=torch.float64)], 1) @ primal
    torch.testing.assert_close(reference("ridge_head")(support, labels, queries, lam), expected)


def test_ridge_head_mistakes(capsys):
    check, name = exercises.check_ridge_head, "ridge_head"
    cases = case_names(check, name, capsys)
    ones_s, ones_q = ("torch.cat([support, torch.ones_like(support[:, :1])], dim=1)",
                      "torch.cat([queries, torch.ones_like(queries[:, :1])], dim=1) @ weights")
    assert_fails(check, mutated(name, (ones_s, "support"), (ones_q, "queries @ weights")), cases[0],
                 "column of ones is missing", capsys)
    assert_fails(check, mutated(name, (".to(support.dtype)", ".to(support.dtype) * 2 - 1")), cases[0],
                 "-1/+1", capsys)
    assert_fails(check, mutated(name, ("lam * eye", "lam**2 * eye")), cases[0], "not lambda^2", capsys)
    solve = "    weights = phi.T @ torch.linalg.solve(phi @ phi.T + lam * eye, targets)"
    assert_fails(check, mutated(name, (solve, "    with torch.no_grad():\n    " + solve)), cases[-1],
                 "no gradient flows through the solve", capsys)

    def centred(support, support_y, queries, lam):  # the linear probe's ridge: an unpenalised bias
        weights, bias = ridge_solution(support, torch.nn.functional.one_hot(support_y).double(), float(lam))
        return queries @ weights + bias

    assert_fails(check, centred, cases[0], "leaves the bias unpenalised", capsys)
