"""Chapter 5's checks: linear CKA from its formula, and head-only fine-tuning with its own step sizes.

The reference solutions are the book's solution cells (read by the helpers of ``test_exercises``);
each wrong answer is that code with one typical mistake put in.
"""

from __future__ import annotations

import pytest
import torch
from exercise_support import assert_fails, case_names, mutated, reference

from mtlcode.course import exercises
from mtlcode.similarity import linear_cka

CKA = exercises.check_linear_cka, "centred_kernel_alignment"
CENTRE = "x, y = x - x.mean(0), y - y.mean(0)"
SQUARE = "cross = torch.linalg.matrix_norm(y.T @ x) ** 2"
NORMS = "norms = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)"


def test_the_solution_agrees_with_mtlcode():
    right = reference(CKA[1])
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, generator=generator, dtype=torch.float64) + 2
    y = torch.randn(30, 8, generator=generator, dtype=torch.float64) - 1
    assert torch.allclose(right(x, y), linear_cka(x, y))
    assert torch.allclose(right(x, 3 * x + 1), torch.tensor(1.0, dtype=torch.float64))


def test_cka_passes_the_reference_and_leaves_the_rng_alone(capsys):
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    exercises.check_linear_cka(reference(CKA[1]))
    assert torch.equal(torch.rand(3), expected_next)
    out = capsys.readouterr().out
    assert "all 3 cases passed" in out, out


def test_cka_accepts_a_float(capsys):
    right = reference(CKA[1])
    exercises.check_linear_cka(lambda x, y: right(x, y).item())
    assert "cases passed" in capsys.readouterr().out


def test_cka_unwritten_raises_not_implemented():
    def stub(x, y):
        raise NotImplementedError("Exercise: not written yet")

    with pytest.raises(NotImplementedError, match="not written yet"):
        exercises.check_linear_cka(stub)


def test_cka_cases_differ_in_sizes(capsys):
    names = case_names(*CKA, capsys)
    assert len(names) == 3 and len(set(names)) == 3, names
    sizes = [int(name.split(" inputs")[0]) for name in names]
    assert len(set(sizes)) == 3, sizes


def test_a_memorised_cka_fails(capsys):
    right, memory = reference(CKA[1]), []

    def memorised(x, y):
        if not memory:
            memory.append(right(x, y))
        return memory[0]

    first = case_names(*CKA, capsys)[1]
    assert_fails(exercises.check_linear_cka, memorised, first, "", capsys)


@pytest.mark.parametrize("replacements, hint", [
    (((CENTRE, "pass"),), "not centred"),
    (((CENTRE, "x, y = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)"),), "centred each input"),
    (((SQUARE, SQUARE.removesuffix(" ** 2")),), "*squared* Frobenius norm"),
    (((NORMS, "norms = torch.linalg.matrix_norm(x) ** 2 * torch.linalg.matrix_norm(y) ** 2"),),
     "norms of the Gram matrices"),
    ((("return cross / norms", "return 1 - cross / norms"),), "1 - CKA"),
], ids=["not centred", "rows centred", "not squared", "norms of x and y", "one minus"])
def test_typical_cka_mistakes_are_named(replacements, hint, capsys):
    first = case_names(*CKA, capsys)[0]
    assert_fails(exercises.check_linear_cka, mutated(CKA[1], *replacements), first, hint, capsys)


def test_a_cka_that_ignores_its_inputs_fails(capsys):
    first = case_names(*CKA, capsys)[0]
    assert_fails(exercises.check_linear_cka, lambda x, y: torch.tensor(1.0, dtype=torch.float64), first,
                 "CKA", capsys)


# -- finetune_head: the step size changes from case to case ------------------------------------

def test_finetune_head_gets_a_new_step_size_and_class_count_per_case(capsys):
    right, calls = reference("finetune_head"), []

    def recording(model, head, support_x, support_y, steps, lr):
        calls.append((lr, head.out_features))
        return right(model, head, support_x, support_y, steps, lr)

    exercises.check_finetune_head(recording)
    assert "cases passed" in capsys.readouterr().out
    lrs, ways = zip(*calls)
    assert len(set(lrs)) == len(lrs) >= 2 and 0.5 not in lrs, lrs
    assert all(isinstance(lr, float) and 0.1 < lr < 1 for lr in lrs), lrs
    assert len(set(ways)) == len(ways), ways


@pytest.mark.parametrize("fixed", [0.5, 0.3])
def test_a_hard_coded_step_size_fails(fixed, capsys):
    hard_coded = mutated("finetune_head", ("torch.optim.SGD(head.parameters(), lr=lr)",
                                           f"torch.optim.SGD(head.parameters(), lr={fixed})"))
    with pytest.raises(AssertionError):
        exercises.check_finetune_head(hard_coded)
    assert "failed" in capsys.readouterr().out


def test_the_old_fixed_step_size_is_named(capsys):
    hard_coded = mutated("finetune_head", ("torch.optim.SGD(head.parameters(), lr=lr)",
                                           "torch.optim.SGD(head.parameters(), lr=0.5)"))
    assert_fails(exercises.check_finetune_head, hard_coded, "one step", "use the argument `lr`", capsys)
