"""The checks of chapter 1 (mtlcode/course/exercises/background.py): typical mistakes fail with a hint
that names them. What every check must do (pass the book's solution, let an unwritten exercise
through, fail a memorised answer) is tested for all of them in ``test_exercises.py``.

The reference solutions are read from the chapter's ``solution`` cells, so the code readers see is
the code tested here; most wrong answers are that code with one slip put in.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from exercise_support import assert_fails, case_names, mutated

from mtlcode.course import exercises

# -- task_mse --------------------------------------------------------------------------------------

ENDING = "squared_errors.flatten(start_dim=1).mean(dim=1)"


@pytest.mark.parametrize("wrong, case, hint", [
    ("squared_errors.mean()", "4 tasks of 6 points", "one number for all tasks together"),
    ("squared_errors.mean(dim=1)", "4 tasks of 6 points", "shape (4, 1)"),
    ("squared_errors.mean(dim=1)[:, 0]", "1 task of 3 points with 2 outputs", "the first output only"),
    ("squared_errors.flatten(start_dim=1).mean(dim=1).sqrt()", "4 tasks of 6 points", "root mean squared"),
    ("squared_errors.sqrt().flatten(start_dim=1).mean(dim=1)", "4 tasks of 6 points", "mean absolute error"),
    ("squared_errors.flatten(start_dim=1).sum(dim=1)", "4 tasks of 6 points", "mean, not sum"),
    ("(predictions - targets).flatten(start_dim=1).mean(dim=1) ** 2", "4 tasks of 6 points",
     "square each error first"),
], ids=["mean over tasks", "outputs kept", "first output", "rmse", "mae", "sum", "square of mean"])
def test_task_mse_names_the_mistake(wrong, case, hint, capsys):
    assert_fails(exercises.check_task_mse, mutated("task_mse", (ENDING, wrong)), case, hint, capsys)


def test_task_mse_cases_vary_their_sizes(capsys):
    names = case_names(exercises.check_task_mse, "task_mse", capsys)
    assert len(names) == 3 and "with 3 outputs" in names[2]


# -- gradient_descent ----------------------------------------------------------------------------

ZERO_GRAD = "        optimizer.zero_grad()  # else each step would add up all earlier gradients\n"


@pytest.mark.parametrize("replacements, hint", [
    ([(ZERO_GRAD, "")], "call optimizer.zero_grad()"),
    ([("F.mse_loss(trained(x), y)", "F.mse_loss(trained(x), y, reduction='sum')")],
     "not the sum of the squared errors"),
    ([("range(steps)", "range(steps - 1)")], "take exactly `steps` steps"),
    ([("range(steps)", "range(steps + 1)")], "take exactly `steps` steps"),
    ([("torch.optim.SGD(trained.parameters(), lr=lr)", "torch.optim.Adam(trained.parameters(), lr=lr)")],
     "that is Adam"),
    ([("range(steps)", "range(0)")], "the network has not changed"),
    ([("torch.optim.SGD(trained.parameters(), lr=lr)", "torch.optim.SGD(trained.parameters(), lr=lr, "
       "maximize=True)")], "the step goes uphill"),
], ids=["no zero_grad", "sum of squares", "a step too few", "a step too many", "adam", "untrained", "uphill"])
def test_gradient_descent_names_the_mistake(replacements, hint, capsys):
    first = case_names(exercises.check_gradient_descent, "gradient_descent", capsys)[0]
    assert_fails(exercises.check_gradient_descent, mutated("gradient_descent", *replacements), first, hint,
                 capsys)


def test_gradient_descent_names_an_uphill_step(capsys):
    import copy

    def uphill(net, x, y, steps, lr):
        trained = copy.deepcopy(net)
        for _ in range(steps):
            trained.zero_grad()
            F.mse_loss(trained(x), y).backward()
            with torch.no_grad():
                for p in trained.parameters():
                    p += lr * p.grad
        return trained

    first = case_names(exercises.check_gradient_descent, "gradient_descent", capsys)[0]
    assert_fails(exercises.check_gradient_descent, uphill, first, "the step goes uphill", capsys)


def test_gradient_descent_that_changes_net_in_place_fails(capsys):
    first = case_names(exercises.check_gradient_descent, "gradient_descent", capsys)[0]
    in_place = mutated("gradient_descent", ("trained = copy.deepcopy(net)", "trained = net"))
    assert_fails(exercises.check_gradient_descent, in_place, f"{first}: net is left unchanged", "train a copy",
                 capsys)


def test_gradient_descent_must_return_a_network(capsys):
    first = case_names(exercises.check_gradient_descent, "gradient_descent", capsys)[0]
    as_dict = mutated("gradient_descent", ("    return trained", "    return dict(trained.named_parameters())"))
    assert_fails(exercises.check_gradient_descent, as_dict, first, "an nn.Module", capsys)


def test_gradient_descent_written_by_hand_passes(capsys):
    import copy

    def by_hand(net, x, y, steps, lr):
        trained = copy.deepcopy(net)
        for _ in range(steps):
            trained.zero_grad()
            F.mse_loss(trained(x), y).backward()
            with torch.no_grad():
                for p in trained.parameters():
                    p -= lr * p.grad
        return trained

    exercises.check_gradient_descent(by_hand)
    assert "all 3 cases passed" in capsys.readouterr().out


def test_gradient_descent_cases_vary_steps_sizes_and_step_sizes(capsys):
    names = case_names(exercises.check_gradient_descent, "gradient_descent", capsys)
    assert len(names) == 3
    assert len({re.search(r"(\d+) steps", n).group(1) for n in names}) == 3
    assert len({re.search(r"network (\[.*?\])", n).group(1) for n in names}) == 3
    assert len({re.search(r"size (\d\.\d+)", n).group(1) for n in names}) == 3
