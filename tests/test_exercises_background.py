"""The checks of chapter 1 (mtlcode/exercises/background.py): the book's solutions pass, typical
mistakes fail with a hint that names them, and an answer memorised from one case fails.

The reference solutions are read from the chapter's ``solution`` cells, so the code readers see is
the code tested here; most wrong answers are that code with one slip put in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mtlcode import exercises

CHAPTER = Path(__file__).resolve().parents[1] / "book" / "01_background.ipynb"
CHECKS = [(exercises.check_task_mse, "task_mse"), (exercises.check_gradient_descent, "gradient_descent")]


def solution_source(name: str) -> str:
    for cell in json.loads(CHAPTER.read_text())["cells"]:
        source = "".join(cell["source"])
        if "solution" in cell["metadata"].get("tags", []) and re.search(rf"^def {name}\(", source, re.M):
            return source
    raise LookupError(f"no solution cell of {CHAPTER.name} defines {name}")


def define(source: str, name: str) -> Callable:
    namespace: dict = {}
    exec(source, namespace)
    return namespace[name]


def reference(name: str) -> Callable:
    return define(solution_source(name), name)


def mutated(name: str, *replacements: tuple[str, str]) -> Callable:
    """The book's solution of ``name`` with each ``old`` text replaced by ``new``."""
    source = solution_source(name)
    for old, new in replacements:
        assert old in source, f"{old!r} is not in the solution of {name}: update this test"
        source = source.replace(old, new)
    return define(source, name)


def case_names(check: Callable, name: str, capsys: pytest.CaptureFixture) -> list[str]:
    check(reference(name))
    return [line[len("    ✓ "):] for line in capsys.readouterr().out.splitlines() if line.startswith("    ✓ ")]


def assert_fails(check: Callable, fn: Callable, case: str, hint: str, capsys: pytest.CaptureFixture) -> None:
    """``check(fn)`` raises AssertionError, and its feedback names ``case`` and contains ``hint``."""
    with pytest.raises(AssertionError) as error:
        check(fn)
    printed = capsys.readouterr().out
    assert f"case '{case}' failed" in printed, printed
    assert f"case '{case}'" in str(error.value)
    assert "expected:" in printed and "got:" in printed and "hint:" in printed
    assert hint in printed, printed


@pytest.mark.parametrize("check, name", CHECKS, ids=[name for _, name in CHECKS])
def test_the_books_solution_passes_and_leaves_the_rng_alone(check, name, capsys):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    check(reference(name))
    assert torch.equal(torch.rand(3), expected_next), "a check changed the caller's random numbers"
    assert "cases passed" in capsys.readouterr().out


@pytest.mark.parametrize("check, name", CHECKS, ids=[name for _, name in CHECKS])
def test_an_unwritten_exercise_raises_not_implemented(check, name):
    def stub(*args):
        raise NotImplementedError("Exercise: not written yet")

    with pytest.raises(NotImplementedError, match="not written yet"):
        check(stub)


@pytest.mark.parametrize("check, name", CHECKS, ids=[name for _, name in CHECKS])
def test_an_answer_memorised_from_one_case_fails(check, name, capsys):
    right, memory = reference(name), []

    def memorised(*args):
        if not memory:
            memory.append(right(*args))
        return memory[0]

    with pytest.raises(AssertionError):
        check(memorised)
    assert "failed" in capsys.readouterr().out


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
