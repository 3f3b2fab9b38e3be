"""The checks of chapter 2 (mtlcode/exercises/concepts.py): the book's solutions pass, typical
mistakes fail with a hint that names them, and an answer memorised from one case fails.

The reference solutions are read from the chapter's ``solution`` cells, so the code readers see is
the code tested here; most wrong answers are that code with one slip put in. The sampler's
mistakes are tested in tests/test_exercises.py.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mtlcode import exercises
from mtlcode.tasks import Sinusoid

CHAPTER = Path(__file__).resolve().parents[1] / "book" / "02_concepts.ipynb"
CHECKS = [(exercises.check_nway_kshot, "sample_task"), (exercises.check_average_sinusoid, "average_sinusoid")]


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


# -- average_sinusoid -----------------------------------------------------------------------------

SINE = "mean_sine = (torch.cos(x - p1) - torch.cos(x - p0)) / (p1 - p0)"
BOOK = "the book's family, 200 points in [-5, 5]"


@pytest.mark.parametrize("replacements, hint", [
    ([(SINE, "mean_sine = torch.sin(x - (p0 + p1) / 2)")], "the sine at the mean phase"),
    ([(SINE, "mean_sine = torch.cos(x - p1) - torch.cos(x - p0)")], "divide by the width of the range"),
    ([(SINE, "mean_sine = (torch.cos(x - p0) - torch.cos(x - p1)) / (p1 - p0)")], "the sign is flipped"),
    ([("mean_amplitude = (a0 + a1) / 2", "mean_amplitude = 1.0")], "the amplitude is missing"),
    ([("mean_amplitude = (a0 + a1) / 2", "mean_amplitude = a1")], "not its upper end"),
    ([("mean_amplitude = (a0 + a1) / 2", "mean_amplitude = (a1 - a0) / 2")], "do not subtract them"),
    ([(SINE, "mean_sine = torch.sin(x - p0)")], "E[A] = (a0 + a1) / 2"),  # no known slip: the general hint
], ids=["sine of mean phase", "integral, not mean", "sign", "no amplitude", "upper end", "half width",
        "other"])
def test_average_sinusoid_names_the_mistake(replacements, hint, capsys):
    wrong = mutated("average_sinusoid", *replacements)
    assert_fails(exercises.check_average_sinusoid, wrong, BOOK, hint, capsys)


def test_the_chapters_formula_passes_the_books_family_only(capsys):
    def chapter_formula(x, family):
        return -2 * (sum(family.amplitude) / 2) / math.pi * torch.cos(x)

    second = case_names(exercises.check_average_sinusoid, "average_sinusoid", capsys)[1]
    assert_fails(exercises.check_average_sinusoid, chapter_formula, second, "family.phase", capsys)


def test_a_numerical_average_over_the_phase_passes(capsys):
    def numerical(x, family):
        (a0, a1), (p0, p1) = family.amplitude, family.phase
        n = 20_000
        phases = p0 + (p1 - p0) * (torch.arange(n, dtype=torch.float64) + 0.5) / n  # midpoint rule
        return (a0 + a1) / 2 * torch.sin(x[..., None] - phases).mean(-1)

    exercises.check_average_sinusoid(numerical)
    assert "all 3 cases passed" in capsys.readouterr().out


def test_the_closed_form_agrees_with_sampled_tasks():
    """The reference is E[y | x]: the average of many sampled tasks' curves comes close to it."""
    family = Sinusoid(amplitude=(0.5, 2.0), phase=(-0.5, 1.5))
    x = torch.linspace(-5, 5, 50, dtype=torch.float64).reshape(1, -1, 1)
    tasks = family.sample(200_000, 1, 0, generator=torch.Generator().manual_seed(0))
    sampled = tasks.true_y(x.float()).double().mean(0)
    assert torch.allclose(reference("average_sinusoid")(x[0], family), sampled, atol=0.02)


def test_average_sinusoid_cases_vary_their_families_and_shapes(capsys):
    names = case_names(exercises.check_average_sinusoid, "average_sinusoid", capsys)
    assert len(names) == 3 and names[0] == BOOK
    assert len(set(names)) == 3 and all("amplitude in" in n and "x shaped" in n for n in names[1:])
