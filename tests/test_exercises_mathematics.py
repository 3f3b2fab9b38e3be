"""Chapter 4's check of MAML's closed-form optimum: the book's answer passes, the usual slips fail.

The reference solution is the book's solution cell (read by the helpers of ``test_exercises``);
most wrong answers are that code with one slip put in.
"""

from __future__ import annotations

import pytest
import torch
from exercise_support import assert_fails, case_names, mutated, reference

from mtlcode.course.exercises import check_linear_maml_optimum
from mtlcode.course.exercises import mathematics as checks

CHECK, NAME = check_linear_maml_optimum, "linear_maml_optimum"
SCALES = "2 / k * design.mT @ design, 2 / k * design.mT @ y"


@pytest.fixture
def cases(capsys):
    names = case_names(CHECK, NAME, capsys)
    assert len(names) == 3 and "1 step" in names[0] and "2 steps" in names[1] and "3 steps" in names[2]
    return names


def test_the_book_solution_passes_and_leaves_the_rng_alone(capsys):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    CHECK(reference(NAME))
    assert torch.equal(torch.rand(3), expected_next), "the check changed the caller's random numbers"
    assert "all 3 cases passed" in capsys.readouterr().out


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_the_closed_form_of_the_hints_is_the_minimiser_of_mtlcodes_meta_loss(steps):
    """The hints compare with ``_closed_form``; the check itself trusts only ``mtlcode.MAML``."""
    batch = checks._linear_tasks(torch.Generator().manual_seed(steps), 4, 2, 5, 6)
    torch.testing.assert_close(checks._closed_form(batch, 0.1, steps), checks._reference(batch, 0.1, steps))
    torch.testing.assert_close(reference(NAME)(batch, 0.1, steps), checks._reference(batch, 0.1, steps))


def test_an_unwritten_exercise_raises_not_implemented():
    def stub(tasks, alpha, steps):
        raise NotImplementedError("Exercise: not written yet")

    with pytest.raises(NotImplementedError, match="not written yet"):
        CHECK(stub)


def test_an_answer_memorised_from_one_case_fails(cases, capsys):
    right, memory = reference(NAME), []

    def memorised(tasks, alpha, steps):
        if not memory:
            memory.append(right(tasks, alpha, steps))
        return memory[0]

    assert_fails(CHECK, memorised, cases[1], "", capsys)


def test_a_fixed_step_size_or_step_count_fails(cases, capsys):
    right = reference(NAME)
    assert_fails(CHECK, lambda tasks, alpha, steps: right(tasks, 0.1, steps), cases[0], "", capsys)
    assert_fails(CHECK, lambda tasks, alpha, steps: right(tasks, alpha, 2), cases[0], "", capsys)


def test_the_one_step_formula_fails_from_two_steps_on(cases, capsys):
    one_step = mutated(NAME, ("range(steps)", "range(1)"))
    assert_fails(CHECK, one_step, cases[1], "optimum for one inner step", capsys)


def test_an_offset_that_does_not_add_up_fails(cases, capsys):
    assert_fails(CHECK, mutated(NAME, ("M @ c + alpha * r_s", "alpha * r_s")), cases[1],
                 "offset does not add up", capsys)


def test_a_missing_factor_2_fails(cases, capsys):
    assert_fails(CHECK, mutated(NAME, (SCALES, SCALES.replace("2 / k", "1 / k"))), cases[0],
                 "the factor 2 is missing", capsys)


def test_sums_instead_of_means_fail(cases, capsys):
    assert_fails(CHECK, mutated(NAME, (SCALES, SCALES.replace("2 / k", "2"))), cases[0],
                 "*mean* squared error", capsys)


def test_least_squares_on_the_query_sets_fails(cases, capsys):
    no_steps = mutated(NAME, ("M = identity - alpha * A_s", "M = identity"),
                       ("M @ c + alpha * r_s", "M @ c"))
    assert_fails(CHECK, no_steps, cases[0], "as if alpha were 0", capsys)


def test_joint_training_fails(cases, capsys):
    def joint(tasks, alpha, steps):
        x = torch.cat([tasks.support_x, tasks.query_x], 1).flatten(0, 1)
        y = torch.cat([tasks.support_y, tasks.query_y], 1).flatten(0, 1)
        design = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        return torch.linalg.lstsq(design, y).solution.squeeze(-1)

    assert_fails(CHECK, joint, cases[0], "this is joint training", capsys)


def test_the_bias_first_fails(cases, capsys):
    right = reference(NAME)

    def bias_first(tasks, alpha, steps):
        theta = right(tasks, alpha, steps)
        return torch.cat([theta[-1:], theta[:-1]])

    assert_fails(CHECK, bias_first, cases[0], "the bias comes first", capsys)


def test_no_bias_and_a_column_fail_with_their_shape(cases, capsys):
    right = reference(NAME)
    assert_fails(CHECK, lambda tasks, alpha, steps: right(tasks, alpha, steps)[:-1], cases[0],
                 "the model has a bias too", capsys)
    assert_fails(CHECK, mutated(NAME, (".squeeze(-1)", "")), cases[0], "not a column", capsys)
