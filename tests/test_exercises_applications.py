"""The checks of chapter 6's coding exercises pass the book's solution and catch the usual mistakes.

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

from mtlcode import exercises

CHAPTER = Path(__file__).resolve().parents[1] / "book" / "06_applications.ipynb"
CHECKS = [(exercises.check_discounted_returns, "returns_to_go"),
          (exercises.check_policy_gradients, "policy_gradients")]


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


def mutated(name: str, *replacements: tuple[str, str]) -> Callable:
    source = solution_source(name)
    for old, new in replacements:
        assert old in source, f"{old!r} is not in the solution of {name}: update this test"
        source = source.replace(old, new)
    return define(source, name)


def case_names(check: Callable, name: str, capsys: pytest.CaptureFixture) -> list[str]:
    check(define(solution_source(name), name))
    return [line[len("    ✓ "):] for line in capsys.readouterr().out.splitlines() if line.startswith("    ✓ ")]


def assert_fails(check: Callable, fn: Callable, case: str, hint: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(AssertionError) as error:
        check(fn)
    printed = capsys.readouterr().out
    assert f"case '{case}' failed" in printed and f"case '{case}'" in str(error.value), printed
    assert "expected:" in printed and "got:" in printed and hint in printed, printed


@pytest.mark.parametrize("check, name", CHECKS, ids=[name for _, name in CHECKS])
def test_reference_solution_passes_and_leaves_the_random_numbers_alone(check, name, capsys):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    check(define(solution_source(name), name))
    assert torch.equal(torch.rand(3), expected_next), "a check changed the caller's random numbers"
    assert "cases passed" in capsys.readouterr().out


@pytest.mark.parametrize("check, name", CHECKS, ids=[name for _, name in CHECKS])
def test_an_unwritten_exercise_is_let_through(check, name):
    def stub(*args):
        raise NotImplementedError("Exercise: not written yet")

    with pytest.raises(NotImplementedError, match="not written yet"):
        check(stub)


@pytest.mark.parametrize("check, name", CHECKS, ids=[name for _, name in CHECKS])
def test_an_answer_memorised_from_one_case_fails(check, name, capsys):
    right, memory = define(solution_source(name), name), []

    def memorised(*args):
        if not memory:
            memory.append(right(*args))
        return memory[0]

    with pytest.raises(AssertionError):
        check(memorised)
    assert "failed" in capsys.readouterr().out


def test_returns_to_go_with_a_hard_coded_discount_fails(capsys):
    """The last case's discount is drawn at random: only the gamma passed in gives its answer."""
    right = define(solution_source("returns_to_go"), "returns_to_go")
    cases = case_names(exercises.check_discounted_returns, "returns_to_go", capsys)
    drawn = float(cases[-1].rsplit("gamma ", 1)[1])
    assert 0.8 <= drawn < 0.99 and drawn not in (0.5, 0.9, 1.0)

    def nine_tenths(rewards, gamma):
        return right(rewards, 0.9 if gamma not in (0.5, 1.0) else gamma)

    assert_fails(exercises.check_discounted_returns, nine_tenths, cases[-1], "hint", capsys)


def test_policy_gradients_mistakes(capsys):
    check, name = exercises.check_policy_gradients, "policy_gradients"
    first = case_names(check, name, capsys)[0]
    scale = "advantages[:, None] / len(states)"
    assert_fails(check, mutated(name, (scale, f"-{scale}")), first, "every sign is flipped", capsys)
    assert_fails(check, mutated(name, ("-weights * z / std", "-weights * z")), first, "lacks a 1/sigma",
                 capsys)
    assert_fails(check, mutated(name, ("(z**2 - 1)", "z**2")), first, "misses the normaliser", capsys)
    assert_fails(check, mutated(name, ("(z**2 - 1)).sum(0)", "(z**2 - 1)).sum(0) / std")), first,
                 "with respect to sigma", capsys)
    assert_fails(check, mutated(name, (scale, "advantages[:, None]")), first, "sums over the N samples",
                 capsys)
    assert_fails(check, mutated(name, ("grad_mean.T @ states", "states.T @ grad_mean")), first,
                 "weight is [actions, states]", capsys)

    def with_autograd_on_one_action_dimension(states, actions, weight, bias, log_std, advantages):
        """Right for one action coordinate only: the log-density is not summed over coordinates."""
        params = [t.clone().requires_grad_() for t in (weight, bias, log_std)]
        mean = states @ params[0].T + params[1]
        log_pi = torch.distributions.Normal(mean[:, :1], params[2].exp()[:1]).log_prob(actions[:, :1])
        loss = -(advantages * log_pi.sum(-1)).mean()
        return torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)

    with pytest.raises(AssertionError):
        check(with_autograd_on_one_action_dimension)
    assert "failed" in capsys.readouterr().out


def test_policy_gradients_accepts_a_dict_and_reports_a_wrong_type(capsys):
    check, name = exercises.check_policy_gradients, "policy_gradients"
    right = define(solution_source(name), name)

    def as_dict(*args):
        return dict(zip(("weight", "bias", "log_std"), right(*args)))

    check(as_dict)
    first = case_names(check, name, capsys)[0]
    assert_fails(check, lambda *args: right(*args)[:2], first, "return the three gradients", capsys)
