"""The checks of chapter 2 (mtlcode/course/exercises/concepts.py): typical mistakes fail with a hint
that names them. What every check must do (pass the book's solution, let an unwritten exercise
through, fail a memorised answer) is tested for all of them in ``test_exercises.py``.

The reference solutions are read from the chapter's ``solution`` cells, so the code readers see is
the code tested here; most wrong answers are that code with one slip put in. The sampler's
mistakes are tested in tests/test_exercises.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from exercise_support import assert_fails, case_names, mutated, reference

from mtlcode.course import exercises
from mtlcode.tasks import Sinusoid

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
