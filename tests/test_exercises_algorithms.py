"""Chapter 3's MAML checks draw their step sizes: a solution that ignores `alpha` fails.

The reference solutions are the book's solution cells (read by the helpers of
``test_exercises``); each wrong answer here is that code with the argument ``alpha`` replaced by a
fixed number, the chapter's ``ALPHA = 0.01`` or the ``0.05`` these checks used to pass in every case.
"""

from __future__ import annotations

import pytest
from exercise_support import assert_fails, mutated, reference

from mtlcode.course import exercises

FIXED = (0.01, 0.05)

# check, solution name, the texts of the solution where it uses alpha, the first case with a step
STEP_SIZES = [
    (exercises.check_inner_loop, "inner_loop", ("p - alpha * g",), "one step"),
    (exercises.check_first_order_meta_gradient, "fomaml_gradient", ("p - alpha * g",), "one task"),
    (exercises.check_meta_gradient, "meta_gradient",
     ("theta[name] - alpha * support_gradient[name]", "q[name] - alpha * hq[name]"), "one task"),
]
IDS = [name for _, name, _, _ in STEP_SIZES]


@pytest.mark.parametrize("check, name, uses, first_case", STEP_SIZES, ids=IDS)
def test_every_call_gets_its_own_step_size(check, name, uses, first_case, capsys):
    right, alphas = reference(name), []

    def recording(*args):
        alphas.append(args[-2] if name == "inner_loop" else args[-1])  # (..., alpha, steps) or (..., alpha)
        return right(*args)

    check(recording)
    assert "cases passed" in capsys.readouterr().out
    assert len(alphas) >= 2 and len(set(alphas)) == len(alphas), alphas
    assert all(isinstance(a, float) and 0 < a < 0.2 for a in alphas), alphas
    assert not set(alphas) & set(FIXED), alphas


@pytest.mark.parametrize("fixed", FIXED)
@pytest.mark.parametrize("check, name, uses, first_case", STEP_SIZES, ids=IDS)
def test_a_hard_coded_step_size_fails_and_is_named(check, name, uses, first_case, fixed, capsys):
    hard_coded = mutated(name, *((text, text.replace("alpha", str(fixed))) for text in uses))
    assert_fails(check, hard_coded, first_case, f"steps of size {fixed}, not alpha", capsys)
    assert_fails(check, hard_coded, first_case, "use the argument `alpha`", capsys)


def test_a_step_size_right_in_one_case_only_fails(capsys):
    """Hard-coding the step size of the first case (read off a failed run) fails on the next."""
    right, first = reference("inner_loop"), []

    def memorised_alpha(model, params, support_x, support_y, alpha, steps):
        first.append(alpha)
        return right(model, params, support_x, support_y, first[0], steps)

    assert_fails(exercises.check_inner_loop, memorised_alpha, "three steps", "", capsys)
